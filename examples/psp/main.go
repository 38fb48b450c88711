// Command psp runs PSP's cloud use case (draft-xia-ipsecme-eesp-stateless-
// encryption §2.1) on one machine: a server derives a client's key and SPI
// from its master keys and hands them to the client over mutual TLS
// (credentials from the job CA, as the rendezvous layer issues them); the
// two then exchange PSP datagrams over UDP, and the server keeps no
// per-client key state. Half-way through, the server rotates its master
// keys: the client's association keeps working, and a client that joins
// afterwards gets an SPI under the new key (bit 31 flipped).
//
//	go run ./examples/psp             # as a normal user: an ephemeral UDP port
//	sudo go run ./examples/psp        # as root: PSP's port 1000
//	go run ./examples/psp -port 4000  # any port
//
// PSP's UDP port is 1000, a privileged port; the default is 1000 only when
// the process runs as root and an ephemeral port otherwise.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/sealring/sealring/rendezvous"
	"github.com/sealring/sealring/secure/psp"
	"github.com/sealring/sealring/transport/pspnet"
)

func main() {
	defPort := 0
	if os.Geteuid() == 0 {
		defPort = psp.DefaultPort
	}
	port := flag.Int("port", defPort, "server UDP port (0 = ephemeral; PSP's own port 1000 needs root)")
	n := flag.Int("n", 4, "messages per client")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lines, err := run(ctx, *port, *n)
	for _, l := range lines {
		fmt.Println(l)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// run starts the server and two clients and returns what happened, one
// line per event.
func run(ctx context.Context, port, n int) (lines []string, err error) {
	ca, err := rendezvous.NewJobCA()
	if err != nil {
		return nil, err
	}
	srvCreds, err := ca.Issue("server", 0)
	if err != nil {
		return nil, err
	}
	keys, err := psp.NewServer(psp.ServerConfig{})
	if err != nil {
		return nil, err
	}
	srv, err := pspnet.Listen(ctx, pspnet.ServerConfig{
		TLSConfig: srvCreds.ServerTLSConfig(),
		PSP:       keys,
		KeyAddr:   "127.0.0.1:0",
		UDPAddr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Handler: func(spi uint32, req []byte) []byte {
			return fmt.Appendf(nil, "server got %q under SPI %08x", req, spi)
		},
	})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	lines = append(lines, fmt.Sprintf("server: key handover on %s (mutual TLS), PSP datagrams on udp %s", srv.KeyAddr(), srv.UDPAddr()))

	talk := func(name string, c *pspnet.Client, from, to int) error {
		buf := make([]byte, 1500)
		for i := from; i < to; i++ {
			if err := c.Send(fmt.Appendf(nil, "%s message %d", name, i)); err != nil {
				return err
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			m, err := c.Recv(rctx, buf)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: no reply to message %d: %w", name, i, err)
			}
			lines = append(lines, fmt.Sprintf("%s: %s", name, buf[:m]))
		}
		return nil
	}
	dial := func(name string, rank int) (*pspnet.Client, error) {
		cc, err := ca.Issue("rank", rank)
		if err != nil {
			return nil, err
		}
		c, err := pspnet.Dial(ctx, srv.KeyAddr().String(), pspnet.ClientConfig{TLSConfig: cc.ClientTLSConfig(), Version: psp.V1})
		if err != nil {
			return nil, err
		}
		lines = append(lines, fmt.Sprintf("%s: received SPI %08x and its keys over mutual TLS", name, c.SPI()))
		return c, nil
	}

	a, err := dial("client A", 1)
	if err != nil {
		return lines, err
	}
	defer a.Close()
	if err := talk("client A", a, 0, n/2); err != nil {
		return lines, err
	}
	if err := keys.Rotate(); err != nil {
		return lines, err
	}
	slot, gen := keys.Current()
	lines = append(lines, fmt.Sprintf("server: rotated master keys (current slot %d, generation %d); A's association keeps the previous key", slot, gen))
	if err := talk("client A", a, n/2, n); err != nil {
		return lines, err
	}
	b, err := dial("client B", 2)
	if err != nil {
		return lines, err
	}
	defer b.Close()
	if err := talk("client B", b, 0, n/2); err != nil {
		return lines, err
	}
	opened, rejected := srv.Stats()
	lines = append(lines, fmt.Sprintf("server: opened %d datagrams, rejected %d, per-client key state: none", opened, rejected))
	return lines, nil
}

// Command proxy joins two trust domains through a gateway, the draft's AI
// computing case (§2.4): a rank in domain A sends to a rank in domain B
// over UDP; neither holds the other's keys, so the gateway, which holds
// both, opens each packet with A's keys and re-seals it, in place, as its
// own sender in B. The gateway keeps no per-flow state.
//
//	go run ./examples/proxy
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"time"

	"github.com/sealring/sealring/secure"
)

func main() {
	res, err := run(context.Background(), 5)
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range res {
		fmt.Println(l)
	}
}

func newDomain() (*secure.Group, error) {
	var keys [3]secure.LevelKeys
	for l := range keys {
		k, err := secure.GenerateLevelKeys()
		if err != nil {
			return nil, err
		}
		keys[l] = k
	}
	id := make([]byte, 16)
	rand.Read(id)
	return secure.NewGroup(secure.GroupConfig{ID: id, Keys: keys})
}

func listen() (*net.UDPConn, error) {
	return net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
}

// run sends n messages from A through the gateway to B and returns what
// each party saw.
func run(ctx context.Context, n int) ([]string, error) {
	domA, err := newDomain()
	if err != nil {
		return nil, err
	}
	domB, err := newDomain()
	if err != nil {
		return nil, err
	}
	senderA, _ := secure.NewSealer(domA, secure.SealerConfig{ID: secure.SenderID(1, 1)})
	openB, _ := secure.NewOpener(secure.OpenerConfig{Groups: []*secure.Group{domB}, CacheCapacity: 64})
	openA, _ := secure.NewOpener(secure.OpenerConfig{Groups: []*secure.Group{domA}})
	gw := secure.Proxy{}
	gw.From, _ = secure.NewOpener(secure.OpenerConfig{Groups: []*secure.Group{domA}, CacheCapacity: 64})
	gw.To, err = secure.NewSealer(domB, secure.SealerConfig{ID: secure.SenderID(1000, 1)})
	if err != nil {
		return nil, err
	}

	gwConn, err := listen()
	if err != nil {
		return nil, err
	}
	defer gwConn.Close()
	bConn, err := listen()
	if err != nil {
		return nil, err
	}
	defer bConn.Close()
	aConn, err := listen()
	if err != nil {
		return nil, err
	}
	defer aConn.Close()
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	gwConn.SetDeadline(deadline)
	bConn.SetDeadline(deadline)

	// The gateway: receive from A, re-encrypt in place, forward to B.
	gwErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 2048)
		bAddr := bConn.LocalAddr().(*net.UDPAddr).AddrPort()
		for range n {
			m, _, err := gwConn.ReadFromUDPAddrPort(buf[:1500])
			if err != nil {
				gwErr <- err
				return
			}
			out, _, err := gw.Forward(buf[:m], 0)
			if err != nil {
				gwErr <- err
				return
			}
			if _, err := gwConn.WriteToUDPAddrPort(out, bAddr); err != nil {
				gwErr <- err
				return
			}
		}
		gwErr <- nil
	}()

	var lines []string
	gwAddr := gwConn.LocalAddr().(*net.UDPAddr).AddrPort()
	for i := range n {
		msg := fmt.Appendf(nil, "activation shard %d from domain A", i)
		pkt := make([]byte, senderA.HeaderLen(), senderA.Overhead()+len(msg))
		pkt, err := senderA.Seal(append(pkt, msg...), 0, 0)
		if err != nil {
			return nil, err
		}
		// Domain B cannot read A's packet on its own...
		if _, err := openB.Open(append([]byte(nil), pkt...), 0); !errors.Is(err, secure.ErrAuth) {
			return nil, fmt.Errorf("domain B opened a domain A packet: %v", err)
		}
		if _, err := aConn.WriteToUDPAddrPort(pkt, gwAddr); err != nil {
			return nil, err
		}
		// ...but receives it through the gateway.
		buf := make([]byte, 2048)
		m, _, err := bConn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil, err
		}
		if _, err := openA.Open(append([]byte(nil), buf[:m]...), 0); err == nil {
			return nil, errors.New("domain A opened a domain B packet")
		}
		r, err := openB.Open(buf[:m], 0)
		if err != nil {
			return nil, fmt.Errorf("domain B: %w", err)
		}
		lines = append(lines, fmt.Sprintf("B got %q from sender %d (the gateway), counter %d", r.Payload, r.Header.ID>>32, r.Header.Counter))
	}
	if err := <-gwErr; err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	lines = append(lines, "domain A and domain B could not open each other's packets; the gateway kept no per-flow state")
	return lines, nil
}

// Command pspcap encrypts and decrypts pcap files as the PSP reference
// implementation (google/psp, src/psp_encrypt and src/psp_decrypt) does,
// with the same configuration files, so that anyone can cross-check
// sealring's PSP (package secure/psp) against the reference:
//
//	go run ./bench/pspcap encrypt -c encrypt.cfg -i cleartext.pcap -o psp.pcap
//	go run ./bench/pspcap decrypt -c decrypt.cfg -i psp.pcap -o cleartext.pcap
//
// With the reference's inputs the encrypted output is byte for byte the
// reference's (../shared/vectors/psp), and `cmp` is the whole check. The
// configuration formats are described in secure/psp/pspcap
// (EncryptConfig, DecryptConfig); besides the reference's aes-gcm-128 and
// aes-gcm-256, the algorithm may be aes-gmac-128 or aes-gmac-256 (PSP
// versions 2 and 3, which the reference does not implement). -e sets a
// reserved bit after sealing, as the reference's -e does, so that every
// packet must fail authentication.
//
// Unlike the reference, decrypt checks the ICV of every packet, including
// packets whose encrypted part is empty, and fails on the first packet
// that does not authenticate.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/sealring/sealring/secure/psp/pspcap"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pspcap:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  pspcap encrypt [-c encrypt.cfg] [-i cleartext.pcap] [-o psp_encrypt.pcap] [-port 1000] [-e]
  pspcap decrypt [-c decrypt.cfg] [-i psp_encrypt.pcap] [-o psp_decrypt.pcap] [-port 1000]`

// run is the whole command: it parses args, processes one file and prints
// a summary line to stdout.
func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	op := args[0]
	if op != "encrypt" && op != "decrypt" {
		return fmt.Errorf("unknown command %q\n%s", op, usage)
	}
	fs := flag.NewFlagSet("pspcap "+op, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	defCfg, defIn, defOut := "psp_encrypt.cfg", "cleartext.pcap", "psp_encrypt.pcap"
	if op == "decrypt" {
		defCfg, defIn, defOut = "psp_decrypt.cfg", "psp_encrypt.pcap", "psp_decrypt.pcap"
	}
	cfgPath := fs.String("c", defCfg, "configuration file (the reference's format)")
	inPath := fs.String("i", defIn, "input pcap file")
	outPath := fs.String("o", defOut, "output pcap file")
	port := fs.Uint("port", 1000, "PSP UDP destination port")
	corrupt := false
	if op == "encrypt" {
		fs.BoolVar(&corrupt, "e", false, "set a reserved bit in every packet after sealing (authentication must fail)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w\n%s", err, usage)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q\n%s", fs.Args(), usage)
	}
	if *port == 0 || *port > 0xffff {
		return fmt.Errorf("-port %d out of range 1..65535", *port)
	}
	cfgText, err := os.ReadFile(*cfgPath)
	if err != nil {
		return err
	}
	in, err := os.Open(*inPath)
	if err != nil {
		return err
	}
	defer in.Close()
	if ii, err := in.Stat(); err == nil {
		if oi, err := os.Stat(*outPath); err == nil && os.SameFile(ii, oi) {
			return fmt.Errorf("output %s is the input file", *outPath)
		}
	}
	out, err := os.Create(*outPath)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(out)
	opt := pspcap.Options{Port: uint16(*port), Corrupt: corrupt}
	var st pspcap.Stats
	if op == "encrypt" {
		var cfg pspcap.EncryptConfig
		if cfg, err = pspcap.ParseEncryptConfig(string(cfgText)); err == nil {
			st, err = pspcap.Encrypt(bufio.NewReader(in), bw, cfg, opt)
		}
	} else {
		var cfg pspcap.DecryptConfig
		if cfg, err = pspcap.ParseDecryptConfig(string(cfgText)); err == nil {
			st, err = pspcap.Decrypt(bufio.NewReader(in), bw, cfg, opt)
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(*outPath)
		return err
	}
	fmt.Fprintf(stdout, "%sed %d packets in %s, skipped %d packets\n", op, st.Packets, *outPath, st.Skipped)
	return nil
}

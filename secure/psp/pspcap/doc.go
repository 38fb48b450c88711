// Package pspcap reproduces the PSP reference implementation's pcap tools
// (google/psp, src/psp_encrypt and src/psp_decrypt): a strict reader and
// writer for classic pcap files (both byte orders, microsecond and
// nanosecond timestamps), the reference's configuration formats, and
// Encrypt and Decrypt, which process Ethernet captures exactly as the
// reference does — byte for byte on the reference's own vectors — except
// that Decrypt authenticates every packet, including those whose encrypted
// part is empty (the reference skips the ICV check there).
//
// bench/pspcap is the command line over this package.
package pspcap

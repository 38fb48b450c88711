// Package pspnet is the cloud use case of PSP (draft-xia-ipsecme-eesp-
// stateless-encryption §2.1) as a working path: a server derives each
// client's keys from its master keys (secure/psp.Server), hands them to the
// client over a mutually authenticated TLS 1.3 connection, and the two then
// exchange PSP-framed datagrams over UDP (port 1000 by default). The server
// keeps no per-client key state: it derives the key of every datagram from
// the datagram's SPI, and replies to the address the datagram came from.
//
// # Protocol
//
// Key handover, over TLS 1.3 with mutual authentication (ALPN
// "sealring-psp/1"; the caller supplies the tls.Config, for example
// rendezvous.Credentials.ServerTLSConfig and ClientTLSConfig, which admit
// only members of one job):
//
//	request  (5 bytes):  "PSP1" ‖ version (1)
//	response (72 bytes): status (1: 0 ok, 1 bad request, 2 unavailable) ‖ version (1) ‖
//	                     UDP port (2) ‖ SPI (4) ‖ client→server key (32) ‖ server→client key (32)
//
// Keys shorter than 32 bytes (versions 0 and 2) are zero-padded. The
// server allocates an even SPI and its successor (psp.Server.AllocatePair):
// the client sends with SPI, the server replies with SPI|1, both keys
// derived from the server's master key that SPI bit 31 selects. A datagram
// is one PSP packet (header, payload, ICV) as the UDP payload, with next
// header NextHeader (253, RFC 3692's experimental value: the payload is an
// application message, not an IP protocol).
//
// The server accepts only even SPIs on receive, so a reply cannot be
// reflected back to it as a request. The server's replies take their IVs
// from the key server's counter (psp.Server.NextIV, shared by every
// Server using that psp.Server) started at the wall-clock time in
// nanoseconds, so no (key, IV) pair repeats without per-client state,
// even across a restart with the same master keys (as long as the clock
// does not go back and the server sends less than one reply per
// nanosecond on average since its start). A psp.Server restored with
// master keys allocates no SPI under them (it cannot know which were
// handed out, see psp.ServerConfig.Allocated): the first handover after
// such a restart rotates. PSP itself has no replay
// protection: a duplicated request is delivered twice, as in the
// specification; applications that care number their messages.
//
// The shortest correct use:
//
//	srv, _ := pspnet.Listen(ctx, pspnet.ServerConfig{TLSConfig: serverCreds.ServerTLSConfig(), Handler: echo})
//	defer srv.Close()
//	c, _ := pspnet.Dial(ctx, srv.KeyAddr().String(), pspnet.ClientConfig{TLSConfig: clientCreds.ClientTLSConfig()})
//	defer c.Close()
//	c.Send([]byte("hello"))
//	n, _ := c.Recv(ctx, buf)
package pspnet

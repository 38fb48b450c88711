// Package transport is sealring's reliable, encrypted message layer: one
// Endpoint per rank moves tagged messages and keeps them in order over a
// datagram wire (package transport/wire), sealing every packet (data and
// control alike) with package secure.
//
// The layers inside an Endpoint:
//
//   - Security: every datagram is sealed by a secure.Sealer in sender mode
//     (ID = rank ‖ incarnation) and opened by a secure.Opener; the sender's
//     rank and incarnation come from the authenticated header. The
//     transport header is inside the ciphertext. There is no handshake and
//     no per-peer security state.
//   - Reliability, per peer (RDMA RC-like): 32-bit PSNs, cumulative ACK
//     plus SACK ranges, delayed ACKs (and ACKs piggybacked on reliable
//     packets going the other way), loss detection and RTO with backoff,
//     retransmission of the identical sealed bytes, an AIMD congestion
//     window and receiver flow control, keepalives and a peer timeout.
//   - Messages (MPI/UCX-like): Send/Recv with AnySource and tag masks,
//     matched in post order and non-overtaking per peer; eager messages up
//     to Config.EagerLimit (or any size with SendOptions.Eager),
//     rendezvous (RTS/CTS) above it, straight into the posted buffer.
//   - One-sided access (RDMA-like RMA): Register makes a buffer a Region
//     with remote read and/or write rights and a RemoteKey (40 bytes, to
//     hand to peers); Put and Get write and read any range of a peer's
//     region without the peer posting a receive. Every access is checked
//     against the key by the initiator and against the registration by
//     the target, which refuses (ErrRegionNotFound, ErrAccessDenied,
//     ErrOutOfBounds) before placing a byte; large transfers share the
//     rendezvous data path. Deregister ends all remote access.
//
// The packet formats are in docs/protocol.md and the threads, locks and
// state machines in docs/architecture.md.
//
// The shortest correct use:
//
//	w, _ := wire.ListenUDP("udp4", netip.MustParseAddrPort("10.0.0.1:7000"), wire.UDPConfig{})
//	ep, err := transport.New(transport.Config{Rank: rank, Incarnation: inc, Wire: w, Group: group})
//	defer ep.Close() // error paths
//	ep.AddPeer(1, addrOfRank1) // from the job's rendezvous store
//	err = ep.Send(ctx, 1, tag, msg)
//	st, err := ep.Recv(ctx, transport.AnySource, tag, ^uint64(0), buf)
//	err = ep.Shutdown(ctx) // done: wait for the last ACKs, then close
//
// Close ends an endpoint at once; Shutdown ends it gracefully, once
// everything it sent has been acknowledged. The difference matters with
// Config.LocalCompletion, where a send completes before its peer has its
// data.
package transport

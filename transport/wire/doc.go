// Package wire is sealring's lowest layer: it moves batches of datagrams
// between endpoints and knows nothing about encryption or reliability.
//
// A [Wire] sends with [Wire.WriteBatch] and receives with [Wire.ReadBatch],
// both on slices of [Message]. Receiving is zero-copy: ReadBatch points each
// Message.Buf into a buffer the wire owns, valid until the next ReadBatch on
// the same wire, so the transport can decrypt straight from it into user
// memory. Sending never retains the caller's buffers.
//
// Implementations:
//
//   - [UDP] ([ListenUDP]): one UDP socket. On Linux it sends with sendmmsg(2)
//     and UDP_SEGMENT (GSO), coalescing runs of equal-length datagrams to the
//     same destination into one segmentation-offload send (a batch of one
//     plain datagram goes out with sendto(2), which is cheaper), and receives with
//     recvmmsg(2) and UDP_GRO, splitting coalesced receives into separate
//     Messages without copying. Both are probed when the socket opens and
//     switched off if the kernel refuses them; GSO is also switched off at run
//     time if a send fails with EIO or EINVAL. Elsewhere (or with
//     [UDPConfig].DisableMMsg) it moves one datagram per system call.
//   - [Mem] ([NewMemNetwork]): an in-process network for tests and for ranks
//     that share a process, with bounded per-endpoint queues that drop when
//     full, like a NIC.
//
// The fault injector in internal/faultwire wraps any Wire; internal/wiretest
// holds the behavioural test every Wire must pass.
//
// Shortest correct use:
//
//	w, err := wire.ListenUDP("udp4", netip.MustParseAddrPort("127.0.0.1:0"), wire.UDPConfig{})
//	if err != nil { ... }
//	defer w.Close()
//	_, err = w.WriteBatch([]wire.Message{{Buf: payload, Addr: peer}})
//	msgs := make([]wire.Message, w.BatchSize())
//	n, err := w.ReadBatch(msgs) // msgs[:n] valid until the next ReadBatch
//
// # Choices made here (DESIGN.md §4 is silent on them)
//
// Default MaxPayload is 1452 bytes: a 1500-byte Ethernet MTU minus the IPv6
// (40) and UDP (8) headers, so one setting is safe for IPv4 and IPv6 paths.
// The ceiling is 65507, the largest IPv4 UDP payload. Loopback-only jobs may
// raise it; every datagram on a real network must fit the path MTU, since
// this layer never fragments on purpose.
//
// Default BatchSize is 128 messages (wireguard-go's IdealBatchSize). A GSO
// send carries at most 64 segments and at most 65507 (IPv4) or 65527 (IPv6)
// payload bytes, so a full batch of 1400-byte datagrams to one peer costs one
// sendmmsg(2) holding three GSO messages.
//
// With GRO each receive slot must hold a whole coalesced packet (up to 64
// KiB), so the Linux wire keeps 16 such slots (1 MiB per wire) instead of
// BatchSize; without GRO it keeps BatchSize slots of MaxPayload bytes.
//
// Default socket buffers are 8 MiB each way, set with SO_RCVBUFFORCE and
// SO_SNDBUFFORCE (which need CAP_NET_ADMIN) and otherwise with SO_RCVBUF and
// SO_SNDBUF, which the kernel caps at net.core.rmem_max and wmem_max.
// [UDP.Features] reports what was obtained.
//
// Received datagrams larger than MaxPayload are dropped and counted
// ([UDP.Stats]), never truncated into a Message.
//
// IPv6 zones (link-local scope IDs) are not carried: a zoned destination is
// rejected with an error and a received source has no zone.
package wire

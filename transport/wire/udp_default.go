//go:build !linux

package wire

// udpSys is empty where the wire has no batching path.
type udpSys struct{}

// open sets the socket buffers and selects the one-datagram path.
func (u *UDP) open(cfg *UDPConfig) error {
	u.v6 = !u.laddr.Addr().Is4()
	if cfg.SocketBuffer > 0 {
		_ = u.conn.SetReadBuffer(cfg.SocketBuffer)
		_ = u.conn.SetWriteBuffer(cfg.SocketBuffer)
	}
	u.single = true
	return nil
}

func (u *UDP) gsoState() (bool, error) { return false, nil }

func (u *UDP) writeMMsg(msgs []Message) (int, error) { return u.writeSingle(msgs) }

func (u *UDP) readMMsg(msgs []Message) (int, error) { return u.readSingle(msgs) }

package collectives

import "context"

// Barrier returns once every rank has entered it. It uses the
// dissemination algorithm: in round k each rank signals rank+2^k and waits
// for rank-2^k, ⌈log2 n⌉ rounds of empty messages.
func Barrier(ctx context.Context, c *Communicator) error {
	x, err := c.begin(ctx, "Barrier")
	if err != nil {
		return err
	}
	return x.finish(x.barrier())
}

func (x *exec) barrier() error {
	n, r := x.c.size, x.c.rank
	x.kind = kindBarrier
	step := 0
	for k := 1; k < n; k *= 2 {
		if err := x.sendrecv(x.mod(r+k), []byte{}, x.mod(r-k), []byte{}, step); err != nil {
			return err
		}
		step++
	}
	return nil
}

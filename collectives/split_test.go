package collectives

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

func TestSplit(t *testing.T) {
	const n = 9
	cs, _ := world(t, n, Options{}, nil)
	subs := make([]*Communicator, n)
	mustRun(t, cs, func(r int, c *Communicator) error {
		color := r % 3
		if r == 4 {
			color = -1 // joins nothing
		}
		s, err := c.Split(testCtx(t), color, -r) // reverse order by key
		subs[r] = s
		return err
	})
	for r := range n {
		s := subs[r]
		if r == 4 {
			if s != nil {
				t.Fatal("negative color got a communicator")
			}
			continue
		}
		// Members of color r%3, in decreasing parent rank.
		var members []int
		for q := n - 1; q >= 0; q-- {
			if q%3 == r%3 && q != 4 {
				members = append(members, q)
			}
		}
		if s.Size() != len(members) || members[s.Rank()] != r {
			t.Fatalf("rank %d: sub rank %d size %d, members %v", r, s.Rank(), s.Size(), members)
		}
		if s.ID() == cs[r].ID() {
			t.Fatal("sub-communicator shares the parent's ID")
		}
		defer s.Close()
	}
	// Collectives on the sub-communicators and the parent at the same time,
	// each pair of goroutines per rank sharing the one Conn.
	const iters = 5
	count := 1009
	var wg sync.WaitGroup
	errs := make(chan error, 2*n*iters)
	for r := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range iters {
				buf := make([]int64, count)
				for j := range buf {
					buf[j] = int64(r*1000 + i + j)
				}
				if err := AllReduce(testCtx(t), cs[r], nil, buf, Sum); err != nil {
					errs <- err
					return
				}
				want := int64(n*(n-1)/2*1000 + n*(i+5))
				if buf[5] != want {
					errs <- fmt.Errorf("parent rank %d iter %d: %d, want %d", r, i, buf[5], want)
				}
			}
		}()
		go func() {
			defer wg.Done()
			s := subs[r]
			if s == nil {
				return
			}
			for i := range iters {
				buf := []int32{int32(r), 1}
				if err := AllReduceWith(testCtx(t), s, nil, buf, Sum, Algorithm(1+i%3)); err != nil {
					errs <- err
					return
				}
				want := int32(0)
				for q := range n {
					if q%3 == r%3 && q != 4 {
						want += int32(q)
					}
				}
				if buf[0] != want || int(buf[1]) != s.Size() {
					errs <- fmt.Errorf("sub rank %d: %v, want %d, %d", r, buf, want, s.Size())
				}
				all := make([]float32, s.Size())
				if err := AllGather(testCtx(t), s, []float32{float32(r)}, all); err != nil {
					errs <- err
					return
				}
				for k := range all {
					if int(all[k]) != subsMember(subs, k, r) {
						errs <- fmt.Errorf("sub allgather at rank %d: %v", r, all)
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Nested split of a sub-communicator.
	nested := make([]*Communicator, n)
	mustRun(t, cs, func(r int, c *Communicator) error {
		if subs[r] == nil {
			return nil
		}
		s, err := subs[r].Split(testCtx(t), subs[r].Rank()%2, 0)
		nested[r] = s
		if err != nil {
			return err
		}
		return Barrier(testCtx(t), s)
	})
}

// subsMember returns the parent rank of sub rank k in r's sub-communicator.
func subsMember(subs []*Communicator, k, r int) int {
	for q, s := range subs {
		if s != nil && q%3 == r%3 && s.Rank() == k {
			return q
		}
	}
	return -1
}

// TestSplitNewConn: the hook gives each sub-communicator its own Conn.
func TestSplitNewConn(t *testing.T) {
	const n = 6
	nets := map[int]*fakeNet{0: newFakeNet(3), 1: newFakeNet(3)}
	var mu sync.Mutex
	var infos []SplitInfo
	opts := Options{NewConn: func(ctx context.Context, info SplitInfo) (Conn, error) {
		mu.Lock()
		infos = append(infos, info)
		mu.Unlock()
		return nets[info.Color].conn(info.Rank), nil
	}}
	cs, parent := world(t, n, opts, nil)
	mustRun(t, cs, func(r int, c *Communicator) error {
		s, err := c.Split(testCtx(t), r/3, r)
		if err != nil {
			return err
		}
		defer s.Close()
		buf := []float64{float64(r)}
		if err := AllReduce(testCtx(t), s, nil, buf, Max); err != nil {
			return err
		}
		if want := float64(r/3*3 + 2); buf[0] != want {
			return fmt.Errorf("rank %d: max %v, want %v", r, buf[0], want)
		}
		return nil
	})
	if len(infos) != n {
		t.Fatalf("NewConn called %d times", len(infos))
	}
	if parent.sends.Load() == 0 {
		t.Fatal("the parent's Split sent nothing")
	}
	if nets[0].sends.Load() == 0 || nets[1].sends.Load() == 0 {
		t.Fatal("sub-communicators did not use their own Conns")
	}
	for _, in := range infos {
		if in.ParentRanks[in.Rank] != in.Color*3+in.Rank || in.Size != 3 || in.ParentID != cs[0].ID() {
			t.Fatalf("bad SplitInfo %+v", in)
		}
	}
}

func TestDeriveID(t *testing.T) {
	seen := map[uint32]bool{}
	for seq := uint32(1); seq < 50; seq++ {
		for color := -1; color < 50; color++ {
			id := deriveID(1, seq, color)
			if id == 0 || id >= 1<<31 || id == 1 || seen[id] {
				t.Fatalf("deriveID(1, %d, %d) = %#x (dup or invalid)", seq, color, id)
			}
			seen[id] = true
		}
	}
}

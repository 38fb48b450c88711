package secure_test

import (
	"fmt"

	"github.com/sealring/sealring/secure"
)

func Example() {
	var keys [3]secure.LevelKeys
	for l := range keys {
		k, err := secure.GenerateLevelKeys()
		if err != nil {
			panic(err)
		}
		keys[l] = k
	}
	jobID := []byte("job-0000-0000-01") // 16 bytes
	g, err := secure.NewGroup(secure.GroupConfig{ID: jobID, Keys: keys})
	if err != nil {
		panic(err)
	}
	s, err := secure.NewSealer(g, secure.SealerConfig{ID: secure.SenderID(3, 1)})
	if err != nil {
		panic(err)
	}
	o, err := secure.NewOpener(secure.OpenerConfig{Groups: []*secure.Group{g}, CacheCapacity: 1024})
	if err != nil {
		panic(err)
	}

	msg := []byte("hello, rank 0")
	pkt := make([]byte, s.HeaderLen(), s.Overhead()+len(msg))
	pkt, err = s.Seal(append(pkt, msg...), 0, 0)
	if err != nil {
		panic(err)
	}
	r, err := o.Open(pkt, 0)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s from rank %d, epoch %d, counter %d\n", r.Payload, r.Header.ID>>32, r.Header.Epoch, r.Header.Counter)
	// Output: hello, rank 0 from rank 3, epoch 0, counter 1
}

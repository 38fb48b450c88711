package rendezvous

import (
	"bytes"
	"testing"

	"github.com/sealring/sealring/secure"
)

// FuzzKeyFormat: the decoders of what members read from the store (key
// state, control events, peer records) never panic, and whatever decodes
// re-encodes to the same bytes (each valid input has one encoding).
func FuzzKeyFormat(f *testing.F) {
	st, err := newKeyState(KeyControllerConfig{JobID: "j", Epoch: 3})
	if err != nil {
		f.Fatal(err)
	}
	ev := &keyEvent{seq: 1, kind: eventRotate, level: secure.User, gen: 2, groupID: st.groupID}
	st2, err := st.apply(ev)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(st.marshal())
	f.Add(st2.marshal())
	f.Add(ev.marshal())
	f.Add((&keyEvent{seq: 2, kind: eventEpoch, epoch: 4, groupID: st.groupID}).marshal())
	f.Add([]byte("v1 3 127.0.0.1:4000"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := unmarshalState(b); err == nil {
			if !bytes.Equal(s.marshal(), b) {
				t.Fatalf("state re-encodes differently:\n in %x\nout %x", b, s.marshal())
			}
		}
		if e, err := unmarshalEvent(b); err == nil {
			if !bytes.Equal(e.marshal(), b) {
				t.Fatalf("event re-encodes differently:\n in %x\nout %x", b, e.marshal())
			}
		}
		decodePeer(1, b)
	})
}

package app

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/natstest"
)

// The floor makes a booking's three writes, each booking its own hold, and
// cleans up after itself.
func TestFloorBooker(t *testing.T) {
	js := natstest.RunJetStream(t)
	ctx := t.Context()
	f, err := newFloorBooker(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if ok, err := f.book(ctx); !ok || err != nil {
			t.Fatalf("book: %v", err)
		}
	}
	st, err := js.Stream(ctx, floorStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 3 {
		t.Fatalf("requests published: %d, want 3", n)
	}
	for _, kv := range []jetstream.KeyValue{f.holds, f.status} {
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range keys.Keys() {
			n++
		}
		if n != 3 {
			t.Fatalf("%s: %d keys, want 3", kv.Bucket(), n)
		}
	}
	// A hold is exclusive: taking a slot twice is refused.
	if _, err := f.holds.Create(ctx, "c1.s1", []byte("x"), jetstream.KeyTTL(floorHoldTTL)); err == nil {
		t.Fatal("second hold on one slot taken")
	}
	f.close(ctx)
	if _, err := js.Stream(ctx, floorStream); err == nil {
		t.Fatal("floor stream left behind")
	}
}

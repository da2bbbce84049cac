package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

func TestBucket(t *testing.T) {
	js := runJetStream(t)
	ctx := context.Background()
	if err := cjs.Provision(ctx, js, cjs.Options{}); err != nil {
		t.Fatal(err)
	}
	b := cjs.NewBucket(js, subjects.BucketHolds)

	if _, err := b.Get(ctx, "maple.x"); !errors.Is(err, cjs.ErrNotFound) {
		t.Fatalf("Get missing = %v, want ErrNotFound", err)
	}
	rev, err := b.Create(ctx, "maple.x", []byte("one"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "maple.x", []byte("two"), 0); !errors.Is(err, cjs.ErrRevision) {
		t.Fatalf("second Create = %v, want ErrRevision", err)
	}
	e, err := b.Get(ctx, "maple.x")
	if err != nil || string(e.Value) != "one" || e.Revision != rev || time.Since(e.Created) > time.Minute {
		t.Fatalf("Get = %+v, %v", e, err)
	}
	if _, err := b.Update(ctx, "maple.x", []byte("stale"), rev+100); !errors.Is(err, cjs.ErrRevision) {
		t.Fatalf("Update at a wrong revision = %v, want ErrRevision", err)
	}
	rev2, err := b.Update(ctx, "maple.x", []byte("three"), rev)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "maple.x", rev); !errors.Is(err, cjs.ErrRevision) {
		t.Fatalf("Delete at an old revision = %v, want ErrRevision", err)
	}
	if err := b.Delete(ctx, "maple.x", rev2); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "maple.x"); !errors.Is(err, cjs.ErrNotFound) {
		t.Fatalf("Get deleted = %v, want ErrNotFound", err)
	}
	if _, err := b.Create(ctx, "maple.x", []byte("again"), 0); err != nil {
		t.Fatalf("Create over a delete marker: %v", err)
	}

	// A per-key TTL expires the key.
	if _, err := b.Create(ctx, "maple.ttl", []byte("x"), time.Second); err != nil {
		t.Fatal(err)
	}
	poll.For(t, 5*time.Second, func() error {
		if _, err := b.Get(ctx, "maple.ttl"); !errors.Is(err, cjs.ErrNotFound) {
			return fmt.Errorf("key with a 1s TTL still there (%v)", err)
		}
		return nil
	})
}

// TestRequests_ExtendHold: a hold taken for a second outlives it once
// extended over its revision; a hold released, or extended from a stale
// revision, is left alone.
func TestRequests_ExtendHold(t *testing.T) {
	js := runJetStream(t)
	ctx := context.Background()
	if err := cjs.Provision(ctx, js, cjs.Options{}); err != nil {
		t.Fatal(err)
	}
	r := cjs.NewRequests(js)
	holds := cjs.NewBucket(js, subjects.BucketHolds)
	const id = "0123456789abcdef0123456789abcdef"
	rev, err := r.Hold(ctx, "maple", "dr-lee_20300101T1400Z", id, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ExtendHold(ctx, "maple", "dr-lee_20300101T1400Z", id, rev+1, time.Hour); services.ErrorCode(err) != services.EConflict {
		t.Fatalf("ExtendHold at a stale revision = %v, want EConflict", err)
	}
	if err := r.ExtendHold(ctx, "maple", "dr-lee_20300101T1400Z", id, rev, time.Hour); err != nil {
		t.Fatalf("ExtendHold = %v", err)
	}
	time.Sleep(1500 * time.Millisecond) // past the first TTL: the extended hold is still there
	if e, err := holds.Get(ctx, "maple.dr-lee_20300101T1400Z"); err != nil || !strings.Contains(string(e.Value), id) {
		t.Fatalf("hold after its first TTL: %+v, %v; want it extended", e, err)
	}

	// Released by the clinic's agent before the relay extends it: it stays released.
	rev, err = r.Hold(ctx, "maple", "dr-lee_20300101T1430Z", id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Release(ctx, "maple", "dr-lee_20300101T1430Z", id); err != nil {
		t.Fatal(err)
	}
	if err := r.ExtendHold(ctx, "maple", "dr-lee_20300101T1430Z", id, rev, time.Hour); services.ErrorCode(err) != services.EConflict {
		t.Fatalf("ExtendHold of a released hold = %v, want EConflict", err)
	}
	if _, err := holds.Get(ctx, "maple.dr-lee_20300101T1430Z"); !errors.Is(err, cjs.ErrNotFound) {
		t.Fatalf("released hold is back: %v", err)
	}
}

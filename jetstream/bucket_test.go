package jetstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
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
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := b.Get(ctx, "maple.ttl"); errors.Is(err, cjs.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("key with a 1s TTL still there after 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

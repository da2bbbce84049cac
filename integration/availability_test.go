package integration

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// TestAvailability_PastDaysDropped: when the clinic's date moves on, the
// agent deletes the day that is now past from AVAILABILITY.
func TestAvailability_PastDaysDropped(t *testing.T) {
	env := NewEnv(t)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	env.AgentNow = func() time.Time { return time.Unix(0, now.Load()) }
	env.MustStartAgent(env.MustAddClinic("yew"), nil, nil)
	kv, err := env.Admin.JS.KeyValue(context.Background(), subjects.BucketAvailability)
	if err != nil {
		t.Fatal(err)
	}
	loc, _ := time.LoadLocation("America/Toronto")
	today := time.Now().In(loc).Format(time.DateOnly)
	key := subjects.AvailabilityKey("yew", today)
	poll.For(t, 10*time.Second, func() error {
		_, err := kv.Get(context.Background(), key)
		return err
	})
	now.Add(int64(24 * time.Hour))
	poll.For(t, 10*time.Second, func() error {
		_, err := kv.Get(context.Background(), key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		return fmt.Errorf("%s still there (%v)", key, err)
	})
	// The new last day of the window was published.
	last := time.Now().In(loc).AddDate(0, 0, 60).Format(time.DateOnly)
	if _, err := kv.Get(context.Background(), subjects.AvailabilityKey("yew", last)); err != nil {
		t.Errorf("day %s not published: %v", last, err)
	}
}

package readmodel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/internal/natstest"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/readmodel"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestCatalog_MalformedKeys: the web's mirrors keep only well-formed keys
// (a day inside the booking window, a hold of a slot ID, the known CLINICS
// keys), whatever the buckets hold, and log each one they drop.
func TestCatalog_MalformedKeys(t *testing.T) {
	js := natstest.RunJetStream(t)
	ctx := context.Background()
	if err := cjs.Provision(ctx, js, cjs.Options{}); err != nil {
		t.Fatal(err)
	}
	put := func(bucket, key string, v any) {
		b, _ := json.Marshal(v)
		if _, err := cjs.NewBucket(js, bucket).Put(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	day := func(date string) services.Day {
		d, _ := time.Parse(time.DateOnly, date)
		start := d.Add(15 * time.Hour)
		return services.Day{Clinic: "maple", Date: date, Slots: []services.Slot{{ID: services.SlotID("dr-lee", start),
			ProviderID: "dr-lee", Start: start, End: start.Add(30 * time.Minute)}}}
	}
	now := time.Now().UTC()
	in, far := now.AddDate(0, 0, 3).Format(time.DateOnly), now.AddDate(0, 0, services.DaysAhead+30).Format(time.DateOnly)
	put(subjects.BucketClinics, "maple", services.Clinic{ID: "maple", Name: "Maple", TimeZone: "UTC"})
	put(subjects.BucketClinics, "maple.junk", "x")
	put(subjects.BucketAvailability, "maple."+in, day(in))
	put(subjects.BucketAvailability, "maple."+far, day(far))
	put(subjects.BucketAvailability, "maple.not-a-date", day(in))
	put(subjects.BucketHolds, "maple.not-a-slot", map[string]string{"request_id": "x"})

	var logs syncBuf
	c := readmodel.NewCatalog(nil)
	c.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	ready := make(chan struct{})
	go c.Run(t.Context(), js, ready)
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("catalog not ready")
	}
	d := func(s string) time.Time { t, _ := time.Parse(time.DateOnly, s); return t }
	if got := c.Slots("maple", d(in), d(in)); len(got) != 1 {
		t.Errorf("day inside the window: %d slots, want 1", len(got))
	}
	if got := c.Slots("maple", d(far), d(far)); len(got) != 0 {
		t.Errorf("day past the window: %d slots, want none kept", len(got))
	}
	for _, key := range []string{"maple.junk", "maple." + far, "maple.not-a-date", "maple.not-a-slot"} {
		if !strings.Contains(logs.String(), "key="+key) {
			t.Errorf("no log of %s dropped:\n%s", key, logs.String())
		}
	}
}

// TestCatalog_NoticesVanishedValues: values that vanish with no delete for
// the watch to see (an operator purges a stream, a bucket is made anew)
// leave the web's mirrors too, within a few checks, without a restart; and
// the mirrors go on following the bucket afterwards.
func TestCatalog_NoticesVanishedValues(t *testing.T) {
	js := natstest.RunJetStream(t)
	ctx := context.Background()
	if err := cjs.Provision(ctx, js, cjs.Options{}); err != nil {
		t.Fatal(err)
	}
	put := func(bucket, key string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := cjs.NewBucket(js, bucket).Put(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	date := time.Now().UTC().AddDate(0, 0, 3)
	day := func(clinic string) services.Day {
		start := date.Truncate(24 * time.Hour).Add(15 * time.Hour)
		return services.Day{Clinic: clinic, Date: date.Format(time.DateOnly), Slots: []services.Slot{{
			ID: services.SlotID("dr-lee", start), ProviderID: "dr-lee", Start: start, End: start.Add(30 * time.Minute)}}}
	}
	for _, clinic := range []string{"maple", "oak"} {
		put(subjects.BucketClinics, clinic, services.Clinic{ID: clinic, Name: clinic, TimeZone: "UTC"})
		put(subjects.BucketAvailability, subjects.AvailabilityKey(clinic, date.Format(time.DateOnly)), day(clinic))
	}
	slot := day("maple").Slots[0].ID
	put(subjects.BucketHolds, subjects.HoldKey("oak", slot), map[string]string{"request_id": strings.Repeat("a", 32)})

	var logs syncBuf
	c := readmodel.NewCatalog(nil)
	c.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	c.SetCheckEvery(100 * time.Millisecond)
	ready := make(chan struct{})
	go c.Run(t.Context(), js, ready)
	<-ready
	day0 := date.Truncate(24 * time.Hour)
	slots := func(clinic string) int { return len(c.Slots(clinic, day0, day0)) }
	if slots("maple") != 1 || slots("oak") != 0 {
		t.Fatalf("before: maple %d slots, oak %d (held), want 1 and 0", slots("maple"), slots("oak"))
	}
	await := func(what string, ok func() bool) {
		t.Helper()
		poll.For(t, 5*time.Second, func() error {
			if !ok() {
				return fmt.Errorf("%s: not seen; logs:\n%s", what, logs.String())
			}
			return nil
		})
	}

	// `nats stream purge KV_AVAILABILITY`: no delete reaches the watch.
	st, err := js.Stream(ctx, subjects.KVStream(subjects.BucketAvailability))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	await("the purged days gone", func() bool { return slots("maple") == 0 })
	if !strings.Contains(logs.String(), "bucket=AVAILABILITY") {
		t.Errorf("no log of the purge:\n%s", logs.String())
	}
	put(subjects.BucketAvailability, subjects.AvailabilityKey("maple", date.Format(time.DateOnly)), day("maple"))
	await("a day published after the purge", func() bool { return slots("maple") == 1 })

	// HOLDS deleted and made again (a restore): oak's hold is gone, so its slot is free.
	if _, ok := c.Clinic("oak"); !ok {
		t.Fatal("oak is gone from CLINICS with AVAILABILITY's purge")
	}
	put(subjects.BucketAvailability, subjects.AvailabilityKey("oak", date.Format(time.DateOnly)), day("oak"))
	if err := js.DeleteKeyValue(ctx, subjects.BucketHolds); err != nil {
		t.Fatal(err)
	}
	if err := cjs.Provision(ctx, js, cjs.Options{}); err != nil {
		t.Fatal(err)
	}
	await("the hold of a bucket made anew gone", func() bool { return slots("oak") == 1 })
	put(subjects.BucketHolds, subjects.HoldKey("maple", slot), map[string]string{"request_id": strings.Repeat("b", 32)})
	await("a hold in the new bucket", func() bool { return slots("maple") == 0 })
}

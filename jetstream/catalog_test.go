package jetstream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
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
	js := runJetStream(t)
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
	c := cjs.NewCatalog(nil)
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

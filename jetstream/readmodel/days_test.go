package readmodel

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/services"
)

// testDay is maple's 2026-03-02 in Toronto (UTC-5): one slot at 09:30 local.
func testDay() services.Day {
	start := time.Date(2026, 3, 2, 14, 30, 0, 0, time.UTC)
	return services.Day{Clinic: "maple", Date: "2026-03-02", Slots: []services.Slot{
		{ID: services.SlotID("dr-lee", start), ProviderID: "dr-lee", Start: start, End: start.Add(30 * time.Minute)}}}
}

// A day an agent writes wrong is dropped, not served, and logged by key; the
// day it replaces is not served either.
func TestCatalog_DropsInvalidDay(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := NewCatalog(func() time.Time { return now })
	var logs bytes.Buffer
	c.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	from := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	good, _ := json.Marshal(testDay())

	c.days.Apply(testEntry{key: "maple.2026-03-02", value: good})
	if got := c.Slots("maple", from, from); len(got) != 1 {
		t.Fatalf("Slots after a good day = %v, want 1 slot", got)
	}
	if logs.Len() != 0 {
		t.Fatalf("a good day was logged: %s", logs.String())
	}

	bad := testDay()
	bad.Slots[0].ProviderID = "dr-kim"
	b, _ := json.Marshal(bad)
	c.days.Apply(testEntry{key: "maple.2026-03-02", value: b})
	if got := c.Slots("maple", from, from); len(got) != 0 {
		t.Fatalf("Slots after a bad day = %v, want none", got)
	}
	for _, want := range []string{"level=WARN", "bucket=AVAILABILITY", "key=maple.2026-03-02", "differs from the id"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %q lacks %q", logs.String(), want)
		}
	}

	c.days.Apply(testEntry{key: "maple.2026-03-02", value: good})
	c.days.Apply(testEntry{key: "maple.2026-03-02", op: jetstream.KeyValueDelete})
	if got := c.Slots("maple", from, from); len(got) != 0 {
		t.Fatalf("Slots after a delete = %v, want none", got)
	}
}

// testEntry is a KV entry as a watch delivers it.
type testEntry struct {
	key   string
	value []byte
	op    jetstream.KeyValueOp
}

func (e testEntry) Bucket() string                  { return "AVAILABILITY" }
func (e testEntry) Key() string                     { return e.key }
func (e testEntry) Value() []byte                   { return e.value }
func (e testEntry) Revision() uint64                { return 1 }
func (e testEntry) Created() time.Time              { return time.Time{} }
func (e testEntry) Delta() uint64                   { return 0 }
func (e testEntry) Operation() jetstream.KeyValueOp { return e.op }

// TestCatalog_HoldReleaseGrace: a released hold keeps its slot off offer for
// ReleaseGrace (the day's new value may still be on its way), then the slot
// is back, and the clinic's version moves so cached answers follow.
func TestCatalog_HoldReleaseGrace(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := NewCatalog(func() time.Time { return now })
	from := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	free := func() bool { return len(c.Slots("maple", from, from)) == 1 }
	good, _ := json.Marshal(testDay())
	c.days.Apply(testEntry{key: "maple.2026-03-02", value: good})
	slot := testDay().Slots[0].ID
	key := "maple." + slot
	c.holds.Apply(testEntry{key: key, value: []byte(`{"request_id":"0123456789abcdef0123456789abcdef"}`)})
	if free() {
		t.Fatal("a held slot is free")
	}
	c.holds.Apply(testEntry{key: key, op: jetstream.KeyValueDelete})
	released, v := time.Now(), c.Version("maple")
	if free() {
		t.Fatal("free at once after its hold went away, before the grace")
	}
	for {
		if free() {
			break
		}
		if time.Since(released) > ReleaseGrace+time.Second {
			t.Fatalf("still not free %s after the release", time.Since(released))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := time.Since(released); d < ReleaseGrace-50*time.Millisecond {
		t.Errorf("free again after %s, before the %s grace", d, ReleaseGrace)
	}
	poll.For(t, time.Second, func() error {
		if c.Version("maple") == v {
			return errors.New("the version did not move when the grace ended")
		}
		return nil
	})
}

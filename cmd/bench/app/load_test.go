package app

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/services"
)

func TestSummarize(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	s := summarize(4, 3, lat, 2*time.Second)
	if s.OK != 100 || s.Failed != 3 || s.PerSec != 50 || s.P50ms != 51 || s.P99ms != 100 || s.Maxms != 100 {
		t.Errorf("summarize = %+v; want 100 ok, 3 failed, 50/s, p50 51, p99 100, max 100", s)
	}
}

func TestClosedLoop_CountsAndStops(t *testing.T) {
	var calls atomic.Int64
	fail := errors.New("refused")
	s := closedLoop(context.Background(), 4, 200*time.Millisecond, func(context.Context) (bool, error) {
		time.Sleep(time.Millisecond)
		if calls.Add(1)%10 == 0 {
			return false, fail
		}
		return true, nil
	})
	if s.Clients != 4 || s.OK == 0 || s.Failed == 0 || s.Seconds < 0.2 || s.Seconds > 1 {
		t.Errorf("closedLoop = %+v; want 4 clients, some ok, some failed, about 0.2s", s)
	}
	// A pool that runs dry ends the step early.
	pool := &slotPool{items: interleave([][]slot{{{"a", "1"}, {"a", "2"}}, {{"b", "1"}}})}
	if got := []slot{pool.items[0], pool.items[1], pool.items[2]}; got[0].clinic != "a" || got[1].clinic != "b" || got[2].id != "2" {
		t.Errorf("interleave = %v; want a1 b1 a2", got)
	}
	t0 := time.Now()
	s = closedLoop(context.Background(), 2, 5*time.Second, func(context.Context) (bool, error) {
		_, ok := pool.take()
		return ok, nil
	})
	if time.Since(t0) > 2*time.Second || pool.left() != 0 {
		t.Errorf("an empty pool did not end the step: %s, %d left", time.Since(t0), pool.left())
	}
}

// TestFloodDay: the flood's days are as large as asked, small enough for
// the relay to judge them by their rules (not their size), and days of
// beta on their own date.
func TestFloodDay(t *testing.T) {
	for _, kib := range []int{1, 250} {
		key, value := floodDay(5, kib)
		var d services.Day
		if err := json.Unmarshal(value, &d); err != nil {
			t.Fatal(err)
		}
		date := time.Now().UTC().AddDate(0, 0, 4).Format(time.DateOnly)
		if len(value) < kib<<10 || len(value) > cjs.MaxDayBytes || key != "beta."+date || d.Clinic != "beta" || d.Date != date {
			t.Errorf("floodDay(5, %d) = %s, %d bytes of clinic %s on %s", kib, key, len(value), d.Clinic, d.Date)
		}
		for _, s := range d.Slots {
			if s.Start.UTC().Format(time.DateOnly) != date {
				t.Fatalf("slot %s is not on %s", s.ID, date)
			}
		}
	}
}

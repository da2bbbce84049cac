package jetstream

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// UTC offsets span -12:00 to +14:00, so a local date D starts no earlier than
// D 00:00 UTC - 14h and ends no later than D+1 00:00 UTC + 12h.
const (
	earliestOffset = 14 * time.Hour
	latestOffset   = 12 * time.Hour
)

// DecodeDay decodes the AVAILABILITY value stored under key
// "<clinic>.<YYYY-MM-DD>" and checks it against the key: the day names the
// key's clinic and date, and each slot has a slot ID made of its provider and
// start, ends after it starts (or has no end), and starts on that date in
// some time zone. Agents write these values; the catalog drops one that fails
// rather than offer its slots to patients.
func DecodeDay(key string, value []byte) (services.Day, error) {
	clinic, date, _ := strings.Cut(key, ".")
	if subjects.ValidClinicID(clinic) != nil {
		return services.Day{}, fmt.Errorf("key %q is not <clinic>.<date>", key)
	}
	day, err := time.Parse(time.DateOnly, date)
	if err != nil || day.Format(time.DateOnly) != date {
		return services.Day{}, fmt.Errorf("key %q is not <clinic>.<date>", key)
	}
	var d services.Day
	if err := json.Unmarshal(value, &d); err != nil {
		return services.Day{}, fmt.Errorf("decode day: %w", err)
	}
	if d.Clinic != clinic || d.Date != date {
		return services.Day{}, fmt.Errorf("day of clinic %q on %q stored under %q", d.Clinic, d.Date, key)
	}
	for i, sl := range d.Slots {
		if err := slotProblem(day, sl); err != nil {
			return services.Day{}, fmt.Errorf("slot %d: %w", i, err)
		}
	}
	return d, nil
}

// slotProblem is what is wrong with a slot of the day that starts at day
// (00:00 UTC of its date), or nil.
func slotProblem(day time.Time, s services.Slot) error {
	from, to := day.Add(-earliestOffset), day.AddDate(0, 0, 1).Add(latestOffset)
	provider, start, err := services.ParseSlotID(s.ID)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a slot id", s.ID)
	case provider != s.ProviderID || !start.Equal(s.Start):
		return fmt.Errorf("slot %s: provider %q or start %s differs from the id (a slot starts on a whole minute)",
			s.ID, s.ProviderID, s.Start.Format(time.RFC3339Nano))
	case !s.End.IsZero() && !s.End.After(s.Start):
		return fmt.Errorf("slot %s: ends before it starts", s.ID)
	case start.Before(from) || !start.Before(to):
		return fmt.Errorf("slot %s: does not start on %s", s.ID, day.Format(time.DateOnly))
	}
	return nil
}

// DayTooBig is what a clinic can do about a day over MaxDayBytes.
const DayTooBig = "offer fewer free slots that day (longer slots, or fewer providers online)"

// Fitted says what FitDay left out of a day.
type Fitted struct {
	Skipped int    // slots the relay would refuse, each alone
	Why     string // why the first of them
	Cut     int    // slots past MaxDayBytes, the latest of the day
}

// FitDay is d as the relay takes it, encoded: without the slots it would
// refuse (one bad slot from a clinic's system no longer loses the whole
// day), and cut to its earliest slots when the rest would not fit in
// MaxDayBytes.
func FitDay(d services.Day) ([]byte, Fitted) {
	var f Fitted
	if day, err := time.Parse(time.DateOnly, d.Date); err == nil { // else the relay names the date as wrong
		kept := make([]services.Slot, 0, len(d.Slots))
		for _, s := range d.Slots {
			if err := slotProblem(day, s); err != nil {
				if f.Skipped++; f.Skipped == 1 {
					f.Why = err.Error()
				}
				continue
			}
			kept = append(kept, s)
		}
		d.Slots = kept
	}
	b, _ := json.Marshal(d)
	if len(b) <= MaxDayBytes {
		return b, f
	}
	slices.SortStableFunc(d.Slots, func(a, b services.Slot) int { return a.Start.Compare(b.Start) })
	all := d.Slots
	n := sort.Search(len(all)+1, func(n int) bool {
		d.Slots = all[:n]
		b, _ = json.Marshal(d)
		return len(b) > MaxDayBytes
	}) - 1
	d.Slots, f.Cut = all[:n], len(all)-n
	b, _ = json.Marshal(d)
	return b, f
}

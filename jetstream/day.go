package jetstream

import (
	"encoding/json"
	"fmt"
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

// decodeDay decodes the AVAILABILITY value stored under key
// "<clinic>.<YYYY-MM-DD>" and checks it against the key: the day names the
// key's clinic and date, and each slot has a slot ID made of its provider and
// start, ends after it starts (or has no end), and starts on that date in
// some time zone. Agents write these values; the catalog drops one that fails
// rather than offer its slots to patients.
func decodeDay(key string, value []byte) (services.Day, error) {
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
	from, to := day.Add(-earliestOffset), day.AddDate(0, 0, 1).Add(latestOffset)
	for i, s := range d.Slots {
		provider, start, err := services.ParseSlotID(s.ID)
		switch {
		case err != nil:
			return services.Day{}, fmt.Errorf("slot %d: %q is not a slot id", i, s.ID)
		case provider != s.ProviderID || !start.Equal(s.Start):
			return services.Day{}, fmt.Errorf("slot %s: provider %q or start %s differs from the id", s.ID, s.ProviderID, s.Start)
		case !s.End.IsZero() && !s.End.After(s.Start):
			return services.Day{}, fmt.Errorf("slot %s: ends before it starts", s.ID)
		case start.Before(from) || !start.Before(to):
			return services.Day{}, fmt.Errorf("slot %s: does not start on %s", s.ID, date)
		}
	}
	return d, nil
}

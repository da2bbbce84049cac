package services

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/clinicrelay/clinicrelay/subjects"
)

// Interval is an opening period within one day, "HH:MM" to "HH:MM" local time.
type Interval struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// ProviderSchedule is a provider with weekly opening hours, a slot length and closures.
type ProviderSchedule struct {
	Provider
	SlotMinutes int                   `json:"slot_minutes"`
	Hours       map[string][]Interval `json:"hours"`    // "mon".."sun"
	Closures    []string              `json:"closures"` // YYYY-MM-DD dates
}

var weekdays = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// clock parses "HH:MM" (exactly five characters) into minutes after midnight.
func clock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, fmt.Errorf("%q is not a time HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// Validate checks IDs, slot length, hours and closures, naming the field at fault.
func (p ProviderSchedule) Validate(prefix string) error {
	f := FieldErrors{}
	if err := subjects.ValidProviderID(p.ID); err != nil {
		f.Add(prefix+"id", err.Error())
	}
	if n := strings.TrimSpace(p.Name); n == "" || len(n) > 120 {
		f.Add(prefix+"name", "name must be 1-120 characters")
	}
	if p.SlotMinutes < 5 || p.SlotMinutes > 480 {
		f.Add(prefix+"slot_minutes", "slot_minutes must be between 5 and 480")
	}
	for day, ivs := range p.Hours {
		if !slices.Contains(weekdays, day) {
			f.Add(prefix+"hours", fmt.Sprintf("%q is not a weekday (mon..sun)", day))
			continue
		}
		type period struct{ s, e int }
		var ps []period
		for _, iv := range ivs {
			s, err1 := clock(iv.Start)
			e, err2 := clock(iv.End)
			if err1 != nil || err2 != nil || e <= s {
				f.Add(prefix+"hours."+day, fmt.Sprintf("%s-%s is not a period HH:MM-HH:MM", iv.Start, iv.End))
				continue
			}
			ps = append(ps, period{s, e})
		}
		slices.SortFunc(ps, func(a, b period) int { return a.s - b.s })
		for i := 1; i < len(ps); i++ {
			if ps[i].s < ps[i-1].e {
				f.Add(prefix+"hours."+day, "periods overlap")
			}
		}
	}
	for _, d := range p.Closures {
		if _, err := time.Parse(time.DateOnly, d); err != nil {
			f.Add(prefix+"closures", fmt.Sprintf("%q is not a date YYYY-MM-DD", d))
		}
	}
	return f.Err()
}

// Slots lists the provider's slots that start on local dates [from, to) in loc.
// Local wall-clock times are resolved in loc day by day, so hours stay right
// across daylight-saving changes.
func (p ProviderSchedule) Slots(from, to time.Time, loc *time.Location) []Slot {
	var out []Slot
	step := time.Duration(p.SlotMinutes) * time.Minute
	for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
		date := d.Format(time.DateOnly)
		if slices.Contains(p.Closures, date) {
			continue
		}
		for _, iv := range p.Hours[weekdays[d.Weekday()]] {
			s, err1 := clock(iv.Start)
			e, err2 := clock(iv.End)
			if err1 != nil || err2 != nil || step <= 0 {
				continue
			}
			start := time.Date(d.Year(), d.Month(), d.Day(), s/60, s%60, 0, 0, loc)
			end := time.Date(d.Year(), d.Month(), d.Day(), e/60, e%60, 0, 0, loc)
			for t := start; !t.Add(step).After(end); t = t.Add(step) {
				out = append(out, Slot{ID: SlotID(p.ID, t), ProviderID: p.ID, Start: t.UTC(), End: t.Add(step).UTC()})
			}
		}
	}
	return out
}

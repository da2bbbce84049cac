package services

import (
	"fmt"
	"slices"
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
	if k, m := nameProblem(p.Name); m != "" {
		f.AddKey(prefix+"name", k, m)
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
	p.Policy.check(&f, prefix+"policy.")
	for _, d := range p.Closures {
		if _, err := time.Parse(time.DateOnly, d); err != nil {
			f.Add(prefix+"closures", fmt.Sprintf("%q is not a date YYYY-MM-DD", d))
		}
	}
	return f.Err()
}

// Slots lists the provider's slots that start on local dates [from, to) in loc.
// Slots follow the wall clock: one starts at every opening time plus a whole
// number of slot lengths, at each instant the clock in loc reads that time on
// that date. On a spring-forward day the skipped times have no slot; on a
// fall-back day the repeated times have two, an hour apart. A slot that would
// overlap the one before, or run past closing time, is left out.
func (p ProviderSchedule) Slots(from, to time.Time, loc *time.Location) []Slot {
	var out []Slot
	step := time.Duration(p.SlotMinutes) * time.Minute
	for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
		date := d.Format(time.DateOnly)
		if slices.Contains(p.Closures, date) || p.SlotMinutes <= 0 {
			continue
		}
		for _, iv := range p.Hours[weekdays[d.Weekday()]] {
			s, err1 := clock(iv.Start)
			e, err2 := clock(iv.End)
			if err1 != nil || err2 != nil {
				continue
			}
			var starts []time.Time
			for m := s; m+p.SlotMinutes <= e; m += p.SlotMinutes {
				starts = append(starts, wallInstants(d, m, loc)...)
			}
			slices.SortFunc(starts, time.Time.Compare)
			closing := closingInstant(d, e, loc)
			var prevEnd time.Time
			for _, t := range starts {
				if t.Before(prevEnd) || t.Add(step).After(closing) {
					continue
				}
				prevEnd = t.Add(step)
				out = append(out, Slot{ID: SlotID(p.ID, t), ProviderID: p.ID, Start: t.UTC(), End: prevEnd.UTC()})
			}
		}
	}
	return out
}

// wallInstants lists, earliest first, the instants at which the clock in loc
// reads minute m of d's date: none in a spring-forward gap, two in a
// fall-back overlap, else one. time.Date cannot be used for this: it picks
// one instant of an overlap, and for a time in a gap one an hour early in
// zones west of UTC (02:30 on 8 March 2026 in Toronto gives 01:30 EST).
func wallInstants(d time.Time, m int, loc *time.Location) []time.Time {
	wall := time.Date(d.Year(), d.Month(), d.Day(), m/60, m%60, 0, 0, time.UTC)
	var out []time.Time
	// The offsets a day either side cover any change on that date.
	for _, probe := range []time.Time{wall.Add(-24 * time.Hour), wall.Add(24 * time.Hour)} {
		_, off := probe.In(loc).Zone()
		t := wall.Add(-time.Duration(off) * time.Second)
		if sameWall(t.In(loc), wall) && !slices.ContainsFunc(out, t.Equal) {
			out = append(out, t)
		}
	}
	if len(out) == 0 { // no change that day, or a change not at the probes' offsets
		if t := time.Date(wall.Year(), wall.Month(), wall.Day(), m/60, m%60, 0, 0, loc); sameWall(t, wall) {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}

// closingInstant is the last instant the clock in loc reads minute m of d's
// date, or the instant it jumps past it when that time is skipped.
func closingInstant(d time.Time, m int, loc *time.Location) time.Time {
	if ts := wallInstants(d, m, loc); len(ts) > 0 {
		return ts[len(ts)-1]
	}
	// In a gap: the clock jumps forward at the start of the zone period in
	// force just after it.
	wall := time.Date(d.Year(), d.Month(), d.Day(), m/60, m%60, 0, 0, time.UTC)
	_, before := wall.Add(-24 * time.Hour).In(loc).Zone()
	start, _ := wall.Add(-time.Duration(before) * time.Second).In(loc).ZoneBounds()
	return start
}

func sameWall(t, wall time.Time) bool {
	y, mo, d := t.Date()
	wy, wmo, wd := wall.Date()
	return y == wy && mo == wmo && d == wd && t.Hour() == wall.Hour() && t.Minute() == wall.Minute()
}

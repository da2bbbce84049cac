package services

import (
	"fmt"
	"time"
)

// BookingPolicy is what patients may book and change online with one
// provider: how long ahead a request must come (NoticeMinutes), how far
// ahead it may (HorizonDays), and until when a booked appointment may be
// cancelled or moved online (CutoffHours before it, or within GraceMinutes
// after the clinic booked it, whatever the cutoff, as Jane allows). The
// zero policy allows what the clinic publishes. The clinic sets it with
// its providers (the console), the agent publishes it with them, and the
// web front enforces it, on the pages and again when a request or change
// comes, so a stale page or a forged slot ID cannot get past it.
type BookingPolicy struct {
	NoticeMinutes int `json:"notice_minutes,omitempty"`
	HorizonDays   int `json:"horizon_days,omitempty"`
	CutoffHours   int `json:"cutoff_hours,omitempty"`
	GraceMinutes  int `json:"grace_minutes,omitempty"`
}

// Bounds of a BookingPolicy.
const (
	MaxNoticeMinutes = 14 * 24 * 60
	MaxCutoffHours   = 14 * 24
	MaxGraceMinutes  = 24 * 60
)

// Validate checks the policy's ranges, naming each field at fault under prefix.
func (p BookingPolicy) Validate(prefix string) error {
	f := FieldErrors{}
	p.check(&f, prefix)
	return f.Err()
}

// check adds to f each of the policy's fields out of range, under prefix.
func (p BookingPolicy) check(f *FieldErrors, prefix string) {
	check := func(name string, v, most int) {
		if v < 0 || v > most {
			f.Add(prefix+name, fmt.Sprintf("%s must be between 0 and %d", name, most))
		}
	}
	check("notice_minutes", p.NoticeMinutes, MaxNoticeMinutes)
	check("horizon_days", p.HorizonDays, DaysAhead)
	check("cutoff_hours", p.CutoffHours, MaxCutoffHours)
	check("grace_minutes", p.GraceMinutes, MaxGraceMinutes)
}

// Bookable says why a slot starting at start cannot be requested at now,
// or nil: too soon, or too far ahead. Its error names the field slot_id.
func (p BookingPolicy) Bookable(now, start time.Time) error {
	var f FieldErrors
	switch {
	case p.NoticeMinutes > 0 && start.Sub(now) < time.Duration(p.NoticeMinutes)*time.Minute:
		f.AddKeyArgs("slot_id", "field.slot_id.notice", fmt.Sprintf("this time is too soon: the clinic takes online requests at least %s ahead",
			span(time.Duration(p.NoticeMinutes)*time.Minute)), p.NoticeMinutes)
	case p.HorizonDays > 0 && start.Sub(now) > time.Duration(p.HorizonDays)*24*time.Hour:
		f.AddKeyArgs("slot_id", "field.slot_id.horizon", fmt.Sprintf("this time is too far ahead: the clinic takes online requests up to %d days ahead",
			p.HorizonDays), p.HorizonDays)
	}
	return f.Err()
}

// Offers reports whether a slot starting at start is offered at now.
func (p BookingPolicy) Offers(now, start time.Time) bool {
	return start.After(now) && p.Bookable(now, start) == nil
}

// Changeable says why the patient can no longer cancel or move the
// request of st online at now, or nil: it is booked, its start is within
// the cutoff, and the grace after the clinic booked it is over.
func (p BookingPolicy) Changeable(st Status, now time.Time) error {
	if p.CutoffHours == 0 || st.State != StateBooked {
		return nil
	}
	_, start, err := ParseSlotID(st.SlotID)
	cutoff := time.Duration(p.CutoffHours) * time.Hour
	grace := time.Duration(p.GraceMinutes) * time.Minute
	if err != nil || start.Sub(now) >= cutoff || now.Sub(st.UpdatedAt) < grace {
		return nil
	}
	e := Keyed(EInvalid, "change.cutoff",
		"this appointment is less than %s away: it can no longer be cancelled or moved online; please call the clinic",
		span(cutoff))
	e.KeyArgs = []any{p.CutoffHours}
	return e
}

// span is d as a reader says it: "2 hours", "90 minutes", "1 day".
func span(d time.Duration) string {
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d%(24*time.Hour) == 0:
		return plural(int(d/(24*time.Hour)), "day")
	case d%time.Hour == 0:
		return plural(int(d/time.Hour), "hour")
	}
	return plural(int(d/time.Minute), "minute")
}

package services

import (
	"time"

	ics "github.com/arran4/golang-ical"
)

// DefaultSlotLength is an appointment's length when its slot's end is not
// known any more (a booked slot is no longer published).
const DefaultSlotLength = 30 * time.Minute

// SlotTimes returns the start and end of slot id. The end comes from known,
// the slots the caller has at hand: the slot itself, or another slot of the
// same provider (a provider's slots have one length); DefaultSlotLength
// otherwise.
func SlotTimes(id string, known []Slot) (start, end time.Time, err error) {
	provider, start, err := ParseSlotID(id)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	length := time.Duration(0)
	for _, s := range known {
		if s.ProviderID != provider || !s.End.After(s.Start) {
			continue
		}
		if s.ID == id {
			return start, s.End, nil
		}
		if length == 0 {
			length = s.End.Sub(s.Start)
		}
	}
	if length == 0 {
		length = DefaultSlotLength
	}
	return start, start.Add(length), nil
}

// Appointment is what a calendar file says: no reason, no clinical text.
type Appointment struct {
	RequestID  string
	ClinicName string
	Zone       *time.Location // the clinic's zone; UTC if nil
	Start, End time.Time
	Link       string // the patient's status page, or ""
	Stamp      time.Time
}

// ICS renders a as an RFC 5545 calendar with one event. Times are local to
// the clinic's zone (TZID), with a VTIMEZONE that gives the zone's offsets
// around the appointment, so a calendar shows the right instant wherever it
// is.
func (a Appointment) ICS() []byte {
	loc := a.Zone
	if loc == nil {
		loc = time.UTC
	}
	cal := ics.NewCalendarFor("clinicrelay")
	cal.SetMethod(ics.MethodPublish)
	cal.SetCalscale("GREGORIAN")
	tzid := loc.String()
	cal.AddVTimezone(vtimezone(tzid, loc, a.Start))
	ev := cal.AddEvent(a.RequestID + "@clinicrelay")
	ev.SetDtStampTime(a.Stamp)
	setTime(&ev.ComponentBase, ics.ComponentPropertyDtStart, a.Start, loc)
	setTime(&ev.ComponentBase, ics.ComponentPropertyDtEnd, a.End, loc)
	ev.SetSummary("Appointment at " + a.ClinicName)
	ev.SetLocation(a.ClinicName)
	if a.Link != "" {
		ev.SetURL(a.Link)
	}
	ev.SetStatus(ics.ObjectStatusConfirmed)
	return []byte(cal.Serialize(ics.WithNewLine("\r\n")))
}

const icsLocal = "20060102T150405"

// setTime writes t as local time in loc with its TZID, unless that wall
// time happens twice (the hour a fall-back repeats), where a reader could
// take the other one: then in UTC, which names one instant.
func setTime(c *ics.ComponentBase, p ics.ComponentProperty, t time.Time, loc *time.Location) {
	wall := t.In(loc).Format(icsLocal)
	for _, d := range []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour} {
		if t.Add(d).In(loc).Format(icsLocal) == wall || t.Add(-d).In(loc).Format(icsLocal) == wall {
			c.SetProperty(p, t.UTC().Format("20060102T150405Z"))
			return
		}
	}
	c.SetProperty(p, wall, ics.WithTZID(loc.String()))
}

// vtimezone describes loc's offsets in the year around at: one observance
// per transition (no RRULE, which Go's zone data does not give), or one
// STANDARD observance for a zone without transitions then.
func vtimezone(tzid string, loc *time.Location, at time.Time) *ics.VTimezone {
	tz := ics.NewTimezone(tzid)
	from, to := at.AddDate(-1, 0, 0), at.AddDate(1, 0, 0)
	_, before := from.In(loc).Zone()
	n := 0
	for t := from; t.Before(to); {
		next := t.Add(24 * time.Hour)
		if _, off := next.In(loc).Zone(); off != before {
			// Find the second the offset changes.
			lo, hi := t, next
			for hi.Sub(lo) > time.Second {
				mid := lo.Add(hi.Sub(lo) / 2)
				if _, o := mid.In(loc).Zone(); o == before {
					lo = mid
				} else {
					hi = mid
				}
			}
			addObservance(tz, loc, hi.Truncate(time.Second), before, off)
			before, n = off, n+1
		}
		t = next
	}
	if n == 0 {
		addObservance(tz, loc, time.Date(1970, 1, 1, 0, 0, 0, 0, loc), before, before)
	}
	return tz
}

// addObservance adds the observance starting at onset, when the offset
// goes from from to to (seconds east of UTC): DAYLIGHT when it moves
// forward, STANDARD otherwise. DTSTART is the local time before the change.
func addObservance(tz *ics.VTimezone, loc *time.Location, onset time.Time, from, to int) {
	name, _ := onset.In(loc).Zone()
	var c *ics.ComponentBase
	if to > from {
		d := &ics.Daylight{}
		tz.Components = append(tz.Components, d)
		c = &d.ComponentBase
	} else {
		s := tz.AddStandard()
		c = &s.ComponentBase
	}
	c.SetProperty(ics.ComponentPropertyDtStart, onset.In(time.FixedZone("", from)).Format(icsLocal))
	c.SetProperty(ics.ComponentProperty(ics.PropertyTzoffsetfrom), icsOffset(from))
	c.SetProperty(ics.ComponentProperty(ics.PropertyTzoffsetto), icsOffset(to))
	c.SetProperty(ics.ComponentProperty(ics.PropertyTzname), name)
}

// icsOffset formats seconds east of UTC as RFC 5545's UTC-OFFSET: +hhmm.
func icsOffset(sec int) string {
	sign := byte('+')
	if sec < 0 {
		sign, sec = '-', -sec
	}
	h, m := sec/3600, sec%3600/60
	return string([]byte{sign, byte('0' + h/10), byte('0' + h%10), byte('0' + m/10), byte('0' + m%10)})
}

package services_test

import (
	"slices"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

func zone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := services.LoadZone(name)
	if err != nil {
		t.Fatalf("LoadZone(%s) = %v", name, err)
	}
	return loc
}

// nightAndMorning opens every day 00:00-04:00 and 08:00-12:00 in 30-minute
// slots: the night period spans every 2026 change in Toronto and Paris.
func nightAndMorning(ivs ...services.Interval) services.ProviderSchedule {
	if ivs == nil {
		ivs = []services.Interval{{Start: "00:00", End: "04:00"}, {Start: "08:00", End: "12:00"}}
	}
	h := map[string][]services.Interval{}
	for _, d := range []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"} {
		h[d] = ivs
	}
	return services.ProviderSchedule{Provider: services.Provider{ID: "dr-lee", Name: "Dr Lee"}, SlotMinutes: 30, Hours: h}
}

// morning is 08:00 to 11:30 local every 30 minutes as UTC "HH:MM", starting at UTC hour h.
func morning(date string, h int) []string {
	var out []string
	for m := h * 60; m < (h+4)*60; m += 30 {
		out = append(out, date+"T"+time.Date(0, 1, 1, m/60, m%60, 0, 0, time.UTC).Format("15:04")+"Z")
	}
	return out
}

// TestProviderSchedule_Slots_DSTDays: on the 2026 change days in Toronto and
// Paris each slot starts at the exact instant the wall clock reads its time:
// none lost (the skipped hour has none, the rest of the night is there), none
// duplicated or shifted (the repeated hour has two, one per offset).
func TestProviderSchedule_Slots_DSTDays(t *testing.T) {
	type slot struct{ utc, local string } // local: "15:04 MST" in the clinic's zone
	tests := []struct {
		name, zone, date string
		hours            []services.Interval // nil: 00:00-04:00 and 08:00-12:00
		want             []slot
		morningUTC       int // UTC hour of 08:00 local, when the morning is in want
	}{
		{"Toronto spring forward", "America/Toronto", "2026-03-08", nil, []slot{
			{"2026-03-08T05:00Z", "00:00 EST"}, {"2026-03-08T05:30Z", "00:30 EST"},
			{"2026-03-08T06:00Z", "01:00 EST"}, {"2026-03-08T06:30Z", "01:30 EST"},
			{"2026-03-08T07:00Z", "03:00 EDT"}, {"2026-03-08T07:30Z", "03:30 EDT"}}, 12},
		{"Toronto fall back", "America/Toronto", "2026-11-01", nil, []slot{
			{"2026-11-01T04:00Z", "00:00 EDT"}, {"2026-11-01T04:30Z", "00:30 EDT"},
			{"2026-11-01T05:00Z", "01:00 EDT"}, {"2026-11-01T05:30Z", "01:30 EDT"},
			{"2026-11-01T06:00Z", "01:00 EST"}, {"2026-11-01T06:30Z", "01:30 EST"},
			{"2026-11-01T07:00Z", "02:00 EST"}, {"2026-11-01T07:30Z", "02:30 EST"},
			{"2026-11-01T08:00Z", "03:00 EST"}, {"2026-11-01T08:30Z", "03:30 EST"}}, 13},
		{"Paris spring forward", "Europe/Paris", "2026-03-29", nil, []slot{
			{"2026-03-28T23:00Z", "00:00 CET"}, {"2026-03-28T23:30Z", "00:30 CET"},
			{"2026-03-29T00:00Z", "01:00 CET"}, {"2026-03-29T00:30Z", "01:30 CET"},
			{"2026-03-29T01:00Z", "03:00 CEST"}, {"2026-03-29T01:30Z", "03:30 CEST"}}, 6},
		{"Paris fall back", "Europe/Paris", "2026-10-25", nil, []slot{
			{"2026-10-24T22:00Z", "00:00 CEST"}, {"2026-10-24T22:30Z", "00:30 CEST"},
			{"2026-10-24T23:00Z", "01:00 CEST"}, {"2026-10-24T23:30Z", "01:30 CEST"},
			{"2026-10-25T00:00Z", "02:00 CEST"}, {"2026-10-25T00:30Z", "02:30 CEST"},
			{"2026-10-25T01:00Z", "02:00 CET"}, {"2026-10-25T01:30Z", "02:30 CET"},
			{"2026-10-25T02:00Z", "03:00 CET"}, {"2026-10-25T02:30Z", "03:30 CET"}}, 7},

		// Periods that start or end inside the change. time.Date put the first
		// two an hour early (01:00 EST) and dropped the CEST half of the third.
		{"Toronto opens in the gap", "America/Toronto", "2026-03-08", []services.Interval{{Start: "02:00", End: "04:00"}},
			[]slot{{"2026-03-08T07:00Z", "03:00 EDT"}, {"2026-03-08T07:30Z", "03:30 EDT"}}, 0},
		{"Toronto opens in the gap at 02:30", "America/Toronto", "2026-03-08", []services.Interval{{Start: "02:30", End: "03:30"}},
			[]slot{{"2026-03-08T07:00Z", "03:00 EDT"}}, 0},
		{"Paris opens in the overlap", "Europe/Paris", "2026-10-25", []services.Interval{{Start: "02:00", End: "04:00"}}, []slot{
			{"2026-10-25T00:00Z", "02:00 CEST"}, {"2026-10-25T00:30Z", "02:30 CEST"},
			{"2026-10-25T01:00Z", "02:00 CET"}, {"2026-10-25T01:30Z", "02:30 CET"},
			{"2026-10-25T02:00Z", "03:00 CET"}, {"2026-10-25T02:30Z", "03:30 CET"}}, 0},
		{"Toronto closes in the gap", "America/Toronto", "2026-03-08", []services.Interval{{Start: "00:00", End: "02:30"}}, []slot{
			{"2026-03-08T05:00Z", "00:00 EST"}, {"2026-03-08T05:30Z", "00:30 EST"},
			{"2026-03-08T06:00Z", "01:00 EST"}, {"2026-03-08T06:30Z", "01:30 EST"}}, 0},
		{"Toronto closes in the overlap", "America/Toronto", "2026-11-01", []services.Interval{{Start: "00:00", End: "01:30"}}, []slot{
			{"2026-11-01T04:00Z", "00:00 EDT"}, {"2026-11-01T04:30Z", "00:30 EDT"},
			{"2026-11-01T05:00Z", "01:00 EDT"}, {"2026-11-01T06:00Z", "01:00 EST"}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc := zone(t, tt.zone)
			day, _ := time.Parse(time.DateOnly, tt.date)
			want := tt.want
			if tt.morningUTC != 0 {
				for _, u := range morning(tt.date, tt.morningUTC) {
					want = append(want, slot{u, ""})
				}
			}
			got := nightAndMorning(tt.hours...).Slots(day, day.AddDate(0, 0, 1), loc)
			if len(got) != len(want) {
				t.Fatalf("%d slots %v, want %d", len(got), slotIDs(got), len(want))
			}
			for i, s := range got {
				w, err := time.Parse("2006-01-02T15:04Z", want[i].utc)
				if err != nil {
					t.Fatal(err)
				}
				if !s.Start.Equal(w) || s.Start.Location() != time.UTC || !s.End.Equal(w.Add(30*time.Minute)) {
					t.Errorf("slot %d is %v-%v, want %v + 30m in UTC", i, s.Start, s.End, w)
				}
				if l := s.Start.In(loc).Format("15:04 MST"); want[i].local != "" && l != want[i].local {
					t.Errorf("slot %d starts %s local, want %s", i, l, want[i].local)
				}
				if d := services.Date(s.Start, loc); d != tt.date {
					t.Errorf("slot %d (%v) falls on %s, want %s", i, s.Start, d, tt.date)
				}
				checkSlotID(t, s)
			}
		})
	}
}

func checkSlotID(t *testing.T, s services.Slot) {
	t.Helper()
	p, start, err := services.ParseSlotID(s.ID)
	if err != nil || p != s.ProviderID || !start.Equal(s.Start) || s.ID != services.SlotID(p, start) {
		t.Errorf("slot ID %q parses to %q %v %v; want %q %v", s.ID, p, start, err, s.ProviderID, s.Start)
	}
}

// TestProviderSchedule_Slots_Year2026: over every day of 2026 in both zones,
// each slot's wall time is inside the opening hours on its own day, no two
// overlap, and only the two change days have other than 16 slots.
func TestProviderSchedule_Slots_Year2026(t *testing.T) {
	for _, tt := range []struct {
		zone    string
		changes map[string]int // date -> slots that day
	}{
		{"America/Toronto", map[string]int{"2026-03-08": 14, "2026-11-01": 18}},
		{"Europe/Paris", map[string]int{"2026-03-29": 14, "2026-10-25": 18}},
		{"Asia/Kolkata", nil},
		{"Australia/Lord_Howe", map[string]int{"2026-04-05": 17, "2026-10-04": 15}}, // half-hour changes at 02:00
	} {
		t.Run(tt.zone, func(t *testing.T) {
			loc := zone(t, tt.zone)
			from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			slots := nightAndMorning().Slots(from, from.AddDate(1, 0, 0), loc)
			perDay := map[string]int{}
			ids := map[string]bool{}
			for i, s := range slots {
				if i > 0 && s.Start.Before(slots[i-1].End) {
					t.Errorf("%s overlaps %s", s.ID, slots[i-1].ID)
				}
				if ids[s.ID] {
					t.Errorf("%s listed twice", s.ID)
				}
				ids[s.ID] = true
				perDay[services.Date(s.Start, loc)]++
				l := s.Start.In(loc)
				if m := l.Hour()*60 + l.Minute(); !(m < 4*60 || m >= 8*60 && m < 12*60) {
					t.Errorf("%s starts at %s local, outside the opening hours", s.ID, l.Format("15:04 MST"))
				}
				checkSlotID(t, s)
			}
			for d := from; d.Year() == 2026; d = d.AddDate(0, 0, 1) {
				date := d.Format(time.DateOnly)
				want, ok := tt.changes[date]
				if !ok {
					want = 16
				}
				if perDay[date] != want {
					t.Errorf("%s has %d slots, want %d", date, perDay[date], want)
				}
			}
			if slices.ContainsFunc(slots, func(s services.Slot) bool { return s.End.Sub(s.Start) != 30*time.Minute }) {
				t.Error("a slot is not 30 minutes long")
			}
		})
	}
}

package services_test

import (
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the DST tests must not depend on the host's zoneinfo

	"github.com/clinicrelay/clinicrelay/services"
)

func toronto(t *testing.T) *time.Location {
	t.Helper()
	loc, err := services.LoadZone("America/Toronto")
	if err != nil {
		t.Fatalf("LoadZone(America/Toronto) = %v", err)
	}
	return loc
}

func TestSlotID(t *testing.T) {
	loc := toronto(t)
	tests := []struct {
		provider string
		start    time.Time
		want     string
	}{
		{"dr-lee", time.Date(2026, 1, 2, 9, 30, 0, 0, time.UTC), "dr-lee_20260102T0930Z"},
		{"p", time.Date(2026, 1, 2, 9, 30, 0, 0, loc), "p_20260102T1430Z"},
		{"p", time.Date(2026, 7, 2, 9, 30, 0, 0, loc), "p_20260702T1330Z"},
		{"a1", time.Date(2026, 12, 31, 23, 45, 0, 0, loc), "a1_20270101T0445Z"},
		{strings.Repeat("p", 40), time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC), strings.Repeat("p", 40) + "_20260228T0000Z"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			id := services.SlotID(tt.provider, tt.start)
			if id != tt.want {
				t.Fatalf("SlotID(%q, %v) = %q, want %q", tt.provider, tt.start, id, tt.want)
			}
			provider, start, err := services.ParseSlotID(id)
			if err != nil {
				t.Fatalf("ParseSlotID(%q) = %v", id, err)
			}
			if provider != tt.provider || !start.Equal(tt.start) || start.Location() != time.UTC {
				t.Errorf("ParseSlotID(%q) = %q, %v; want %q, %v in UTC", id, provider, start, tt.provider, tt.start.UTC())
			}
		})
	}
}

func TestParseSlotID_ErrInvalid(t *testing.T) {
	for _, id := range []string{
		"",
		"dr-lee",
		"dr-lee_",
		"_20260102T0930Z",
		"Dr-Lee_20260102T0930Z",
		"dr.lee_20260102T0930Z",
		"dr-lee_20260102T0930",
		"dr-lee_2026-01-02T09:30Z",
		"dr-lee_20261302T0930Z", // month 13
		"dr-lee_20260230T0930Z", // February 30
		"dr-lee_20260102T2430Z", // hour 24
		"dr-lee_20260102T0960Z", // minute 60
	} {
		t.Run(id, func(t *testing.T) {
			p, start, err := services.ParseSlotID(id)
			if got := services.ErrorCode(err); err == nil || got != services.EInvalid {
				t.Errorf("ParseSlotID(%q) = %q, %v, %v; want code %q", id, p, start, err, services.EInvalid)
			}
		})
	}
}

func validSchedule() services.ProviderSchedule {
	return services.ProviderSchedule{
		Provider:    services.Provider{ID: "dr-lee", Name: "Dr Lee"},
		SlotMinutes: 30,
		Hours: map[string][]services.Interval{
			"mon": {{Start: "09:00", End: "12:00"}, {Start: "13:00", End: "17:00"}},
			"sun": {{Start: "00:00", End: "23:59"}},
		},
		Closures: []string{"2026-12-25"},
	}
}

func TestProviderSchedule_Validate(t *testing.T) {
	hours := func(day string, ivs ...services.Interval) func(p *services.ProviderSchedule) {
		return func(p *services.ProviderSchedule) { p.Hours = map[string][]services.Interval{day: ivs} }
	}
	iv := func(s, e string) services.Interval { return services.Interval{Start: s, End: e} }
	tests := []struct {
		name      string
		edit      func(p *services.ProviderSchedule)
		wantField string // without prefix; "" when the schedule must be valid
	}{
		{"OK", func(p *services.ProviderSchedule) {}, ""},
		{"OK no hours", func(p *services.ProviderSchedule) { p.Hours, p.Closures = nil, nil }, ""},

		{"id/OK one character", func(p *services.ProviderSchedule) { p.ID = "a" }, ""},
		{"id/ErrEmpty", func(p *services.ProviderSchedule) { p.ID = "" }, "id"},
		{"id/ErrUpper", func(p *services.ProviderSchedule) { p.ID = "Dr-Lee" }, "id"},
		{"id/ErrDot", func(p *services.ProviderSchedule) { p.ID = "dr.lee" }, "id"},
		{"id/ErrUnderscore", func(p *services.ProviderSchedule) { p.ID = "dr_lee" }, "id"},
		{"id/ErrLeadingDash", func(p *services.ProviderSchedule) { p.ID = "-lee" }, "id"},
		{"id/Err41", func(p *services.ProviderSchedule) { p.ID = strings.Repeat("a", 41) }, "id"},

		{"name/ErrEmpty", func(p *services.ProviderSchedule) { p.Name = "" }, "name"},
		{"name/ErrBlank", func(p *services.ProviderSchedule) { p.Name = "   " }, "name"},
		{"name/Err121", func(p *services.ProviderSchedule) { p.Name = strings.Repeat("a", 121) }, "name"},
		{"name/OK 120 accented", func(p *services.ProviderSchedule) { p.Name = strings.Repeat("é", 120) }, ""},
		{"name/ErrCRLF", func(p *services.ProviderSchedule) { p.Name = "Dr Lee\r\nDr Forged" }, "name"},
		{"name/ErrESC", func(p *services.ProviderSchedule) { p.Name = "Dr \x1b[31mLee" }, "name"},
		{"name/ErrBidi", func(p *services.ProviderSchedule) { p.Name = "Dr \u202eeeL" }, "name"},
		{"name/ErrZeroWidthOnly", func(p *services.ProviderSchedule) { p.Name = "\u200b" }, "name"},

		{"slot_minutes/OK 5", func(p *services.ProviderSchedule) { p.SlotMinutes = 5 }, ""},
		{"slot_minutes/OK 480", func(p *services.ProviderSchedule) { p.SlotMinutes = 480 }, ""},
		{"slot_minutes/Err0", func(p *services.ProviderSchedule) { p.SlotMinutes = 0 }, "slot_minutes"},
		{"slot_minutes/Err4", func(p *services.ProviderSchedule) { p.SlotMinutes = 4 }, "slot_minutes"},
		{"slot_minutes/Err481", func(p *services.ProviderSchedule) { p.SlotMinutes = 481 }, "slot_minutes"},

		{"hours/ErrDayName", hours("monday", iv("09:00", "10:00")), "hours"},
		{"hours/ErrDayUpper", hours("Mon", iv("09:00", "10:00")), "hours"},
		{"hours/ErrEndBeforeStart", hours("tue", iv("17:00", "09:00")), "hours.tue"},
		{"hours/ErrEmptyPeriod", hours("tue", iv("09:00", "09:00")), "hours.tue"},
		{"hours/ErrOneDigitHour", hours("tue", iv("9:00", "10:00")), "hours.tue"},
		{"hours/ErrHour24", hours("tue", iv("09:00", "24:00")), "hours.tue"},
		{"hours/ErrMinute60", hours("tue", iv("09:60", "10:00")), "hours.tue"},
		{"hours/ErrEmpty", hours("tue", iv("", "10:00")), "hours.tue"},
		{"hours/ErrTrailingGarbage", hours("tue", iv("09:5x", "10:00")), "hours.tue"},
		{"hours/ErrSign", hours("tue", iv("+9:30", "10:00")), "hours.tue"},

		{"closures/ErrMonth13", func(p *services.ProviderSchedule) { p.Closures = []string{"2026-13-01"} }, "closures"},
		{"closures/ErrSlashes", func(p *services.ProviderSchedule) { p.Closures = []string{"25/12/2026"} }, "closures"},
		{"closures/ErrEmpty", func(p *services.ProviderSchedule) { p.Closures = []string{"2026-12-25", ""} }, "closures"},
	}
	for _, prefix := range []string{"", "providers.2."} {
		for _, tt := range tests {
			t.Run(prefix+tt.name, func(t *testing.T) {
				p := validSchedule()
				tt.edit(&p)
				err := p.Validate(prefix)
				if tt.wantField == "" {
					if err != nil {
						t.Fatalf("Validate(%q) = %v, want nil", prefix, err)
					}
					return
				}
				if got, want := fieldNames(t, err), []string{prefix + tt.wantField}; !slices.Equal(got, want) {
					t.Errorf("Validate(%q) fields = %v, want %v", prefix, got, want)
				}
			})
		}
	}
}

// everyDay opens p from start to end on all seven days.
func everyDay(start, end string) map[string][]services.Interval {
	h := map[string][]services.Interval{}
	for _, d := range []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"} {
		h[d] = []services.Interval{{Start: start, End: end}}
	}
	return h
}

// TestProviderSchedule_Slots_DST checks that 09:00 local stays 09:00 local
// across both 2026 changes in Toronto, so the UTC start moves by one hour.
func TestProviderSchedule_Slots_DST(t *testing.T) {
	loc := toronto(t)
	p := services.ProviderSchedule{Provider: services.Provider{ID: "dr-lee", Name: "Dr Lee"},
		SlotMinutes: 60, Hours: everyDay("09:00", "10:00")}
	tests := []struct {
		name  string
		from  time.Time // local midnight; seven days are listed
		utc   []int     // want UTC hour of each day's 09:00 slot
		local int       // want local hour
	}{
		{"spring forward 2026-03-08", time.Date(2026, 3, 5, 0, 0, 0, 0, loc), []int{14, 14, 14, 13, 13, 13, 13}, 9},
		{"fall back 2026-11-01", time.Date(2026, 10, 29, 0, 0, 0, 0, loc), []int{13, 13, 13, 14, 14, 14, 14}, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Slots(tt.from, tt.from.AddDate(0, 0, 7), loc)
			if len(got) != len(tt.utc) {
				t.Fatalf("Slots() = %d slots %v, want %d", len(got), slotIDs(got), len(tt.utc))
			}
			for i, s := range got {
				day := tt.from.AddDate(0, 0, i)
				want := time.Date(day.Year(), day.Month(), day.Day(), tt.utc[i], 0, 0, 0, time.UTC)
				if !s.Start.Equal(want) || s.Start.Location() != time.UTC {
					t.Errorf("slot %d starts %v, want %v", i, s.Start, want)
				}
				if l := s.Start.In(loc); l.Hour() != tt.local || l.Minute() != 0 || l.Day() != day.Day() {
					t.Errorf("slot %d starts %v local, want %s %02d:00", i, l, day.Format(time.DateOnly), tt.local)
				}
				if wantEnd := want.Add(time.Hour); !s.End.Equal(wantEnd) {
					t.Errorf("slot %d ends %v, want %v", i, s.End, wantEnd)
				}
				if wantID := services.SlotID("dr-lee", want); s.ID != wantID || s.ProviderID != "dr-lee" {
					t.Errorf("slot %d is %q of %q, want %q of dr-lee", i, s.ID, s.ProviderID, wantID)
				}
			}
		})
	}
}

func slotIDs(slots []services.Slot) []string {
	ids := make([]string, len(slots))
	for i, s := range slots {
		ids[i] = s.ID
	}
	return ids
}

func TestProviderSchedule_Slots(t *testing.T) {
	loc := toronto(t)
	mon := time.Date(2026, 6, 1, 0, 0, 0, 0, loc) // a Monday, EDT (UTC-4)
	tests := []struct {
		name     string
		p        services.ProviderSchedule
		from, to time.Time
		want     []string
	}{
		{
			name: "exact fit",
			p:    services.ProviderSchedule{Provider: services.Provider{ID: "p"}, SlotMinutes: 30, Hours: everyDay("09:00", "10:00")},
			from: mon, to: mon.AddDate(0, 0, 1),
			want: []string{"p_20260601T1300Z", "p_20260601T1330Z"},
		},
		{
			name: "no slot overruns the end",
			p:    services.ProviderSchedule{Provider: services.Provider{ID: "p"}, SlotMinutes: 30, Hours: everyDay("09:00", "10:45")},
			from: mon, to: mon.AddDate(0, 0, 1),
			want: []string{"p_20260601T1300Z", "p_20260601T1330Z", "p_20260601T1400Z"},
		},
		{
			name: "period shorter than a slot",
			p:    services.ProviderSchedule{Provider: services.Provider{ID: "p"}, SlotMinutes: 60, Hours: everyDay("09:00", "09:59")},
			from: mon, to: mon.AddDate(0, 0, 1),
		},
		{
			name: "two periods and closed days",
			p: services.ProviderSchedule{Provider: services.Provider{ID: "p"}, SlotMinutes: 60, Hours: map[string][]services.Interval{
				"mon": {{Start: "09:00", End: "10:00"}, {Start: "13:00", End: "14:00"}},
				"wed": {{Start: "08:00", End: "09:00"}},
			}},
			from: mon, to: mon.AddDate(0, 0, 7),
			want: []string{"p_20260601T1300Z", "p_20260601T1700Z", "p_20260603T1200Z"},
		},
		{
			name: "closures",
			p: services.ProviderSchedule{Provider: services.Provider{ID: "p"}, SlotMinutes: 60, Hours: everyDay("09:00", "10:00"),
				Closures: []string{"2026-06-02", "2026-06-04", "2026-07-01"}},
			from: mon, to: mon.AddDate(0, 0, 5),
			want: []string{"p_20260601T1300Z", "p_20260603T1300Z", "p_20260605T1300Z"},
		},
		{
			name: "to is excluded",
			p:    services.ProviderSchedule{Provider: services.Provider{ID: "p"}, SlotMinutes: 60, Hours: everyDay("09:00", "10:00")},
			from: mon, to: mon,
		},
		{
			name: "zero slot length",
			p:    services.ProviderSchedule{Provider: services.Provider{ID: "p"}, Hours: everyDay("09:00", "10:00")},
			from: mon, to: mon.AddDate(0, 0, 1),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slots := tt.p.Slots(tt.from, tt.to, loc)
			if got := slotIDs(slots); !slices.Equal(got, tt.want) {
				t.Errorf("Slots() = %v, want %v", got, tt.want)
			}
			for _, s := range slots {
				if got, want := s.End.Sub(s.Start), time.Duration(tt.p.SlotMinutes)*time.Minute; got != want {
					t.Errorf("slot %s lasts %v, want %v", s.ID, got, want)
				}
			}
		})
	}
}

func TestClinic_Validate(t *testing.T) {
	valid := services.Clinic{ID: "maple", Name: "Maple Street Physio", TimeZone: "America/Toronto"}
	tests := []struct {
		name      string
		edit      func(c *services.Clinic)
		wantField string
	}{
		{"OK", func(c *services.Clinic) {}, ""},
		{"OK UTC", func(c *services.Clinic) { c.TimeZone = "UTC" }, ""},
		{"slug/ErrEmpty", func(c *services.Clinic) { c.ID = "" }, "slug"},
		{"slug/ErrOneLetter", func(c *services.Clinic) { c.ID = "m" }, "slug"},
		{"slug/ErrDot", func(c *services.Clinic) { c.ID = "ma.ple" }, "slug"},
		{"slug/ErrStar", func(c *services.Clinic) { c.ID = "*" }, "slug"},
		{"slug/ErrGT", func(c *services.Clinic) { c.ID = "ma>" }, "slug"},
		{"slug/ErrUpper", func(c *services.Clinic) { c.ID = "Maple" }, "slug"},
		{"name/ErrEmpty", func(c *services.Clinic) { c.Name = "  " }, "name"},
		{"name/Err121", func(c *services.Clinic) { c.Name = strings.Repeat("a", 121) }, "name"},
		{"name/ErrCR", func(c *services.Clinic) { c.Name = "Maple\rClinic" }, "name"},
		{"name/ErrBEL", func(c *services.Clinic) { c.Name = "Maple\x07" }, "name"},
		{"timezone/ErrEmpty", func(c *services.Clinic) { c.TimeZone = "" }, "timezone"},
		{"timezone/ErrLocal", func(c *services.Clinic) { c.TimeZone = "Local" }, "timezone"},
		{"timezone/ErrUnknown", func(c *services.Clinic) { c.TimeZone = "Mars/Olympus_Mons" }, "timezone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.edit(&c)
			checkField(t, c.Validate(), tt.wantField)
		})
	}
}

func TestLoadZone(t *testing.T) {
	tests := []struct {
		name    string
		wantErr bool
	}{
		{"America/Toronto", false},
		{"UTC", false},
		{"", true},
		{"Local", true},
		{"local", true},
		{"Mars/Olympus_Mons", true},
		{"../../etc/passwd", true},
		{"/etc/localtime", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc, err := services.LoadZone(tt.name)
			if !tt.wantErr {
				if err != nil || loc == nil || loc.String() != tt.name {
					t.Fatalf("LoadZone(%q) = %v, %v; want that zone", tt.name, loc, err)
				}
				return
			}
			if got := services.ErrorCode(err); err == nil || got != services.EInvalid {
				t.Errorf("LoadZone(%q) = %v, %v; want code %q", tt.name, loc, err, services.EInvalid)
			}
			if loc != nil {
				t.Errorf("LoadZone(%q) returned a zone %v with its error", tt.name, loc)
			}
		})
	}
}

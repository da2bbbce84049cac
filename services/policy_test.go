package services

import (
	"strings"
	"testing"
	"time"
)

func TestBookingPolicy_Bookable(t *testing.T) {
	now := time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC)
	p := BookingPolicy{NoticeMinutes: 120, HorizonDays: 30}
	for _, tt := range []struct {
		in   time.Duration
		want string // "" bookable, else the field message's key
	}{
		{119 * time.Minute, "field.slot_id.notice"},
		{120 * time.Minute, ""},
		{30 * 24 * time.Hour, ""},
		{30*24*time.Hour + time.Minute, "field.slot_id.horizon"},
	} {
		err := p.Bookable(now, now.Add(tt.in))
		var got string
		if e, ok := err.(*Error); ok {
			got = e.FieldKeys["slot_id"]
		}
		if got != tt.want || (tt.want != "") != (err != nil) {
			t.Errorf("%v ahead: %v (%q), want %q", tt.in, err, got, tt.want)
		}
	}
	if err := p.Bookable(now, now.Add(time.Hour)); !strings.Contains(err.Error(), "at least 2 hours ahead") {
		t.Errorf("the reason: %v", err)
	}
	if (BookingPolicy{}).Bookable(now, now.Add(time.Minute)) != nil {
		t.Error("the zero policy refuses a time a minute away")
	}
}

func TestBookingPolicy_Changeable(t *testing.T) {
	now := time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC)
	p := BookingPolicy{CutoffHours: 24, GraceMinutes: 15}
	booked := func(in, bookedAgo time.Duration) Status {
		return Status{State: StateBooked, SlotID: SlotID("dr-lee", now.Add(in)), UpdatedAt: now.Add(-bookedAgo)}
	}
	for _, tt := range []struct {
		name string
		st   Status
		ok   bool
	}{
		{"booked, a day and more away", booked(25*time.Hour, time.Hour), true},
		{"booked, within the cutoff", booked(23*time.Hour, time.Hour), false},
		{"booked within the cutoff, minutes ago", booked(2*time.Hour, 10*time.Minute), true},
		{"booked within the cutoff, the grace over", booked(2*time.Hour, 16*time.Minute), false},
		{"not yet booked, within the cutoff", Status{State: StateDelivered, SlotID: SlotID("dr-lee", now.Add(time.Hour))}, true},
	} {
		err := p.Changeable(tt.st, now)
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v, want allowed %v", tt.name, err, tt.ok)
		}
		if err != nil && (ErrorCode(err) != EInvalid || !strings.Contains(err.Error(), "less than 1 day away")) {
			t.Errorf("%s: %v, want invalid with the cutoff", tt.name, err)
		}
	}
}

func TestBookingPolicy_Validate(t *testing.T) {
	err := BookingPolicy{NoticeMinutes: -1, HorizonDays: DaysAhead + 1, CutoffHours: 1, GraceMinutes: 2000}.Validate("policy.")
	e, ok := err.(*Error)
	if !ok || e.Fields["policy.notice_minutes"] == "" || e.Fields["policy.horizon_days"] == "" || e.Fields["policy.grace_minutes"] == "" ||
		e.Fields["policy.cutoff_hours"] != "" {
		t.Fatalf("%v, want notice, horizon and grace named, not cutoff", err)
	}
	if err := (BookingPolicy{NoticeMinutes: 120, HorizonDays: 30, CutoffHours: 24, GraceMinutes: 15}).Validate(""); err != nil {
		t.Fatal(err)
	}
}

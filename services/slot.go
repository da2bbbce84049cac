package services

import (
	"fmt"
	"strings"
	"time"

	"github.com/clinicrelay/clinicrelay/subjects"
)

const slotTimeLayout = "20060102T1504Z"

// Slot is one bookable period of one provider.
type Slot struct {
	ID         string    `json:"id"`
	ProviderID string    `json:"provider_id"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
}

// SlotID is "<provider>_<YYYYMMDD>T<HHMM>Z", the start in UTC.
func SlotID(provider string, start time.Time) string {
	return provider + "_" + start.UTC().Format(slotTimeLayout)
}

// ParseSlotID splits a slot ID into provider and start.
func ParseSlotID(id string) (provider string, start time.Time, err error) {
	if err := subjects.ValidSlotID(id); err != nil {
		return "", time.Time{}, Errorf(EInvalid, "%s", err)
	}
	provider, ts, _ := strings.Cut(id, "_")
	start, err = time.Parse(slotTimeLayout, ts)
	if err != nil {
		return "", time.Time{}, Errorf(EInvalid, "slot id %q has no valid time", id)
	}
	return provider, start, nil
}

// Day is one clinic's free slots on one local date: the AVAILABILITY value.
type Day struct {
	Clinic string `json:"clinic"`
	Date   string `json:"date"` // YYYY-MM-DD in the clinic's zone
	Slots  []Slot `json:"slots"`
}

// DaysAhead is the booking window: how many days ahead, from today in the
// clinic's zone, an agent publishes free slots and patients can book. The
// relay keeps no availability beyond it.
const DaysAhead = 60

// Date formats t as the YYYY-MM-DD it falls on in loc.
func Date(t time.Time, loc *time.Location) string { return t.In(loc).Format(time.DateOnly) }

// ParseDate parses YYYY-MM-DD and names field in the error.
func ParseDate(field, s string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, &Error{Code: EInvalid, Key: "error.bad_date", Message: fmt.Sprintf("%s must be a date YYYY-MM-DD", field),
			Fields: map[string]string{field: "must be a date YYYY-MM-DD"}}
	}
	return t, nil
}

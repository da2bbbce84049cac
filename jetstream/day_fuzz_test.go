package jetstream

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// FuzzDecodeDay feeds the catalog's AVAILABILITY decoder any key and value:
// it never panics, and a day it accepts is one the web may serve: the key's
// clinic and date, and slots whose IDs are well-formed, name their own
// provider and start, and start on that date in some time zone.
func FuzzDecodeDay(f *testing.F) {
	good, _ := json.Marshal(testDay())
	f.Add("maple.2026-03-02", good)
	f.Add("maple.2026-03-02", []byte(`{"clinic":"maple","date":"2026-03-02","slots":[]}`))
	f.Add("maple.2026-03-03", good)
	f.Add("maple.2026-03-02", []byte(`{"clinic":"maple","date":"2026-03-02","slots":[{"id":"dr-lee_20260302T1430Z",`+
		`"provider_id":"dr-lee","start":"2026-03-02T09:30:00-05:00"}]}`))
	f.Add("maple.2026-03-02", []byte(`{"clinic":"maple","date":"2026-03-02","slots":{"id":1}}`))
	f.Add("maple.2026-02-30", []byte(`{"clinic":"maple","date":"2026-02-30"}`))
	f.Add("maple", []byte(`null`))
	f.Add("maple.2026-03-02", []byte("{\"clinic\":\"maple\xff\"}"))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		d, err := DecodeDay(key, value)
		if err != nil {
			return
		}
		if subjects.ValidClinicID(d.Clinic) != nil || subjects.AvailabilityKey(d.Clinic, d.Date) != key {
			t.Fatalf("key %q accepted a day of %q on %q", key, d.Clinic, d.Date)
		}
		date, err := time.Parse(time.DateOnly, d.Date)
		if err != nil {
			t.Fatalf("key %q accepted date %q: %v", key, d.Date, err)
		}
		for _, s := range d.Slots {
			p, start, err := services.ParseSlotID(s.ID)
			if err != nil || p != s.ProviderID || !start.Equal(s.Start) || services.SlotID(p, start) != s.ID {
				t.Fatalf("slot %+v: id does not match provider and start (%v)", s, err)
			}
			// The date in zones from UTC-12 (its latest) to UTC+14 (its earliest).
			if a, b := services.Date(start, time.FixedZone("", 14*3600)), services.Date(start, time.FixedZone("", -12*3600)); a < d.Date || b > d.Date {
				t.Fatalf("slot %s starts on %s..%s, outside %s", s.ID, b, a, date.Format(time.DateOnly))
			}
			if !s.End.IsZero() && !s.End.After(s.Start) {
				t.Fatalf("slot %s ends at %s, before its start", s.ID, s.End)
			}
		}
	})
}

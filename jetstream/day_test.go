package jetstream

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

// testDay is maple's 2026-03-02 in Toronto (UTC-5): one slot at 09:30 local.
func testDay() services.Day {
	start := time.Date(2026, 3, 2, 14, 30, 0, 0, time.UTC)
	return services.Day{Clinic: "maple", Date: "2026-03-02", Slots: []services.Slot{
		{ID: services.SlotID("dr-lee", start), ProviderID: "dr-lee", Start: start, End: start.Add(30 * time.Minute)}}}
}

// at adds a slot of dr-lee starting at the given UTC time.
func at(y int, m time.Month, d, h, min int) func(*services.Day) {
	return func(day *services.Day) {
		start := time.Date(y, m, d, h, min, 0, 0, time.UTC)
		day.Slots = append(day.Slots, services.Slot{ID: services.SlotID("dr-lee", start), ProviderID: "dr-lee", Start: start})
	}
}

func TestDecodeDay(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		edit    func(d *services.Day)
		wantErr string
	}{
		{"OK", "maple.2026-03-02", func(*services.Day) {}, ""},
		{"OKNoSlots", "maple.2026-03-02", func(d *services.Day) { d.Slots = nil }, ""},
		{"OKNoEnd", "maple.2026-03-02", func(d *services.Day) { d.Slots[0].End = time.Time{} }, ""},
		{"ErrKeyNoDate", "maple", func(*services.Day) {}, "not <clinic>.<date>"},
		{"ErrKeyDeeper", "maple.2026-03-02.x", func(*services.Day) {}, "not <clinic>.<date>"},
		{"ErrKeyClinic", "Maple.2026-03-02", func(d *services.Day) { d.Clinic = "Maple" }, "not <clinic>.<date>"},
		{"ErrOtherClinic", "maple.2026-03-02", func(d *services.Day) { d.Clinic = "oak" }, "stored under"},
		{"ErrOtherDate", "maple.2026-03-02", func(d *services.Day) { d.Date = "2026-03-03" }, "stored under"},
		{"ErrSlotID", "maple.2026-03-02", func(d *services.Day) { d.Slots[0].ID = "dr.lee_20260302T1430Z" }, "not a slot id"},
		{"ErrProvider", "maple.2026-03-02", func(d *services.Day) { d.Slots[0].ProviderID = "dr-kim" }, "differs from the id"},
		{"ErrStart", "maple.2026-03-02", func(d *services.Day) { d.Slots[0].Start = d.Slots[0].Start.Add(time.Hour) }, "differs from the id"},
		{"ErrEnd", "maple.2026-03-02", func(d *services.Day) { d.Slots[0].End = d.Slots[0].Start }, "ends before"},
		{"OKEarliestZone", "maple.2026-03-02", at(2026, 3, 1, 10, 0), ""}, // 00:00 at UTC+14
		{"ErrBeforeEarliestZone", "maple.2026-03-02", at(2026, 3, 1, 9, 59), "does not start on 2026-03-02"},
		{"OKLatestZone", "maple.2026-03-02", at(2026, 3, 3, 11, 59), ""}, // 23:59 at UTC-12
		{"ErrAfterLatestZone", "maple.2026-03-02", at(2026, 3, 3, 12, 0), "does not start on 2026-03-02"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDay()
			tt.edit(&d)
			b, _ := json.Marshal(d)
			got, err := DecodeDay(tt.key, b)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("decodeDay = %v, want no error", err)
			case tt.wantErr == "" && len(got.Slots) != len(d.Slots):
				t.Fatalf("decodeDay kept %d slots, want %d", len(got.Slots), len(d.Slots))
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("decodeDay = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
	if _, err := DecodeDay("maple.2026-03-02", []byte(`{"clinic":"maple","date":"2026-03-02","slots":{}}`)); err == nil {
		t.Fatal("decodeDay took slots of the wrong type")
	}
}

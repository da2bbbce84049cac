package services

import (
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/subjects"
)

// FuzzParseSlotID: no panic; a refused ID is EInvalid (a 4xx, never a 5xx);
// an accepted one is a safe subject token that SlotID rebuilds exactly.
func FuzzParseSlotID(f *testing.F) {
	for _, s := range []string{"dr-lee_20260302T1430Z", SlotID("a", time.Date(2026, 12, 31, 23, 59, 0, 0, time.UTC)),
		"dr-lee_20260230T1430Z", "dr-lee_20260302T2460Z", "dr-lee_00000101T0000Z", "dr.lee_20260302T1430Z",
		"dr-lee_20260302T1430Z\n", "_20260302T1430Z", "dr-lee_２0260302T1430Z", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		provider, start, err := ParseSlotID(id)
		if err != nil {
			if ErrorCode(err) != EInvalid {
				t.Fatalf("ParseSlotID(%q) = %v, want an EInvalid error", id, err)
			}
			return
		}
		if subjects.ValidSlotID(id) != nil || subjects.ValidProviderID(provider) != nil || !safeToken(id) {
			t.Fatalf("ParseSlotID(%q) accepted an unsafe ID or provider %q", id, provider)
		}
		if start.Location() != time.UTC || start.Second() != 0 || start.Nanosecond() != 0 {
			t.Fatalf("ParseSlotID(%q) start = %v, want whole minutes in UTC", id, start)
		}
		if got := SlotID(provider, start); got != id {
			t.Fatalf("SlotID(ParseSlotID(%q)) = %q", id, got)
		}
	})
}

// safeToken reports whether s is one NATS subject token of printable ASCII:
// no '.', '*', '>', space, control or non-ASCII byte.
func safeToken(s string) bool {
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' {
			return false
		}
	}
	return s != ""
}

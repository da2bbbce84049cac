package services

import (
	"strings"
	"testing"

	"github.com/clinicrelay/clinicrelay/subjects"
)

// FuzzParseStatusToken: no panic; a refused token is ENotFound (a 404, never
// a 5xx); an accepted one splits into a clinic ID and request ID that are
// safe subject tokens, and StatusToken and RequestIDFor rebuild it.
func FuzzParseStatusToken(f *testing.F) {
	for _, s := range []string{StatusToken("maple", "0123456789abcdef0123456789abcdef"), StatusToken("oak-2", NewToken()),
		"maple_0123456789ABCDEF0123456789ABCDEF", "maple_0123456789abcdef0123456789abcde", "maple0123456789abcdef0123456789abcdef",
		"_0123456789abcdef0123456789abcdef", "maple_0123456789abcdef0123456789abcdef_", "ma.ple_0123456789abcdef0123456789abcdef",
		"maple_0123456789abcdef0123456789abcdef\n", "", "_", "m\xff_x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		clinic, id, err := ParseStatusToken(s)
		if err != nil {
			if ErrorCode(err) != ENotFound || clinic != "" || id != "" {
				t.Fatalf("ParseStatusToken(%q) = %q, %q, %v; want only an ENotFound error", s, clinic, id, err)
			}
			return
		}
		if subjects.ValidClinicID(clinic) != nil || subjects.ValidRequestID(id) != nil || !safeToken(clinic) || !safeToken(id) {
			t.Fatalf("ParseStatusToken(%q) = %q, %q: not safe subject tokens", s, clinic, id)
		}
		token, ok := strings.CutPrefix(s, clinic+"_")
		if !ok || StatusToken(clinic, token) != s || subjects.ValidRequestID(token) != nil {
			t.Fatalf("ParseStatusToken(%q): clinic %q and a 32-hex token do not rebuild it", s, clinic)
		}
		if RequestIDFor(token) != id || token == id {
			t.Fatalf("ParseStatusToken(%q) id %q, want RequestIDFor(token), not the token", s, id)
		}
	})
}

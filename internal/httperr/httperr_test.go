package httperr

import (
	"net/http"
	"testing"

	"github.com/clinicrelay/clinicrelay/services"
)

// TestStatus: every code a user's input can cause is a 4xx (or a 503 to try
// again), never a 500; an internal or unknown code is a 500 whose message
// is not shown.
func TestStatus(t *testing.T) {
	for _, code := range []string{services.EInvalid, services.ENotFound, services.EConflict, services.ELimit,
		services.ETooLarge, services.EForbidden, services.ECodeNeeded, services.EUnauthorized, services.ETooManyTries} {
		if s, ok := Status(code); s < 400 || s >= 500 || !ok {
			t.Errorf("%s: %d %v, want a 4xx with its message", code, s, ok)
		}
	}
	if s, _ := Status(services.EUnauthorized); s != http.StatusUnauthorized {
		t.Errorf("unauthorized: %d, want 401", s)
	}
	if s, _ := Status(services.ETooManyTries); s != http.StatusTooManyRequests {
		t.Errorf("too many tries: %d, want 429", s)
	}
	if s, ok := Status(services.EUnavailable); s != http.StatusServiceUnavailable || !ok {
		t.Errorf("unavailable: %d %v", s, ok)
	}
	for _, code := range []string{services.EInternal, "no such code"} {
		if s, ok := Status(code); s != http.StatusInternalServerError || ok {
			t.Errorf("%q: %d %v, want 500 without its message", code, s, ok)
		}
	}
}

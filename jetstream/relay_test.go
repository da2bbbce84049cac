package jetstream_test

import (
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/internal/natstest"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/services"
)

// TestRequests_Hold: a slot is held once. A second hold for the same request
// (a reschedule sent twice) is refused too: only the call that wrote a hold
// counts it as its own, so the loser's release cannot free the winner's.
func TestRequests_Hold(t *testing.T) {
	js := natstest.RunJetStream(t)
	if err := cjs.Provision(t.Context(), js, cjs.Options{}); err != nil {
		t.Fatal(err)
	}
	r := cjs.NewRequests(js)
	const slot, id = "dr-lee_20300101T1400Z", "0123456789abcdef0123456789abcdef"
	if _, err := r.Hold(t.Context(), "maple", slot, id, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{id, "fedcba9876543210fedcba9876543210"} {
		if _, err := r.Hold(t.Context(), "maple", slot, who, time.Minute); services.ErrorCode(err) != services.EConflict {
			t.Errorf("a second hold by %s: %v, want EConflict", who, err)
		}
	}
	if err := r.Release(t.Context(), "maple", slot, "fedcba9876543210fedcba9876543210"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Hold(t.Context(), "maple", slot, "fedcba9876543210fedcba9876543210", time.Minute); services.ErrorCode(err) != services.EConflict {
		t.Errorf("another request's release freed the hold: %v", err)
	}
}

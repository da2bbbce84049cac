package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/relay"
)

// TestReady_JetStreamCannotWrite: /readyz says 503 while JetStream takes no
// writes (here its probe stream refuses new messages, as a full store
// would), 200 again once it does, with no restart; /healthz, the liveness
// check, stays 200.
func TestReady_JetStreamCannotWrite(t *testing.T) {
	r := startRelay(t, relay.Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:0", ProbeEvery: 100 * time.Millisecond})
	get := func(path string) (int, string) {
		resp, err := http.Get(r.HTTPURL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	want := func(code int, body string) func() error {
		return func() error {
			if c, b := get("/readyz"); c != code || !strings.Contains(b, body) {
				return fmt.Errorf("/readyz: %d %q, want %d %q", c, b, code, body)
			}
			return nil
		}
	}
	poll.For(t, 5*time.Second, want(200, "ready"))

	// JetStream refuses new messages, as a full store does.
	admin, err := r.Admin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	full := cjs.HealthStream(cjs.Options{})
	full.Discard, full.DiscardNewPerSubject = jetstream.DiscardNew, true
	if _, err := admin.JS.UpdateStream(t.Context(), full); err != nil {
		t.Fatal(err)
	}
	poll.For(t, 5*time.Second, want(503, "not ready: JetStream cannot write"))
	if c, _ := get("/healthz"); c != 200 {
		t.Errorf("/healthz: %d while JetStream is off; it says only that the process answers", c)
	}
	if !strings.Contains(logged(t), `level=ERROR msg="JetStream does not take writes: bookings fail until it does"`) {
		t.Error("the relay did not log that JetStream stopped taking writes")
	}

	if _, err := admin.JS.UpdateStream(t.Context(), cjs.HealthStream(cjs.Options{})); err != nil {
		t.Fatal(err)
	}
	poll.For(t, 10*time.Second, want(200, "ready"))
	if !strings.Contains(logged(t), "JetStream takes writes again") {
		t.Error("the relay did not log that JetStream is back")
	}
}

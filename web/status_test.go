package web

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

// oneStatus knows one request, delivered.
type oneStatus struct{ fuzzStatuses }

func (oneStatus) GetStatus(_ context.Context, clinic, id string) (services.Status, error) {
	return services.Status{RequestID: id, ClinicID: clinic, SlotID: "dr-lee_20300101T1400Z",
		State: services.StateDelivered, UpdatedAt: fuzzNow}, nil
}

// TestServer_ServeEndsStatusStreams: an open live status page does not hold
// the shutdown for its grace period.
func TestServer_ServeEndsStatusStreams(t *testing.T) {
	srv, err := New(Config{Booker: &services.Booker{Statuses: oneStatus{}, Now: func() time.Time { return fuzzNow }},
		Catalog: fuzzCatalog{}, Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return fuzzNow }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	token := "maple_" + strings.Repeat("ab", 16)
	resp, err := http.Get("http://" + ln.Addr().String() + "/r/" + token + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if resp.StatusCode != 200 || line != "event: status\n" {
		t.Fatalf("events: %d %q %v", resp.StatusCode, line, err)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve = %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("shutdown took %s with a stream open", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running 5s after its context ended, with a status stream open")
	}
}

// declinedTaken knows one request, declined by the agent because its slot was taken.
type declinedTaken struct{ fuzzStatuses }

func (declinedTaken) GetStatus(_ context.Context, clinic, id string) (services.Status, error) {
	return services.Status{RequestID: id, ClinicID: clinic, SlotID: "dr-lee_20300101T1400Z",
		State: services.StateDeclined, Reason: services.ReasonSlotTaken, UpdatedAt: fuzzNow}, nil
}

// TestStatus_SystemReasonTranslated: a reason the agent writes itself is
// shown in the patient's language; one the clinic's staff wrote, as written.
func TestStatus_SystemReasonTranslated(t *testing.T) {
	srv, err := New(Config{Booker: &services.Booker{Statuses: declinedTaken{}, Now: func() time.Time { return fuzzNow }},
		Catalog: fuzzCatalog{}, Now: func() time.Time { return fuzzNow }})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/r/maple_"+strings.Repeat("ab", 16), nil)
	req.Header.Set("Accept-Language", "fr")
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	if body := rec.Body.String(); rec.Code != 200 || !strings.Contains(body, "Cet horaire vient d’être pris") ||
		strings.Contains(body, services.ReasonSlotTaken) {
		t.Errorf("status page in French: %d, the agent's reason not translated", rec.Code)
	}
	if got := reasonText("fr", "Dr. Lee est absent"); got != "Dr. Lee est absent" {
		t.Errorf("a staff reason became %q", got)
	}
}

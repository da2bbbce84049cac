package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/relay"
	"github.com/clinicrelay/clinicrelay/services"
)

// startNATS runs a JetStream server on addr with its store in dir; run it
// again with the same arguments and it comes back with its streams.
func startNATS(t *testing.T, addr, dir string) *server.Server {
	t.Helper()
	host, port := splitAddr(t, addr)
	ns, err := server.NewServer(&server.Options{Host: host, Port: port, JetStream: true, StoreDir: dir, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	return ns
}

// TestFault_WebLosesNATS: when the web front's NATS goes away, creating a
// request and reading a status answer 503 with Retry-After at once (JSON
// with code requests_paused under /api/, the paused page otherwise) while
// the pages read from memory still serve; when NATS is back the web takes
// requests again by itself.
func TestFault_WebLosesNATS(t *testing.T) {
	addr, dir := freeAddr(t), t.TempDir()
	ns := startNATS(t, addr, dir)
	_, _, web, slots := seededExternalRelay(t, relay.Config{NATSURL: "nats://" + addr}, "willow", 1)
	_, first, _ := services.ParseSlotID(slots[0]) // the seeded day

	var before map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/willow/requests", validRequest(slots[0]), &before); code != 201 {
		t.Fatalf("create with NATS up: %d", code)
	}
	_, _, page := web.Do("GET", "/c/willow/request?slot="+slots[1], "", nil)
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no csrf token in the form")
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	stopped := time.Now()
	var slowest time.Duration
	poll.For(t, 5*time.Second, func() error {
		var e struct{ Code string }
		start := time.Now()
		code := web.JSON("POST", "/api/v1/clinics/willow/requests", validRequest(slots[1]), &e)
		slowest = max(slowest, time.Since(start))
		if code != 503 || e.Code != "requests_paused" {
			return fmt.Errorf("not paused yet: %d %q", code, e.Code)
		}
		return nil
	})
	t.Logf("paused %s after NATS stopped (slowest answer meanwhile %s)", time.Since(stopped).Round(time.Millisecond),
		slowest.Round(time.Millisecond))
	form := url.Values{"_csrf": {m[1]}, "slot_id": {slots[1]}, "name": {"Bo Patient"}, "birth_date": {"1990-01-01"},
		"phone": {"416-555-0101"}, "email": {"bo@example.org"}, "consent": {"yes"}}.Encode()
	body, _ := json.Marshal(validRequest(slots[1]))
	for _, tt := range []struct {
		name, method, path, ctype, body string
		wantCode                        int
		want                            string
	}{
		{"APIRequestCreate", "POST", "/api/v1/clinics/willow/requests", "application/json", string(body), 503, `"code":"requests_paused"`},
		{"APIRequestGet", "GET", "/api/v1/requests/" + before["token"], "", "", 503, `"code":"requests_paused"`},
		{"RequestCreate", "POST", "/c/willow/request", "application/x-www-form-urlencoded", form, 503, "Requests are paused"},
		{"Status", "GET", before["status_url"], "", "", 503, "Requests are paused"},
		{"ClinicPage", "GET", "/c/willow", "", "", 200, "Clinic willow"},
		{"SlotList", "GET", "/api/v1/clinics/willow/slots?from=" + first.Format(time.DateOnly), "", "", 200, slots[2]},
	} {
		start := time.Now()
		code, hdr, got := web.Do(tt.method, tt.path, tt.ctype, strings.NewReader(tt.body))
		took := time.Since(start)
		if code != tt.wantCode || !strings.Contains(got, tt.want) || took > time.Second {
			t.Errorf("%s while NATS is down: %d in %s, want %d within 1s and %q in %.300q", tt.name, code, took, tt.wantCode, tt.want, got)
		}
		if code == 503 && hdr.Get("Retry-After") != "5" {
			t.Errorf("%s while NATS is down: Retry-After %q, want 5", tt.name, hdr.Get("Retry-After"))
		}
	}

	down := time.Now()
	startNATS(t, addr, dir)
	var after map[string]string
	poll.For(t, 20*time.Second, func() error {
		if code := web.JSON("POST", "/api/v1/clinics/willow/requests", validRequest(slots[1]), &after); code != 201 {
			return fmt.Errorf("not accepting yet: %d", code)
		}
		return nil
	})
	t.Logf("web took requests again %s after NATS came back", time.Since(down).Round(time.Millisecond))
	awaitState(t, web, before["token"], services.StateReceived)
	awaitState(t, web, after["token"], services.StateReceived)
}

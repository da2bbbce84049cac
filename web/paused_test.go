package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

// pausedStatuses answers every status read as unreachable, as STATUS is
// when NATS times out.
type pausedStatuses struct{ services.Statuses }

func (pausedStatuses) GetStatus(context.Context, string, string) (services.Status, error) {
	return services.Status{}, services.Errorf(services.EUnavailable, "the booking service is busy, please try again shortly")
}

// TestServer_Paused: while Paused says NATS is down, the routes that need it
// answer 503 with Retry-After at once, as JSON under /api/ and as the paused
// page elsewhere; when it is back they reach their handlers again.
func TestServer_Paused(t *testing.T) {
	var paused atomic.Bool
	lost, lose := context.WithCancel(context.Background())
	lose()
	link := func() context.Context {
		if paused.Load() {
			return lost
		}
		return context.Background()
	}
	s, err := New(Config{NATS: link, Booker: &services.Booker{Statuses: pausedStatuses{}}})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	do := func(method, path, ctype, body string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		for _, c := range cookies {
			r.AddCookie(c)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	// The form needs the CSRF cookie and its token, as a browser has them.
	var csrf *http.Cookie
	for _, c := range do("GET", "/healthz", "", "").Result().Cookies() {
		if c.Name == "_csrf" {
			csrf = c
		}
	}
	if csrf == nil {
		t.Fatal("no _csrf cookie")
	}
	form := url.Values{"_csrf": {csrf.Value}, "slot_id": {"dr-lee_20260302T1430Z"}}.Encode()
	token := services.StatusToken("maple", services.NewToken())

	paused.Store(true)
	for _, tt := range []struct {
		name, method, path, ctype, body string
		api                             bool
	}{
		{"APIRequestCreate", "POST", "/api/v1/clinics/maple/requests", "application/json", `{"slot_id":"x"}`, true},
		{"APIRequestGet", "GET", "/api/v1/requests/" + token, "", "", true},
		{"RequestCreate", "POST", "/c/maple/request", "application/x-www-form-urlencoded", form, false},
		{"Status", "GET", "/r/" + token, "", "", false},
	} {
		t.Run("Paused/"+tt.name, func(t *testing.T) {
			w := do(tt.method, tt.path, tt.ctype, tt.body, csrf)
			if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "5" ||
				w.Header().Get("Cache-Control") != "no-store" {
				t.Fatalf("got %d, Retry-After %q, Cache-Control %q; want 503, 5, no-store", w.Code,
					w.Header().Get("Retry-After"), w.Header().Get("Cache-Control"))
			}
			if tt.api {
				var e apiError
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code != codePaused || e.Error == "" {
					t.Fatalf("body %q: want an Error with code %q (%v)", w.Body, codePaused, err)
				}
				return
			}
			if b := w.Body.String(); !strings.Contains(b, "Requests are paused") || !strings.Contains(w.Header().Get("Content-Type"), "text/html") {
				t.Fatalf("not the paused page: %s %.200q", w.Header().Get("Content-Type"), b)
			}
		})
	}
	t.Run("Paused/FormForgedCSRF", func(t *testing.T) {
		forged := url.Values{"_csrf": {"forged"}}.Encode()
		if w := do("POST", "/c/maple/request", "application/x-www-form-urlencoded", forged, csrf); w.Code != http.StatusForbidden {
			t.Fatalf("forged form while paused: %d, want 403 (CSRF is checked first)", w.Code)
		}
	})

	paused.Store(false)
	t.Run("Resumed", func(t *testing.T) {
		// The handler runs again: a malformed token is 404, and a status
		// read that fails answers the error table's 503, with Retry-After too.
		if w := do("GET", "/api/v1/requests/nope", "", ""); w.Code != http.StatusNotFound {
			t.Errorf("bad token: %d, want 404", w.Code)
		}
		w := do("GET", "/api/v1/requests/"+token, "", "")
		var e apiError
		json.Unmarshal(w.Body.Bytes(), &e)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "5" || e.Code != "" {
			t.Errorf("unreachable STATUS: %d Retry-After %q code %q; want 503, 5, no code", w.Code, w.Header().Get("Retry-After"), e.Code)
		}
	})
}

// blockingStatuses answers a status read only when its context ends, as a
// read sent just before the connection dropped would.
type blockingStatuses struct{ pausedStatuses }

func (blockingStatuses) GetStatus(ctx context.Context, _, _ string) (services.Status, error) {
	<-ctx.Done()
	return services.Status{}, services.Errorf(services.EUnavailable, "the booking service is busy, please try again shortly")
}

// TestServer_PausedInFlight: a request already waiting on NATS when the
// connection goes is answered with the paused 503 at once.
func TestServer_PausedInFlight(t *testing.T) {
	link, lose := context.WithCancel(context.Background())
	s, err := New(Config{NATS: func() context.Context { return link }, Booker: &services.Booker{Statuses: blockingStatuses{}}})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, lose)
	r := httptest.NewRequest("GET", "/api/v1/requests/"+services.StatusToken("maple", services.NewToken()), nil)
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { s.Handler().ServeHTTP(w, r); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("request still waiting 2s after NATS was lost")
	}
	var e apiError
	json.Unmarshal(w.Body.Bytes(), &e)
	if w.Code != http.StatusServiceUnavailable || e.Code != codePaused || w.Header().Get("Retry-After") != "5" {
		t.Fatalf("in flight when NATS went: %d %q Retry-After %q; want 503 %q 5", w.Code, e.Code, w.Header().Get("Retry-After"), codePaused)
	}
}

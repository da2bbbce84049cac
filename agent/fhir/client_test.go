package fhir

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestClient_SearchFollowsNext: a real PMS pages its searches with Bundle
// next links; the Medplum router the other tests use returns none, so this
// pager is a plain HTTP handler serving three pages of Bundles.
func TestClient_SearchFollowsNext(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page := r.URL.Query().Get("page")
		b := map[string]any{"resourceType": "Bundle", "type": "searchset", "entry": []any{
			map[string]any{"resource": map[string]any{"resourceType": "Slot", "id": "s" + page + "a"}},
			map[string]any{"resource": map[string]any{"resourceType": "Slot", "id": "s" + page + "b"}},
		}}
		if page != "3" {
			next := 2
			if page == "2" {
				next = 3
			}
			b["link"] = []any{map[string]any{"relation": "next", "url": fmt.Sprintf("%s/fhir/R4/Slot?page=%d", srv.URL, next)}}
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		json.NewEncoder(w).Encode(b)
	}))
	defer srv.Close()
	c := &client{base: srv.URL + "/fhir/R4", http: srv.Client()}
	var ids []string
	err := c.search(t.Context(), "Slot", url.Values{"page": {"1"}}, func(raw json.RawMessage) error {
		var s slot
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		ids = append(ids, s.ID)
		return nil
	})
	if err != nil || fmt.Sprint(ids) != "[s1a s1b s2a s2b s3a s3b]" {
		t.Fatalf("search = %v, %v; want six slots over three pages", ids, err)
	}
}

// TestClient_Errors: statuses map to the errors the connector acts on, and
// no error carries the query (it may hold a patient's name).
func TestClient_Errors(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   error
	}{{412, ErrPrecondition}, {404, ErrNotFound}, {503, ErrUnreachable}, {429, ErrUnreachable}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.status)
			fmt.Fprint(w, `{"resourceType":"OperationOutcome","issue":[{"diagnostics":"Ada Lovelace"}]}`)
		}))
		c := &client{base: srv.URL, http: srv.Client()}
		_, err := c.call(t.Context(), http.MethodGet, "Patient?family=Lovelace", nil, nil, nil)
		srv.Close()
		if !errors.Is(err, tc.want) {
			t.Errorf("status %d: %v, want %v", tc.status, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "Lovelace") || strings.Contains(err.Error(), "family")) {
			t.Errorf("status %d: the error %q carries patient data", tc.status, err)
		}
	}
	// No answer at all: net/http's error quotes the URL; ours must not.
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close()
	c := &client{base: base, http: &http.Client{}}
	_, err := c.call(t.Context(), http.MethodGet, "Patient?family=Lovelace&birthdate=1980-04-02", nil, nil, nil)
	if !errors.Is(err, ErrUnreachable) || strings.Contains(err.Error(), "Lovelace") || strings.Contains(err.Error(), "1980") {
		t.Errorf("refused connection: %v; want ErrUnreachable without the query", err)
	}
	// A next link to another host is not followed with the credentials.
	c = &client{base: "http://pms.clinic.lan/fhir", http: &http.Client{}}
	if _, err := c.call(t.Context(), http.MethodGet, "http://elsewhere.example/fhir/Slot?page=2", nil, nil, nil); err == nil ||
		errors.Is(err, ErrUnreachable) {
		t.Errorf("a link to another host: %v, want it refused", err)
	}
}

// TestClient_Redirects: the client follows a redirect within the PMS, but
// not to another host nor from https to http, where the credentials would
// go to another server or in clear; such a PMS is refused, not unreachable.
func TestClient_Redirects(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"resourceType": "Bundle"})
	}))
	defer other.Close()
	pms := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fhir/Moved":
			http.Redirect(w, r, "/fhir/Slot", http.StatusFound)
		case "/fhir/Away":
			http.Redirect(w, r, other.URL+"/fhir/Slot", http.StatusFound)
		case "/fhir/Clear": // the same host, but http
			http.Redirect(w, r, "http://"+r.Host+"/fhir/Slot", http.StatusFound)
		default:
			json.NewEncoder(w).Encode(map[string]any{"resourceType": "Bundle"})
		}
	}))
	defer pms.Close()
	c := newClient(pms.URL+"/fhir", pms.Client())
	c.auth = func(r *http.Request) { r.Header.Set("Authorization", "Bearer secret") }
	if _, err := c.call(t.Context(), http.MethodGet, "Moved", nil, nil, nil); err != nil {
		t.Errorf("a redirect within the PMS: %v", err)
	}
	for _, path := range []string{"Away", "Clear"} {
		_, err := c.call(t.Context(), http.MethodGet, path, nil, nil, nil)
		if !errors.Is(err, errRedirect) || errors.Is(err, ErrUnreachable) {
			t.Errorf("%s: %v, want the redirect refused (not unreachable)", path, err)
		}
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("another host got %d requests", n)
	}
}

// TestClient_NextLinkLoop: a next link back to a page already read ends the
// search at once with an error, not after a thousand requests, and the
// connector's health says so.
func TestClient_NextLinkLoop(t *testing.T) {
	var hits atomic.Int32
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"resourceType": "Bundle", "type": "searchset",
			"link": []any{map[string]any{"relation": "next", "url": srv.URL + "/fhir/Schedule?page=1"}}})
	}))
	defer srv.Close()
	conn, err := New(Config{URL: srv.URL + "/fhir", HTTP: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	loc := time.UTC
	from := time.Now().UTC().Truncate(24 * time.Hour)
	_, _, err = conn.FreeSlots(t.Context(), from, from.AddDate(0, 0, 1), loc)
	if err == nil || !strings.Contains(err.Error(), "next link leads back") {
		t.Fatalf("FreeSlots: %v, want the loop named", err)
	}
	if n := hits.Load(); n > 3 {
		t.Errorf("%d requests to the PMS for a loop", n)
	}
	if h := conn.Health(); h == nil || !strings.Contains(h.Error(), "PMS refused the connector") {
		t.Errorf("Health = %v, want the loop shown", h)
	}
}

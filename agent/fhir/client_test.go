package fhir

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
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

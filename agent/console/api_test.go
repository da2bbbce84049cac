package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/services"
)

// apiResponse is a recorded API call with its decoded error body, if any.
type apiResponse struct {
	status int
	header http.Header
	body   string
	err    struct {
		Error  string            `json:"error"`
		Fields map[string]string `json:"fields"`
	}
}

// call sends method path with body as contentType ("" for none) to the console.
func call(t *testing.T, c *console.Console, method, path, contentType, body string) apiResponse {
	t.Helper()
	chunked := strings.HasPrefix(body, "chunked:")
	req := httptest.NewRequest(method, "http://127.0.0.1"+path, strings.NewReader(strings.TrimPrefix(body, "chunked:")))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if ck := sessionOf(c); ck != nil {
		req.AddCookie(ck)
	}
	if chunked {
		req.ContentLength = -1 // no declared length: the limit applies while reading
	}
	rec := httptest.NewRecorder()
	c.Handler().ServeHTTP(rec, req)
	r := apiResponse{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
	if rec.Code >= 400 {
		if err := json.Unmarshal(rec.Body.Bytes(), &r.err); err != nil {
			t.Fatalf("%s %s: error body %q is not JSON: %v", method, path, rec.Body.String(), err)
		}
	}
	return r
}

func TestAPI_Errors(t *testing.T) {
	e := newEnv(t)
	pending, booked := request(1, "dr-lee", at(3, 9, 0)), request(2, "dr-lee", at(3, 9, 30))
	e.mustStore(t, pending)
	e.mustStore(t, booked)
	if _, err := e.c.Confirm(t.Context(), booked.ID); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	unknown := services.RequestIDFor("nobody")
	big := `{"reason": "` + strings.Repeat("x", 70<<10) + `"}`
	badProviders := `[{"id":"dr-lee","name":"Dr. Lee","slot_minutes":2,"hours":{"mon":[{"start":"09:00","end":"08:00"}]}}]`
	dupProviders := `[{"id":"dr-lee","name":"A","slot_minutes":30},{"id":"dr-lee","name":"B","slot_minutes":30}]`
	const js, form = "application/json", "application/x-www-form-urlencoded"

	tests := []struct {
		name, method, path, contentType, body string
		wantStatus                            int
		wantField                             string
	}{
		{"list/bad status", "GET", "/api/requests?status=maybe", "", "", 422, "status"},
		{"confirm/unknown id", "POST", "/api/requests/" + unknown + "/confirm", js, "", 404, ""},
		{"confirm/malformed id", "POST", "/api/requests/..%2f..%2fetc/confirm", js, "", 404, ""},
		{"confirm/wrong state", "POST", "/api/requests/" + booked.ID + "/confirm", js, "", 409, ""},
		{"confirm/no content type", "POST", "/api/requests/" + pending.ID + "/confirm", "", "", 415, ""},
		{"confirm/form content type", "POST", "/api/requests/" + pending.ID + "/confirm", form, "", 415, ""},
		{"decline/bad JSON", "POST", "/api/requests/" + pending.ID + "/decline", js, `{"reason": `, 400, ""},
		{"decline/empty body", "POST", "/api/requests/" + pending.ID + "/decline", js, ``, 400, ""},
		{"decline/two values", "POST", "/api/requests/" + pending.ID + "/decline", js, `{"reason":"a"} {}`, 400, ""},
		{"decline/reason type", "POST", "/api/requests/" + pending.ID + "/decline", js, `{"reason": 5}`, 400, "reason"},
		{"decline/unknown field", "POST", "/api/requests/" + pending.ID + "/decline", js, `{"why": "x"}`, 400, "why"},
		{"decline/missing reason", "POST", "/api/requests/" + pending.ID + "/decline", js, `{}`, 422, "reason"},
		{"decline/long reason", "POST", "/api/requests/" + pending.ID + "/decline", js, `{"reason":"` + strings.Repeat("x", 501) + `"}`, 422, "reason"},
		{"decline/unknown id", "POST", "/api/requests/" + unknown + "/decline", js, `{"reason":"x"}`, 404, ""},
		{"decline/wrong state", "POST", "/api/requests/" + booked.ID + "/decline", js, `{"reason":"x"}`, 409, ""},
		{"decline/text content type", "POST", "/api/requests/" + pending.ID + "/decline", "text/plain", `{"reason":"x"}`, 415, ""},
		{"decline/oversized", "POST", "/api/requests/" + pending.ID + "/decline", js, big, 413, ""},
		{"decline/oversized chunked", "POST", "/api/requests/" + pending.ID + "/decline", js, "chunked:" + big, 413, ""},
		{"propose/bad slot", "POST", "/api/requests/" + pending.ID + "/propose", js, `{"slot_id":"tomorrow"}`, 422, "slot_id"},
		{"propose/past slot", "POST", "/api/requests/" + pending.ID + "/propose", js, `{"slot_id":"dr-lee_20260302T1400Z"}`, 422, "slot_id"},
		{"propose/taken slot", "POST", "/api/requests/" + pending.ID + "/propose", js, `{"slot_id":"` + booked.SlotID + `"}`, 409, ""},
		{"propose/bad JSON", "POST", "/api/requests/" + pending.ID + "/propose", js, `slot`, 400, ""},
		{"propose/unknown id", "POST", "/api/requests/" + unknown + "/propose", js, `{"slot_id":"dr-lee_20260303T1500Z"}`, 404, ""},
		{"propose/wrong state", "POST", "/api/requests/" + booked.ID + "/propose", js, `{"slot_id":"dr-lee_20260303T1500Z"}`, 409, ""},
		{"providers/bad slot_minutes", "PUT", "/api/providers", js, badProviders, 422, "providers[0].slot_minutes"},
		{"providers/bad hours", "PUT", "/api/providers", js, badProviders, 422, "providers[0].hours.mon"},
		{"providers/duplicate id", "PUT", "/api/providers", js, dupProviders, 422, "providers[1].id"},
		{"providers/bad JSON", "PUT", "/api/providers", js, `[{`, 400, ""},
		{"providers/not a list", "PUT", "/api/providers", js, `{"id":"dr-lee"}`, 400, ""},
		{"providers/field type", "PUT", "/api/providers", js, `[{"slot_minutes":"thirty"}]`, 400, "slot_minutes"},
		{"providers/wrong content type", "PUT", "/api/providers", form, `[]`, 415, ""},
		{"providers/oversized", "PUT", "/api/providers", js, "chunked:" + big, 413, ""},
		{"unknown route", "GET", "/api/nothing", "", "", 404, ""},
		{"wrong method", "DELETE", "/api/providers", js, "", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, e.c, tt.method, tt.path, tt.contentType, tt.body)
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d (%s), want %d", r.status, r.body, tt.wantStatus)
			}
			if r.err.Error == "" {
				t.Errorf("error message is empty, want one")
			}
			if _, ok := r.err.Fields[tt.wantField]; tt.wantField != "" && !ok {
				t.Errorf("fields = %v, want %q named", r.err.Fields, tt.wantField)
			}
		})
	}

	// None of the bad calls changed anything.
	got, _ := e.c.Requests(t.Context(), console.StatusPending)
	if len(got) != 1 || got[0].ID != pending.ID {
		t.Errorf("pending after bad calls = %v, want %s still pending", entryIDs(got), pending.ID)
	}
	providers, _ := e.c.Providers(t.Context())
	if len(providers) != 2 {
		t.Errorf("providers after bad calls = %d, want 2", len(providers))
	}
}

func TestAPI_Requests(t *testing.T) {
	e := newEnv(t)
	first, second, third := request(1, "dr-lee", at(3, 9, 0)), request(2, "dr-lee", at(3, 9, 30)), request(3, "dr-patel", at(3, 10, 0))
	for _, r := range []services.Request{first, second, third} {
		e.mustStore(t, r)
	}
	const js = "application/json"

	r := call(t, e.c, "POST", "/api/requests/"+first.ID+"/confirm", js, "")
	if r.status != 200 || !strings.Contains(r.body, `"status":"booked"`) {
		t.Fatalf("confirm = %d %s, want 200 booked", r.status, r.body)
	}
	if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
	}
	r = call(t, e.c, "POST", "/api/requests/"+second.ID+"/decline", js, `{"reason":"Doctor away"}`)
	if r.status != 200 || !strings.Contains(r.body, `"decline_reason":"Doctor away"`) {
		t.Fatalf("decline = %d %s, want 200 with the reason", r.status, r.body)
	}
	slot := services.SlotID("dr-patel", at(3, 14, 0))
	r = call(t, e.c, "POST", "/api/requests/"+third.ID+"/propose", js, `{"slot_id":"`+slot+`"}`)
	if r.status != 200 || !strings.Contains(r.body, `"proposed_slot":"`+slot+`"`) {
		t.Fatalf("propose = %d %s, want 200 with the slot", r.status, r.body)
	}

	for status, want := range map[string]int{"": 3, "all": 3, "pending": 0, "booked": 1, "declined": 1, "proposed": 1} {
		r := call(t, e.c, "GET", "/api/requests?status="+status, "", "")
		var list []map[string]any
		if err := json.Unmarshal([]byte(r.body), &list); err != nil || r.status != 200 {
			t.Fatalf("list %q = %d %s, %v", status, r.status, r.body, err)
		}
		if len(list) != want {
			t.Errorf("list %q: got %d requests, want %d", status, len(list), want)
		}
	}
	r = call(t, e.c, "GET", "/api/requests?status=booked", "", "")
	var list []map[string]any
	_ = json.Unmarshal([]byte(r.body), &list)
	for _, key := range []string{"id", "slot_id", "provider_id", "start", "name", "status", "decline_reason", "proposed_slot", "received_at"} {
		if _, ok := list[0][key]; !ok {
			t.Errorf("request JSON lacks %q: %v", key, list[0])
		}
	}
	// A list sums up; one request has the patient's details.
	for _, key := range []string{"birth_date", "phone", "email", "reason"} {
		if _, ok := list[0][key]; ok {
			t.Errorf("the list has %q: %v", key, list[0])
		}
	}
	r = call(t, e.c, "GET", "/api/requests/"+first.ID, "", "")
	var one map[string]any
	_ = json.Unmarshal([]byte(r.body), &one)
	for _, key := range []string{"birth_date", "phone", "email", "reason"} {
		if _, ok := one[key]; !ok || r.status != 200 {
			t.Errorf("GET /api/requests/%s = %d, lacks %q: %v", first.ID, r.status, key, one)
		}
	}
	if got, want := list[0]["start"], "2026-03-03T14:00:00Z"; got != want {
		t.Errorf("start = %v, want %v", got, want)
	}
}

func TestAPI_Providers(t *testing.T) {
	e := newEnv(t)
	body, _ := json.Marshal(console.DemoProviders()[:1])
	r := call(t, e.c, "PUT", "/api/providers", "application/json; charset=utf-8", string(body))
	if r.status != 200 {
		t.Fatalf("PUT = %d %s, want 200", r.status, r.body)
	}
	r = call(t, e.c, "GET", "/api/providers", "", "")
	var got []services.ProviderSchedule
	if err := json.Unmarshal([]byte(r.body), &got); err != nil || r.status != 200 {
		t.Fatalf("GET = %d %s, %v", r.status, r.body, err)
	}
	if len(got) != 1 || got[0].ID != "dr-lee" || got[0].SlotMinutes != 30 || len(got[0].Hours["mon"]) != 2 {
		t.Errorf("providers = %+v, want dr-lee as put", got)
	}
}

func TestConsole_Run(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := console.Open(console.Config{Path: filepath.Join(t.TempDir(), "console.db"), Addr: addr})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer c.Close()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	poll.For(t, 5*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/api/providers")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized { // served, and asks to sign in
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
}

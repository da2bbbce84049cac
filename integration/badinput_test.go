package integration

import (
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestBadInput_API: everything a user can send gets a 4xx naming what is
// wrong, never a 5xx, and never echoes a stack trace.
func TestBadInput_API(t *testing.T) {
	env := NewEnv(t)
	env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	slot := firstSlot(t, web, "maple")
	today := time.Now().Format(time.DateOnly)

	withField := func(k string, v any) string {
		m := validRequest(slot)
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	tests := []struct {
		name, method, path, ctype, body string
		wantCode                        int
		wantField                       string // a field the error must name
	}{
		{"unknown clinic slots", "GET", "/api/v1/clinics/nosuch/slots", "", "", 404, ""},
		{"clinic id with a dot", "GET", "/api/v1/clinics/a.b/slots", "", "", 404, ""},
		{"bad from", "GET", "/api/v1/clinics/maple/slots?from=tomorrow", "", "", 422, "from"},
		{"bad to", "GET", "/api/v1/clinics/maple/slots?to=2026-13-45", "", "", 422, "to"},
		{"to before from", "GET", "/api/v1/clinics/maple/slots?from=" + today + "&to=2000-01-01", "", "", 422, "to"},
		{"range too wide", "GET", "/api/v1/clinics/maple/slots?from=2026-01-01&to=2026-12-31", "", "", 422, "to"},
		{"form content type", "POST", "/api/v1/clinics/maple/requests", "application/x-www-form-urlencoded", "name=x", 415, ""},
		{"no content type", "POST", "/api/v1/clinics/maple/requests", "", "{}", 415, ""},
		{"not JSON", "POST", "/api/v1/clinics/maple/requests", "application/json", "{nope", 400, ""},
		{"empty body", "POST", "/api/v1/clinics/maple/requests", "application/json", "", 400, ""},
		{"JSON array", "POST", "/api/v1/clinics/maple/requests", "application/json", "[]", 400, ""},
		{"wrong type", "POST", "/api/v1/clinics/maple/requests", "application/json", `{"name": 5}`, 400, ""},
		{"missing name", "POST", "/api/v1/clinics/maple/requests", "application/json", withField("name", nil), 422, "name"},
		{"control chars in name", "POST", "/api/v1/clinics/maple/requests", "application/json", withField("name", "A\x00B"), 422, "name"},
		{"bad birth date", "POST", "/api/v1/clinics/maple/requests", "application/json", withField("birth_date", "02/04/1980"), 422, "birth_date"},
		{"future birth date", "POST", "/api/v1/clinics/maple/requests", "application/json", withField("birth_date", "2999-01-01"), 422, "birth_date"},
		{"bad phone", "POST", "/api/v1/clinics/maple/requests", "application/json", withField("phone", "call me"), 422, "phone"},
		{"bad email", "POST", "/api/v1/clinics/maple/requests", "application/json", withField("email", "ada at example"), 422, "email"},
		{"reason too long", "POST", "/api/v1/clinics/maple/requests", "application/json", withField("reason", strings.Repeat("x", 1001)), 422, "reason"},
		{"consent refused", "POST", "/api/v1/clinics/maple/requests", "application/json", withField("consent", false), 422, "consent"},
		{"malformed slot", "POST", "/api/v1/clinics/maple/requests", "application/json", withField("slot_id", "../../etc"), 422, "slot_id"},
		{"slot not offered", "POST", "/api/v1/clinics/maple/requests", "application/json", withField("slot_id", "dr-lee_20990101T0300Z"), 409, ""},
		{"unknown clinic request", "POST", "/api/v1/clinics/nosuch/requests", "application/json", withField("name", "x"), 404, ""},
		{"oversized body", "POST", "/api/v1/clinics/maple/requests", "application/json", `{"reason":"` + strings.Repeat("x", 70<<10) + `"}`, 413, ""},
		{"garbage token", "GET", "/api/v1/requests/garbage", "", "", 404, ""},
		{"unknown token", "GET", "/api/v1/requests/maple_0123456789abcdef0123456789abcdef", "", "", 404, ""},
		{"token with dots", "GET", "/api/v1/requests/a.b_0123456789abcdef0123456789abcdef", "", "", 404, ""},
		{"unknown route", "GET", "/api/v1/nothing", "", "", 404, ""},
		{"wrong method", "DELETE", "/api/v1/clinics", "", "", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, hdr, body := web.Do(tt.method, tt.path, tt.ctype, strings.NewReader(tt.body))
			if code != tt.wantCode {
				t.Fatalf("%s %s: got %d, want %d: %.300s", tt.method, tt.path, code, tt.wantCode, body)
			}
			if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
				t.Errorf("content type %q, want JSON", hdr.Get("Content-Type"))
			}
			var e struct {
				Error  string            `json:"error"`
				Fields map[string]string `json:"fields"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
				t.Fatalf("error body %q: %v", body, err)
			}
			if tt.wantField != "" && e.Fields[tt.wantField] == "" {
				t.Errorf("error does not name field %q: %s", tt.wantField, body)
			}
			if strings.Contains(body, "goroutine") || strings.Contains(body, ".go:") {
				t.Errorf("stack trace in answer: %s", body)
			}
		})
	}
	// A chunked body over the limit is refused as too large, not as bad JSON.
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(`{"reason":"` + strings.Repeat("x", 70<<10) + `"}`))
		pw.Close()
	}()
	if code, _, body := web.Do("POST", "/api/v1/clinics/maple/requests", "application/json", pr); code != 413 {
		t.Errorf("chunked oversized body: %d %s, want 413", code, body)
	}
	// The slot that was never taken is still free after all of that.
	if !hasSlot(t, web, "maple", slot) {
		t.Error("bad requests took the slot")
	}
}

// TestBadInput_Pages: the HTML side answers 4xx pages, names the field, and
// keeps what the patient typed.
func TestBadInput_Pages(t *testing.T) {
	env := NewEnv(t)
	env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	slot := firstSlot(t, web, "maple")
	_, _, page := web.Do("GET", "/c/maple/request?slot="+slot, "", nil)
	csrf := csrfRE.FindStringSubmatch(page)[1]

	for _, tt := range []struct {
		name, method, path string
		form               url.Values
		wantCode           int
		wantText           string
	}{
		{"unknown clinic", "GET", "/c/nosuch", nil, 404, "no such clinic"},
		{"bad date", "GET", "/c/maple?date=someday", nil, 422, "date must be a date"},
		{"unknown slot", "GET", "/c/maple/request?slot=dr-lee_20990101T0300Z", nil, 409, "no longer free"},
		{"bad token", "GET", "/r/not-a-token", nil, 404, "no such request"},
		{"missing csrf", "POST", "/c/maple/request", url.Values{"slot_id": {slot}}, 400, "form has expired"},
		{"invalid fields", "POST", "/c/maple/request", url.Values{"_csrf": {csrf}, "slot_id": {slot}, "name": {"Kim"},
			"email": {"nope"}}, 422, "email must be an address"},
		{"no consent", "POST", "/c/maple/request", url.Values{"_csrf": {csrf}, "slot_id": {slot}, "name": {"Kim"},
			"birth_date": {"1970-01-01"}, "phone": {"4165550100"}, "email": {"kim@example.org"}}, 422, "consent is required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var body *strings.Reader
			ctype := ""
			if tt.form != nil {
				body, ctype = strings.NewReader(tt.form.Encode()), "application/x-www-form-urlencoded"
			} else {
				body = strings.NewReader("")
			}
			code, _, page := web.Do(tt.method, tt.path, ctype, body)
			if code != tt.wantCode {
				t.Fatalf("got %d, want %d: %.300s", code, tt.wantCode, page)
			}
			if !strings.Contains(page, tt.wantText) {
				t.Errorf("page lacks %q: %.500s", tt.wantText, page)
			}
			if tt.name == "invalid fields" && !strings.Contains(page, `value="Kim"`) {
				t.Error("the form lost what the patient typed")
			}
		})
	}
}

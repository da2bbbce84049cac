package web

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

// codeServer is an abuse server whose clinic budget is one request, with
// email codes sent into a list.
type codeServer struct {
	*abuseServer
	mu   sync.Mutex
	sent []string // the messages
}

func newCodeServer(t *testing.T) *codeServer {
	cs := &codeServer{}
	cs.abuseServer = newAbuseServerWith(t, func(cfg *Config) {
		cfg.Limits = Limits{CreateClinic: Rate{Every: time.Hour, Burst: 1}, CreateIP: Rate{Every: time.Hour, Burst: 100}}
		cfg.TrustedProxies = nil
		cfg.EmailCodes = &services.EmailCodes{Secret: []byte("test secret"), From: "relay@book.test",
			Now: func() time.Time { return cs.clock() },
			Send: func(_ context.Context, to string, msg []byte) error {
				cs.mu.Lock()
				defer cs.mu.Unlock()
				cs.sent = append(cs.sent, string(msg))
				return nil
			}}
	})
	return cs
}

func (cs *codeServer) codes() []string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var out []string
	for _, m := range cs.sent {
		if c := regexp.MustCompile(`Your code: (\d{6})`).FindStringSubmatch(m); c != nil {
			out = append(out, c[1])
		}
	}
	return out
}

func withCode(code string) string {
	return strings.TrimSuffix(fuzzBody, "}") + `,"email_code":"` + code + `"}`
}

func answer(t *testing.T, res *http.Response) (int, apiError) {
	t.Helper()
	defer res.Body.Close()
	var e apiError
	json.NewDecoder(res.Body).Decode(&e)
	return res.StatusCode, e
}

// TestEmailCode_Limits: past the clinic's budget a valid request is sent a
// code; three codes per mailbox, then 429; five tries, then 429 even for
// the right code; a code lasts two windows at most.
func TestEmailCode_Limits(t *testing.T) {
	cs := newCodeServer(t)
	if res := cs.post(t, "maple", fuzzBody, ""); res.StatusCode != http.StatusCreated {
		t.Fatalf("within the budget: %d", res.StatusCode)
	}
	for i := range 3 {
		if code, e := answer(t, cs.post(t, "maple", fuzzBody, "")); code != http.StatusConflict || e.Code != codeEmailCode {
			t.Fatalf("ask %d: %d %+v, want 409 %s", i+1, code, e, codeEmailCode)
		}
	}
	if n := len(cs.codes()); n != 3 {
		t.Fatalf("%d codes sent, want 3", n)
	}
	want429(t, cs.post(t, "maple", fuzzBody, ""), "120")
	if n := len(cs.codes()); n != 3 {
		t.Errorf("%d codes sent past the limit, want 3", n)
	}
	good := cs.codes()[0]
	// A code expires: two windows on, it is refused (one try spent).
	cs.advance(2 * services.EmailCodeWindow)
	if code, e := answer(t, cs.post(t, "maple", withCode(good), "")); code != http.StatusUnprocessableEntity || e.Fields["email_code"] == "" {
		t.Errorf("an expired code: %d %+v, want 422 naming email_code", code, e)
	}
	cs.advance(-2 * services.EmailCodeWindow)
	for i := range 4 {
		if code, _ := answer(t, cs.post(t, "maple", withCode("000000"[:5]+string(rune('1'+i))), "")); code != http.StatusUnprocessableEntity {
			t.Fatalf("wrong code %d: %d, want 422", i+1, code)
		}
	}
	// The sixth try is refused whatever it is: the right code cannot be
	// guessed past the limit.
	want429(t, cs.post(t, "maple", withCode(good), ""), "120")
	if len(cs.out) != 1 {
		t.Errorf("%d requests reached the clinic, want 1", len(cs.out))
	}
}

// TestEmailCode_Form: the request form past the budget keeps what was
// typed, shows the code's field and says a code was sent; the right code
// sends the request.
func TestEmailCode_Form(t *testing.T) {
	cs := newCodeServer(t)
	cs.post(t, "maple", fuzzBody, "").Body.Close() // spends the budget
	h := cs.srv.Handler()
	form := fuzzForm()
	w := postPageForm(t, h, "/c/maple/request", form)
	page := w.Body.String()
	if w.Code != http.StatusConflict || !strings.Contains(page, `id="email_code"`) ||
		!strings.Contains(page, "we sent a 6-digit code to ada@example.org") || !strings.Contains(page, `value="Ada Lovelace"`) {
		t.Fatalf("form past the budget: %d\n%.3000s", w.Code, page)
	}
	form.Set("email_code", cs.codes()[0])
	if w := postPageForm(t, h, "/c/maple/request", form); w.Code != http.StatusSeeOther {
		t.Fatalf("form with the code: %d\n%.2000s", w.Code, w.Body.String())
	}
	if len(cs.out) != 2 {
		t.Errorf("%d requests reached the clinic, want 2", len(cs.out))
	}
}

// fuzzForm is fuzzBody as the request form posts it.
func fuzzForm() url.Values {
	return url.Values{"slot_id": {"dr-lee_20260302T1430Z"}, "name": {"Ada Lovelace"}, "birth_date": {"1990-04-01"},
		"phone": {"+1 (416) 555-0100"}, "email": {"ada@example.org"}, "reason": {"checkup"}, "consent": {"yes"}}
}

// postPageForm posts form to path as a browser would: with the CSRF
// cookie and token of the form page.
func postPageForm(t *testing.T, h http.Handler, path string, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	res, _ := get(t, h, path+"?slot="+form.Get("slot_id"))
	var csrf *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "_csrf" {
			csrf = c
		}
	}
	if csrf == nil {
		t.Fatalf("no CSRF cookie from %s (%d)", path, res.StatusCode)
	}
	form = maps.Clone(form)
	form.Set("_csrf", csrf.Value)
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(csrf)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

package console_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/services"
)

// session is a browser's CSRF cookie and the token its page carries.
type session struct {
	cookie *http.Cookie
	token  string
}

var tokenRE = regexp.MustCompile(`name="_csrf" value="([^"]+)"`)

// getPage loads the front-desk page and returns its body and CSRF session.
func getPage(t *testing.T, c *console.Console) (string, session) {
	t.Helper()
	rec := serve(c, sessionOf(c), "GET", "/", "", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET / = %d %s, want 200", rec.Code, rec.Body)
	}
	var s session
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == "_csrf" {
			s.cookie = ck
		}
	}
	m := tokenRE.FindStringSubmatch(rec.Body.String())
	if s.cookie == nil || m == nil {
		t.Fatalf("GET / set no _csrf cookie (%v) or form token (%v)", s.cookie, m)
	}
	s.token = m[1]
	return rec.Body.String(), s
}

// postForm posts form to path as the page would, with s's cookie and token
// unless s is the zero session.
func postForm(t *testing.T, c *console.Console, s session, path string, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	if s.token != "" {
		form.Set("_csrf", s.token)
	}
	req := httptest.NewRequest("POST", "http://127.0.0.1"+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if s.cookie != nil {
		req.AddCookie(s.cookie)
	}
	if ck := sessionOf(c); ck != nil {
		req.AddCookie(ck)
	}
	rec := httptest.NewRecorder()
	c.Handler().ServeHTTP(rec, req)
	return rec
}

func wantRedirect(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/" {
		t.Fatalf("response = %d to %q (%s), want 303 to /", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
}

func TestPage_Render(t *testing.T) {
	e := newEnv(t)
	req := request(1, "dr-lee", at(3, 9, 0))
	e.mustStore(t, req)
	body, _ := getPage(t, e.c)

	for _, want := range []string{
		"Maple Clinic", "America/Toronto", "Tue Mar 3 2026, 09:00", "Dr. Alex Lee",
		req.Name, `href="/requests/` + req.ID + `"`,
		`action="/requests/` + req.ID + `/confirm"`, `action="/requests/` + req.ID + `/decline"`,
		`<option value="` + services.SlotID("dr-lee", at(3, 9, 30)) + `">`,
		`name="mon" value="09:00-12:00, 13:00-17:00"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The list names the patient; the details are on the request's own page.
	for _, detail := range []string{req.BirthDate, req.Email, "Check-up"} {
		if strings.Contains(body, detail) {
			t.Errorf("the list shows the detail %q", detail)
		}
	}
	if strings.Contains(body, `<option value="`+req.SlotID+`">`) {
		t.Errorf("page offers the request's own slot %s to propose", req.SlotID)
	}

	rec := serve(e.c, e.admin, "GET", "/requests/"+req.ID, "", "")
	details := rec.Body.String()
	for _, want := range []string{req.Name, req.BirthDate, "&#43;1 416 555 0100", req.Email, "Check-up &lt;b&gt;now&lt;/b&gt;",
		"Tue Mar 3 2026, 09:00 with Dr. Alex Lee", `action="/requests/` + req.ID + `/confirm"`,
		`<option value="` + services.SlotID("dr-lee", at(3, 9, 30)) + `">`} {
		if !strings.Contains(details, want) {
			t.Errorf("request page lacks %q", want)
		}
	}
	if rec.Code != http.StatusOK || strings.Contains(details, "<b>now</b>") {
		t.Errorf("request page: %d, or the reason unescaped", rec.Code)
	}
	if rec := serve(e.c, e.admin, "GET", "/requests/"+strings.Repeat("f", 32), "", ""); rec.Code != http.StatusNotFound {
		t.Errorf("request page of no request: %d, want 404", rec.Code)
	}
}

func TestPage_Confirm(t *testing.T) {
	e := newEnv(t)
	req := request(1, "dr-lee", at(3, 9, 0))
	e.mustStore(t, req)
	_, s := getPage(t, e.c)
	path := "/requests/" + req.ID + "/confirm"

	t.Run("ErrCSRF", func(t *testing.T) {
		if rec := postForm(t, e.c, session{}, path, url.Values{}); rec.Code != http.StatusBadRequest {
			t.Errorf("without a token: %d, want 400", rec.Code)
		}
		wrong := session{cookie: s.cookie, token: "forged"}
		if rec := postForm(t, e.c, wrong, path, url.Values{}); rec.Code != http.StatusForbidden {
			t.Errorf("with a wrong token: %d, want 403", rec.Code)
		}
		if got, _ := e.c.Requests(t.Context(), console.StatusPending); len(got) != 1 {
			t.Errorf("pending after forged posts = %d, want 1", len(got))
		}
	})
	t.Run("OK", func(t *testing.T) {
		wantRedirect(t, postForm(t, e.c, s, path, url.Values{}))
		got, _ := e.c.Requests(t.Context(), console.StatusBooked)
		if len(got) != 1 || got[0].ID != req.ID {
			t.Errorf("booked = %v, want %s", entryIDs(got), req.ID)
		}
		body, _ := getPage(t, e.c)
		if !strings.Contains(body, "No pending requests.") || !strings.Contains(body, "booked") {
			t.Errorf("page after Confirm lacks the decision")
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		rec := postForm(t, e.c, s, path, url.Values{})
		if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "request is already booked") {
			t.Errorf("confirming again = %d, want 409 with the page and message", rec.Code)
		}
	})
}

func TestPage_DeclinePropose(t *testing.T) {
	e := newEnv(t)
	first, second := request(1, "dr-lee", at(3, 9, 0)), request(2, "dr-lee", at(3, 9, 30))
	e.mustStore(t, first)
	e.mustStore(t, second)
	_, s := getPage(t, e.c)

	rec := postForm(t, e.c, s, "/requests/"+first.ID+"/decline", url.Values{"reason": {" "}})
	if rec.Code != http.StatusUnprocessableEntity || !strings.Contains(rec.Body.String(), "reason is required") {
		t.Errorf("decline without reason = %d, want 422 with the message", rec.Code)
	}
	wantRedirect(t, postForm(t, e.c, s, "/requests/"+first.ID+"/decline", url.Values{"reason": {"Fully booked"}}))

	slot := services.SlotID("dr-lee", at(3, 13, 0))
	wantRedirect(t, postForm(t, e.c, s, "/requests/"+second.ID+"/propose", url.Values{"slot_id": {slot}}))
	got, _ := e.c.Requests(t.Context(), console.StatusProposed)
	if len(got) != 1 || got[0].ProposedSlot != slot {
		t.Errorf("proposed = %+v, want %s at %s", got, second.ID, slot)
	}
}

func TestPage_Providers(t *testing.T) {
	e := newEnv(t)
	_, s := getPage(t, e.c)
	form := func(id, minutes, mon string) url.Values {
		return url.Values{"id": {id}, "name": {"Dr. Sam Roy"}, "slot_minutes": {minutes}, "mon": {mon}, "closures": {"2026-12-25, 2026-12-24"}}
	}

	tests := []struct {
		name, id, minutes, mon, wantField string
	}{
		{"slot minutes not a number", "dr-roy", "half an hour", "09:00-12:00", "slot_minutes"},
		{"slot minutes too short", "dr-roy", "2", "09:00-12:00", "slot_minutes"},
		{"hours not periods", "dr-roy", "15", "9 to 12", "hours.mon"},
		{"hours backwards", "dr-roy", "15", "12:00-09:00", "hours.mon"},
		{"bad id", "Dr Roy", "15", "09:00-12:00", "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := postForm(t, e.c, s, "/providers", form(tt.id, tt.minutes, tt.mon))
			body := rec.Body.String()
			if rec.Code != http.StatusUnprocessableEntity {
				t.Fatalf("status = %d, want 422", rec.Code)
			}
			if !strings.Contains(body, "<li>"+tt.wantField+": ") {
				t.Errorf("page does not name field %q", tt.wantField)
			}
			if !strings.Contains(body, `value="Dr. Sam Roy"`) {
				t.Errorf("page lost the submitted name")
			}
		})
	}

	// A line break in a name would forge a line wherever names are listed.
	crlf := form("dr-roy", "15", "09:00-12:00")
	crlf.Set("name", "Dr. Sam Roy\r\nDr. Forged")
	if rec := postForm(t, e.c, s, "/providers", crlf); rec.Code != http.StatusUnprocessableEntity ||
		!strings.Contains(rec.Body.String(), "<li>name: ") {
		t.Errorf("name with CR/LF: status %d, want 422 naming name", rec.Code)
	}
	if got, _ := e.c.Providers(t.Context()); len(got) != 2 {
		t.Errorf("a refused provider was stored: %+v", got)
	}

	wantRedirect(t, postForm(t, e.c, s, "/providers", form("dr-roy", "15", "08:00-10:00, 11:00-12:00")))
	got, _ := e.c.Providers(t.Context())
	if len(got) != 3 || got[2].ID != "dr-roy" || len(got[2].Hours["mon"]) != 2 || got[2].Closures[0] != "2026-12-24" {
		t.Fatalf("providers = %+v, want dr-roy added with two Monday periods", got)
	}
	edit := form("dr-lee", "45", "09:00-12:00")
	edit.Set("notice_minutes", "120")
	edit.Set("cutoff_hours", "24")
	wantRedirect(t, postForm(t, e.c, s, "/providers", edit))
	got, _ = e.c.Providers(t.Context())
	if len(got) != 3 || got[0].SlotMinutes != 45 || len(got[0].Hours["tue"]) != 0 ||
		got[0].Policy != (services.BookingPolicy{NoticeMinutes: 120, CutoffHours: 24}) {
		t.Errorf("dr-lee after edit = %+v, want 45-minute slots on Mondays only, 2 hours' notice, a day's cutoff", got[0])
	}
	// The booking rules: a number, within range, or empty for none.
	for field, v := range map[string]string{"notice_minutes": "soon", "grace_minutes": "100000"} {
		bad := form("dr-lee", "45", "09:00-12:00")
		bad.Set(field, v)
		if rec := postForm(t, e.c, s, "/providers", bad); rec.Code != http.StatusUnprocessableEntity ||
			!strings.Contains(rec.Body.String(), "<li>policy."+field+": ") {
			t.Errorf("%s=%s: status %d, want 422 naming policy.%s", field, v, rec.Code, field)
		}
	}
}

func TestPage_Headers(t *testing.T) {
	e := newEnv(t)
	rec := serve(e.c, e.admin, "GET", "/", "", "")
	for header, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'",
		"X-Frame-Options":         "DENY",
		"Cache-Control":           "no-store",
		"Content-Type":            "text/html",
	} {
		if got := rec.Header().Get(header); !strings.Contains(got, want) {
			t.Errorf("%s = %q, want it to contain %q", header, got, want)
		}
	}
	rec = httptest.NewRecorder()
	e.c.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1/console.css", nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/css") {
		t.Errorf("GET /console.css = %d %q, want 200 text/css", rec.Code, rec.Header().Get("Content-Type"))
	}
}

package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/agent/console/staff"
	"github.com/clinicrelay/clinicrelay/services"
)

// public are the routes served without a session.
var public = map[string]bool{
	"POST /api/session": true, "GET /signin": true, "POST /signin": true, "GET /console.css": true,
	"GET /console.js": true,
}

// Every route but signing in answers 401 (API) or sends to the sign-in page
// without a session, with a made-up one, and after signing out.
func TestAuth_EveryRouteNeedsASession(t *testing.T) {
	e := newEnv(t)
	e.mustStore(t, request(1, "dr-lee", at(3, 9, 0)))
	gone := signIn(t, e.c, "ana", staff.RoleFrontDesk)
	if rec := serve(e.c, gone, "DELETE", "/api/session", "", ""); rec.Code != http.StatusNoContent {
		t.Fatalf("sign out: %d", rec.Code)
	}
	routes := console.RoutesOf(e.c)
	if len(routes) < 15 {
		t.Fatalf("%d routes: the list is not the console's", len(routes))
	}
	for _, r := range routes {
		if public[r.Method+" "+r.Path] {
			continue
		}
		path := strings.ReplaceAll(r.Path, ":id", request(1, "dr-lee", at(3, 9, 0)).ID)
		for name, ck := range map[string]*http.Cookie{"none": nil, "made up": {Name: "console_session", Value: "x"},
			"signed out": gone} {
			rec := serve(e.c, ck, r.Method, path, "application/json", "{}")
			if strings.HasPrefix(path, "/api/") {
				if rec.Code != http.StatusUnauthorized {
					t.Errorf("%s %s, session %s: %d, want 401", r.Method, path, name, rec.Code)
				}
				continue
			}
			// A page POST without the CSRF form field is refused before that.
			if loc := rec.Header().Get("Location"); rec.Code != http.StatusSeeOther && rec.Code != http.StatusBadRequest ||
				rec.Code == http.StatusSeeOther && loc != "/signin" {
				t.Errorf("%s %s, session %s: %d to %q, want 303 to /signin", r.Method, path, name, rec.Code, loc)
			}
		}
	}
	if got, _ := e.c.Requests(t.Context(), console.StatusPending); len(got) != 1 {
		t.Fatalf("pending after the anonymous calls: %d, want the 1 stored", len(got))
	}
}

// A console with no user says how to add the first admin, and serves
// nothing else.
func TestAuth_NoUserYet(t *testing.T) {
	c, err := console.Open(console.Config{Path: filepath.Join(t.TempDir(), "console.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if rec := serve(c, nil, "GET", "/", "", ""); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/signin" {
		t.Fatalf("GET /: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	rec := serve(c, nil, "GET", "/signin", "", "")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "clinic-agent user add --data") {
		t.Fatalf("GET /signin with no user: %d, want the command that adds the first admin:\n%s", rec.Code, rec.Body)
	}
	if rec := serve(c, nil, "GET", "/api/requests", "", ""); rec.Code != http.StatusUnauthorized {
		t.Fatalf("API with no user: %d", rec.Code)
	}
}

func TestAuth_Cookie(t *testing.T) {
	e := newEnv(t)
	otp, _ := e.c.Staff().Add("ana", staff.RoleFrontDesk, nil)
	body, _ := json.Marshal(map[string]string{"name": "ana", "password": otp})
	rec := serve(e.c, nil, "POST", "/api/session", "application/json", string(body))
	ck := cookieNamed(t, rec, "console_session")
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Secure {
		t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP", ck)
	}
	if strings.Contains(rec.Body.String(), "argon2") || strings.Contains(rec.Body.String(), otp) {
		t.Fatalf("sign-in answer shows the hash or the password: %s", rec.Body)
	}
	// A form post from another site is refused without the form's token.
	if rec := serve(e.c, nil, "POST", "/api/session", "application/x-www-form-urlencoded", "name=ana&password=x"); rec.Code != http.StatusUnsupportedMediaType {
		t.Fatalf("form-encoded sign-in: %d, want 415", rec.Code)
	}
}

// One-time password: nothing but the password change until it is replaced.
func TestAuth_OneTimePassword(t *testing.T) {
	e := newEnv(t)
	otp, _ := e.c.Staff().Add("ana", staff.RoleFrontDesk, nil)
	ck := postSession(t, e.c, "ana", otp, http.StatusOK)
	if rec := serve(e.c, ck, "GET", "/", "", ""); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/password" {
		t.Fatalf("GET / with a one-time password: %d %q, want 303 to /password", rec.Code, rec.Header().Get("Location"))
	}
	if rec := serve(e.c, ck, "GET", "/api/requests", "", ""); rec.Code != http.StatusForbidden {
		t.Fatalf("API with a one-time password: %d, want 403", rec.Code)
	}
	// The page's form: the CSRF cookie and token from GET /password.
	rec := serve(e.c, ck, "GET", "/password", "", "")
	m := tokenRE.FindStringSubmatch(rec.Body.String())
	if rec.Code != http.StatusOK || m == nil || !strings.Contains(rec.Body.String(), "Choose your password") {
		t.Fatalf("GET /password: %d\n%s", rec.Code, rec.Body)
	}
	s := session{cookie: cookieNamed(t, rec, "_csrf"), token: m[1]}
	sessions.Store(e.c, ck)
	weak := postForm(t, e.c, s, "/password", url.Values{"current": {otp}, "new": {"password1234"}, "confirm": {"password1234"}})
	if weak.Code != http.StatusUnprocessableEntity || !strings.Contains(weak.Body.String(), "too common") {
		t.Fatalf("a common password: %d\n%s", weak.Code, weak.Body)
	}
	ok := postForm(t, e.c, s, "/password", url.Values{"current": {otp}, "new": {staffPassword}, "confirm": {staffPassword}})
	if ok.Code != http.StatusSeeOther || ok.Header().Get("Location") != "/" {
		t.Fatalf("new password: %d %q\n%s", ok.Code, ok.Header().Get("Location"), ok.Body)
	}
	next := cookieNamed(t, ok, "console_session")
	if rec := serve(e.c, next, "GET", "/api/requests", "", ""); rec.Code != http.StatusOK {
		t.Fatalf("after the change: %d", rec.Code)
	}
	if rec := serve(e.c, ck, "GET", "/api/requests", "", ""); rec.Code != http.StatusUnauthorized {
		t.Fatalf("the session from before the change: %d, want 401", rec.Code)
	}
}

// A front-desk user limited to one provider never sees or decides another
// provider's request, through any route.
func TestAuth_ProviderLimited(t *testing.T) {
	e := newEnv(t)
	lee, patel := request(1, "dr-lee", at(3, 9, 0)), request(2, "dr-patel", at(3, 10, 0))
	e.mustStore(t, lee)
	e.mustStore(t, patel)
	ck := signIn(t, e.c, "lee-desk", staff.RoleFrontDesk, "dr-lee")

	rec := serve(e.c, ck, "GET", "/api/requests", "", "")
	var list []console.Entry
	json.Unmarshal(rec.Body.Bytes(), &list)
	if rec.Code != http.StatusOK || len(list) != 1 || list[0].ID != lee.ID {
		t.Fatalf("GET /api/requests: %d %+v, want dr-lee's request only", rec.Code, list)
	}
	sessions.Store(e.c, ck)
	page, s := getPage(t, e.c)
	if strings.Contains(page, patel.Name) || strings.Contains(page, patel.Email) || !strings.Contains(page, lee.Name) {
		t.Fatal("the page shows dr-patel's patient, or not dr-lee's")
	}
	if strings.Contains(page, `action="/providers"`) {
		t.Fatal("a front-desk user is offered the providers' forms")
	}
	for path, body := range map[string]string{"confirm": "{}", "decline": `{"reason":"no"}`,
		"propose": `{"slot_id":"` + request(3, "dr-patel", at(4, 11, 0)).SlotID + `"}`} {
		if rec := serve(e.c, ck, "POST", "/api/requests/"+patel.ID+"/"+path, "application/json", body); rec.Code != http.StatusNotFound {
			t.Errorf("API %s dr-patel's request: %d, want 404", path, rec.Code)
		}
		form := url.Values{"reason": {"no"}, "slot_id": {request(3, "dr-lee", at(4, 11, 0)).SlotID}}
		if rec := postForm(t, e.c, s, "/requests/"+patel.ID+"/"+path, form); rec.Code != http.StatusNotFound {
			t.Errorf("page %s dr-patel's request: %d, want 404", path, rec.Code)
		}
	}
	// Nor may dr-lee's request be moved to dr-patel's time.
	body := `{"slot_id":"` + request(3, "dr-patel", at(4, 11, 0)).SlotID + `"}`
	if rec := serve(e.c, ck, "POST", "/api/requests/"+lee.ID+"/propose", "application/json", body); rec.Code != http.StatusUnprocessableEntity {
		t.Errorf("propose dr-patel's time: %d, want 422", rec.Code)
	}
	if rec := serve(e.c, ck, "PUT", "/api/providers", "application/json", "[]"); rec.Code != http.StatusForbidden {
		t.Errorf("PUT /api/providers as front desk: %d, want 403", rec.Code)
	}
	if got, _ := e.c.Requests(t.Context(), console.StatusPending); len(got) != 2 {
		t.Fatalf("pending: %d, want both untouched", len(got))
	}
	if p, _ := e.c.Providers(t.Context()); len(p) != 2 {
		t.Fatalf("providers: %d, want the two demo providers kept", len(p))
	}
	if rec := serve(e.c, ck, "POST", "/api/requests/"+lee.ID+"/confirm", "application/json", "{}"); rec.Code != http.StatusOK {
		t.Fatalf("confirm dr-lee's own request: %d %s", rec.Code, rec.Body)
	}
}

// Disabling a user ends its session at once; failed sign-ins end in 429.
func TestAuth_DisabledAndLocked(t *testing.T) {
	e := newEnv(t)
	ck := signIn(t, e.c, "ana", staff.RoleFrontDesk)
	if err := e.c.Staff().Disable("ana"); err != nil {
		t.Fatal(err)
	}
	if rec := serve(e.c, ck, "GET", "/api/requests", "", ""); rec.Code != http.StatusUnauthorized {
		t.Fatalf("disabled user's session: %d, want 401", rec.Code)
	}
	signIn(t, e.c, "bo", staff.RoleFrontDesk)
	var rec429 int
	for range 10 {
		body, _ := json.Marshal(map[string]string{"name": "bo", "password": "not the password"})
		rec := serve(e.c, nil, "POST", "/api/session", "application/json", string(body))
		if rec.Code == http.StatusTooManyRequests {
			if rec.Header().Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			rec429++
			break
		}
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d", rec.Code)
		}
	}
	if rec429 == 0 {
		t.Fatal("ten wrong passwords in a row and never a 429")
	}
}

// auditTrail is a services.Auditor that keeps what it is given, for the
// console's side of the relay's trail (integration/audit_test.go has the
// relay's).
type auditTrail struct {
	mu  sync.Mutex
	evs []services.AuditEvent
}

func (a *auditTrail) Audit(_ context.Context, ev services.AuditEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evs = append(a.evs, ev)
}

// Openings and decisions are recorded with the staff user, locally and for
// the relay; sign-ins and lists locally; none with patient data.
func TestAudit_StaffActions(t *testing.T) {
	e := newEnv(t)
	trail := &auditTrail{}
	e.c.SetAuditor(trail)
	lee, patel := request(1, "dr-lee", at(3, 9, 0)), request(2, "dr-patel", at(3, 10, 0))
	e.mustStore(t, lee)
	e.mustStore(t, patel)
	ck := signIn(t, e.c, "lee-desk", staff.RoleFrontDesk, "dr-lee")
	postSession(t, e.c, "lee-desk", "wrong password!", http.StatusUnauthorized)
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/api/requests", ""},
		{"GET", "/api/requests/" + lee.ID, ""},
		{"GET", "/api/requests/" + patel.ID, ""}, // another provider's: 404, not recorded
		{"POST", "/api/requests/" + lee.ID + "/confirm", "{}"},
	} {
		serve(e.c, ck, c.method, c.path, "application/json", c.body)
	}
	type ev struct{ action, user, request, detail string }
	var got []ev
	local, err := e.c.Audit(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for i := len(local) - 1; i >= 0; i-- {
		l := local[i]
		switch {
		case l.Action == console.AuditSignInRefused: // kept apart; the test's clock stands still, so no order
			if l.User != "lee-desk" || l.Detail != "from 192.0.2.1" {
				t.Errorf("refusal %+v", l)
			}
			refused++
		case l.User == "lee-desk":
			got = append(got, ev{l.Action, l.User, l.RequestID, l.Detail})
		}
	}
	if refused != 1 {
		t.Errorf("%d refusals recorded, want 1", refused)
	}
	want := []ev{
		{console.AuditSignedIn, "lee-desk", "", "from 192.0.2.1"},
		{console.AuditPasswordChanged, "lee-desk", "", "from 192.0.2.1"},
		{console.AuditRequestsListed, "lee-desk", "", "1 requests"},
		{services.AuditRequestViewed, "lee-desk", lee.ID, ""},
		{services.AuditRequestDecided, "lee-desk", lee.ID, "booked"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("local record:\n got %v\nwant %v", got, want)
	}
	trail.mu.Lock()
	defer trail.mu.Unlock()
	if len(trail.evs) != 2 || trail.evs[0].Action != services.AuditRequestViewed ||
		trail.evs[1].Action != services.AuditRequestDecided || trail.evs[1].User != "lee-desk" ||
		trail.evs[1].Clinic != "maple" || trail.evs[1].Actor != "staff" {
		t.Fatalf("sent to the relay: %+v, want the opening and the decision by lee-desk", trail.evs)
	}
	b, _ := json.Marshal(local)
	for _, phi := range []string{lee.Name, lee.Email, lee.BirthDate, "Check-up", patel.Name} {
		if strings.Contains(string(b), phi) {
			t.Fatalf("the audit record holds patient data %q", phi)
		}
	}
	if rec := serve(e.c, ck, "GET", "/api/audit", "", ""); rec.Code != http.StatusForbidden {
		t.Fatalf("GET /api/audit as front desk: %d, want 403", rec.Code)
	}
	var evs []services.AuditEvent
	rec := serve(e.c, e.admin, "GET", "/api/audit?limit=3", "", "")
	if json.Unmarshal(rec.Body.Bytes(), &evs); rec.Code != http.StatusOK || len(evs) != 3 || evs[0].Action != services.AuditRequestDecided {
		t.Fatalf("GET /api/audit?limit=3 as admin: %d %+v, want the 3 newest", rec.Code, evs)
	}
}

// What the page's script asks by itself (X-Console-Live) does not renew
// the session: a page left open still signs its user out when idle.
func TestAuth_LiveRequestsDoNotRenew(t *testing.T) {
	e := newEnv(t)
	ck := signIn(t, e.c, "ana", staff.RoleFrontDesk)
	live := func(path string) int {
		req := httptest.NewRequest("GET", "http://127.0.0.1"+path, nil)
		req.Header.Set("X-Console-Live", "1")
		req.AddCookie(ck)
		rec := httptest.NewRecorder()
		e.c.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	e.clock.Set(at(3, 8, 0).Add(staff.DefaultIdleTimeout - time.Second))
	if code := live("/api/session"); code != http.StatusOK {
		t.Fatalf("live request within the idle timeout: %d", code)
	}
	e.clock.Set(at(3, 8, 0).Add(staff.DefaultIdleTimeout + time.Second))
	if code := live("/api/session"); code != http.StatusUnauthorized {
		t.Fatalf("live request past the idle timeout: %d, want 401", code)
	}
}

// A form posted from another port of this host or a sibling host (same
// site, not same origin), which could set the CSRF cookie itself, is refused.
func TestAuth_SameSiteFormRefused(t *testing.T) {
	e := newEnv(t)
	e.mustStore(t, request(1, "dr-lee", at(3, 9, 0)))
	form := url.Values{"_csrf": {"planted"}}
	req := httptest.NewRequest("POST", "http://127.0.0.1/requests/"+request(1, "dr-lee", at(3, 9, 0)).ID+"/confirm",
		strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-site")
	req.AddCookie(&http.Cookie{Name: "_csrf", Value: "planted"})
	req.AddCookie(e.admin)
	rec := httptest.NewRecorder()
	e.c.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("same-site form with a planted token: %d, want 403", rec.Code)
	}
	if got, _ := e.c.Requests(t.Context(), console.StatusPending); len(got) != 1 {
		t.Fatal("the forged confirm went through")
	}
}

// Refused sign-ins are kept apart, never pushing staff events out, and a
// name is kept only when a user has it (a password typed there is not).
func TestAudit_Refusals(t *testing.T) {
	e := newEnv(t)
	postSession(t, e.c, "maple-river-sunrise", "x", http.StatusUnauthorized) // a passphrase in the name field
	postSession(t, e.c, "desk-admin", "wrong password!", http.StatusUnauthorized)
	evs, _ := e.c.Audit(t.Context(), 100)
	var names []string
	for _, ev := range evs {
		if ev.Action == console.AuditSignInRefused {
			names = append(names, ev.User)
		}
		if strings.Contains(ev.User+ev.Detail, "maple-river") {
			t.Fatalf("the name typed is recorded: %+v", ev)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"", "desk-admin"}) {
		t.Fatalf("refusals name %q, want the user's name and nothing for the stranger", names)
	}
}

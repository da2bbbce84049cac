package console_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/clinicrelay/clinicrelay/agent/console/staff"
)

// Admins manage users at the console; front-desk users cannot.
func TestUsers_AdminManages(t *testing.T) {
	e := newEnv(t)
	rec := serve(e.c, e.admin, "POST", "/api/users", "application/json", `{"name":"ana","role":"frontdesk","providers":["dr-lee"]}`)
	var made map[string]string
	json.Unmarshal(rec.Body.Bytes(), &made)
	if rec.Code != http.StatusCreated || made["one_time_password"] == "" {
		t.Fatalf("add: %d %s", rec.Code, rec.Body)
	}
	ana := postSession(t, e.c, "ana", made["one_time_password"], http.StatusOK)
	if u, _ := e.c.Staff().Get("ana"); u.Role != staff.RoleFrontDesk || len(u.Providers) != 1 || !u.MustChange {
		t.Fatalf("ana: %+v", u)
	}
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/api/users", ""}, {"POST", "/api/users", `{"name":"eve","role":"admin"}`},
		{"POST", "/api/users/desk-admin/disable", "{}"},
	} {
		if rec := serve(e.c, ana, r.method, r.path, "application/json", r.body); rec.Code != http.StatusForbidden {
			t.Errorf("%s %s as front desk: %d, want 403", r.method, r.path, rec.Code)
		}
	}
	if _, err := e.c.Staff().Get("eve"); err == nil {
		t.Fatal("a front-desk user added an admin")
	}

	rec = serve(e.c, e.admin, "POST", "/api/users/ana/reset", "application/json", "{}")
	var reset map[string]string
	json.Unmarshal(rec.Body.Bytes(), &reset)
	if rec.Code != http.StatusOK || reset["one_time_password"] == "" || reset["one_time_password"] == made["one_time_password"] {
		t.Fatalf("reset: %d %s", rec.Code, rec.Body)
	}
	postSession(t, e.c, "ana", made["one_time_password"], http.StatusUnauthorized)
	if rec := serve(e.c, e.admin, "POST", "/api/users/desk-admin/disable", "application/json", "{}"); rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("an admin disabling themselves: %d", rec.Code)
	}
	if rec := serve(e.c, e.admin, "POST", "/api/users/ana/disable", "application/json", "{}"); rec.Code != http.StatusNoContent {
		t.Fatalf("disable ana: %d", rec.Code)
	}
	postSession(t, e.c, "ana", reset["one_time_password"], http.StatusUnauthorized)
	if rec := serve(e.c, e.admin, "POST", "/api/users/ana/promote", "application/json", "{}"); rec.Code != http.StatusNotFound {
		t.Fatalf("an unknown action: %d", rec.Code)
	}
	if rec := serve(e.c, e.admin, "POST", "/api/users", "application/json", `{"name":"Bad Name","role":"frontdesk"}`); rec.Code != http.StatusUnprocessableEntity || !strings.Contains(rec.Body.String(), `"name"`) {
		t.Fatalf("a bad name: %d %s", rec.Code, rec.Body)
	}

	evs, _ := e.c.Audit(t.Context(), 20)
	var got []string
	for _, ev := range evs {
		if strings.HasPrefix(ev.Action, "user-") {
			got = append(got, ev.User+" "+ev.Action+" "+ev.Detail)
		}
	}
	want := "desk-admin user-disabled ana|desk-admin user-reset ana|desk-admin user-added ana"
	if strings.Join(got, "|") != want {
		t.Fatalf("recorded %q, want %q", strings.Join(got, "|"), want)
	}
}

// The users page adds a user and shows the one-time password once.
func TestUsers_Page(t *testing.T) {
	e := newEnv(t)
	rec := serve(e.c, e.admin, "GET", "/users", "", "")
	m := tokenRE.FindStringSubmatch(rec.Body.String())
	if rec.Code != http.StatusOK || m == nil || !strings.Contains(rec.Body.String(), "desk-admin") {
		t.Fatalf("GET /users: %d\n%s", rec.Code, rec.Body)
	}
	s := session{cookie: cookieNamed(t, rec, "_csrf"), token: m[1]}
	add := postForm(t, e.c, s, "/users", url.Values{"name": {"bo"}, "role": {"frontdesk"}, "providers": {"dr-patel"}})
	otp := regexp1(t, add.Body.String(), `<code class="secret">([^<]+)</code>`)
	if add.Code != http.StatusOK || otp == "" {
		t.Fatalf("add from the page: %d\n%s", add.Code, add.Body)
	}
	postSession(t, e.c, "bo", otp, http.StatusOK)
	if again := serve(e.c, e.admin, "GET", "/users", "", ""); strings.Contains(again.Body.String(), otp) {
		t.Fatal("the one-time password is shown again")
	}
	ck := signIn(t, e.c, "cy", staff.RoleFrontDesk)
	if rec := serve(e.c, ck, "GET", "/users", "", ""); rec.Code != http.StatusForbidden {
		t.Fatalf("GET /users as front desk: %d, want 403", rec.Code)
	}
	if page, _ := getPage(t, e.c); !strings.Contains(page, `href="/users"`) {
		t.Fatal("the admin's page has no link to the users")
	}
}

// regexp1 is the first group of re in s, or "".
func regexp1(t *testing.T, s, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return m[1]
}

package console_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/agent/console/staff"
)

// staffPassword is every test user's own password, once set.
const staffPassword = "maple front desk 2026"

// sessions holds the session cookie of each test console's admin, which
// call, getPage and postForm send (see env.open).
var sessions sync.Map // *console.Console → *http.Cookie

func sessionOf(c *console.Console) *http.Cookie {
	ck, _ := sessions.Load(c)
	ck2, _ := ck.(*http.Cookie)
	return ck2
}

// signIn adds the user name to c with role, signs in with its one-time
// password over the API, sets staffPassword and returns the session cookie.
func signIn(t *testing.T, c *console.Console, name string, role staff.Role, providers ...string) *http.Cookie {
	t.Helper()
	otp, err := c.Staff().Add(name, role, providers)
	if err != nil {
		t.Fatalf("add %s: %v", name, err)
	}
	ck := postSession(t, c, name, otp, http.StatusOK)
	body, _ := json.Marshal(map[string]string{"current": otp, "new": staffPassword})
	rec := serve(c, ck, "POST", "/api/password", "application/json", string(body))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("%s sets a password: %d %s", name, rec.Code, rec.Body)
	}
	return cookieNamed(t, rec, "console_session")
}

// postSession posts a sign-in and returns its session cookie (nil unless
// want is 200).
func postSession(t *testing.T, c *console.Console, name, password string, want int) *http.Cookie {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"name": name, "password": password})
	rec := serve(c, nil, "POST", "/api/session", "application/json", string(body))
	if rec.Code != want {
		t.Fatalf("sign in %s: %d %s, want %d", name, rec.Code, rec.Body, want)
	}
	if want != http.StatusOK {
		return nil
	}
	return cookieNamed(t, rec, "console_session")
}

// serve sends one request to c with the session cookie ck (nil: none).
func serve(c *console.Console, ck *http.Cookie, method, path, contentType, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://127.0.0.1"+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if ck != nil {
		req.AddCookie(ck)
	}
	rec := httptest.NewRecorder()
	c.Handler().ServeHTTP(rec, req)
	return rec
}

func cookieNamed(t *testing.T, rec *httptest.ResponseRecorder, name string) *http.Cookie {
	t.Helper()
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == name && ck.Value != "" {
			return ck
		}
	}
	t.Fatalf("no %s cookie in %v", name, rec.Result().Cookies())
	return nil
}

package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp/kb"

	"github.com/clinicrelay/clinicrelay/agent/console/staff"
)

// TestBrowser_Console is a receptionist's first morning, with the keyboard
// alone: sign in with the one-time password the admin gave, choose a
// password, watch a patient's request arrive without a reload (the title,
// the status line), open it, confirm it, sign out. axe-core checks every page.
func TestBrowser_Console(t *testing.T) {
	env := NewEnv(t)
	ag := env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	slot := firstSlot(t, web, "maple")
	otp, err := ag.Console.Staff().Add("ana", staff.RoleFrontDesk, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := NewBrowser(t, ag.HTTP.URL)

	b.Open("/")
	if b.Path() != "/signin" {
		t.Fatalf("the front desk without a session is at %s, want /signin", b.Path())
	}
	b.Axe("console sign-in")
	b.Shot("console-signin")
	b.Fill("name", "ana")
	b.Fill("password", otp)
	b.Press(kb.Enter, `location.pathname === "/password"`)
	b.Axe("console password")
	b.Shot("console-password")
	for _, f := range []struct{ id, text string }{{"current", otp}, {"new", deskPassword}, {"confirm", deskPassword}} {
		b.TabTo(`el.id === "` + f.id + `"`)
		b.Type(f.text)
	}
	b.Press(kb.Enter, `location.pathname === "/" && document.getElementById("lists")`)
	b.Axe("console list (empty)")
	b.Shot("console-empty")

	// A patient books: the open page says so by itself.
	var created map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/maple/requests", validRequest(slot), &created); code != 201 {
		t.Fatalf("create: %d", code)
	}
	start := time.Now()
	b.AwaitJS(`document.title.startsWith("(1) ") && document.getElementById("live-status").textContent.includes("new request")
		&& document.getElementById("lists").textContent.includes("Ada Patient")`, 15*time.Second)
	t.Logf("request sent → on the open front-desk page: %s", time.Since(start))
	b.Axe("console list (one pending)")
	b.Shot("console-pending")

	b.TabTo(`el.getAttribute("href") === "/requests/` + created["id"] + `"`)
	b.Press(kb.Enter, `location.pathname === "/requests/`+created["id"]+`"`)
	if got := b.Eval(`document.querySelector("dl.details").textContent`); !contains(got, "sore knee", "ada@example.org", "1980-04-02") {
		t.Fatalf("the request's page shows %q", got)
	}
	b.Axe("console request")
	b.Shot("console-request")
	b.TabTo(`el.type === "submit" && el.textContent === "Confirm"`)
	b.Press(kb.Enter, `location.pathname === "/" && document.getElementById("lists").textContent.includes("No pending requests")`)
	awaitState(t, web, created["token"], "booked")

	b.TabTo(`el.type === "submit" && el.textContent === "Sign out"`)
	b.Press(kb.Enter, `location.pathname === "/signin"`)
	b.Open("/")
	if b.Path() != "/signin" {
		t.Fatalf("after signing out, / is %s", b.Path())
	}

	// The admin's users page.
	if err := ag.Console.Staff().Put("boss", staff.RoleAdmin, nil, deskPassword); err != nil {
		t.Fatal(err)
	}
	b.Fill("name", "boss")
	b.Fill("password", deskPassword)
	b.Press(kb.Enter, `location.pathname === "/"`)
	b.Open("/users")
	b.Axe("console users")
	b.Shot("console-users")
}

// contains reports whether s holds every one of subs.
func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

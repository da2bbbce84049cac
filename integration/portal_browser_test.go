package integration

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp/kb"

	"github.com/clinicrelay/clinicrelay/agent/console/staff"
	"github.com/clinicrelay/clinicrelay/internal/mail/mailtest"
)

// TestBrowser_Portal is a patient's first visit to the portal, by keyboard
// alone and in French: ask for a link, open it from the email, set a
// password, see the portal, sign out, sign in again. axe-core checks every
// page, in both languages.
func TestBrowser_Portal(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	env := notifyEnv(t, t.TempDir(), smtp, nil)
	env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	knownPatient(t, web, "maple")
	b := NewBrowser(t, env.Relay.HTTPURL())

	b.Open("/c/maple/portal?lang=en")
	b.Axe("portal (signed out, en)")
	b.Open("/c/maple/portal?lang=fr")
	b.Axe("portal (signed out, fr)")
	b.Shot("portal-signed-out")

	// A wrong sign-in says so, keeps the email, and is axe-clean.
	b.Fill("login-email", "ada@example.org")
	b.Fill("login-password", "not my phrase at all")
	b.Press(kb.Enter, `document.querySelector("p.error") !== null`)
	if got := b.Eval(`document.querySelector("p.error").textContent`); got != "E-mail ou mot de passe incorrect." {
		t.Fatalf("wrong sign-in says %q", got)
	}
	if got := b.Eval(`document.getElementById("login-email").value`); got != "ada@example.org" {
		t.Fatalf("the email typed is gone: %q", got)
	}
	b.Axe("portal (wrong password, fr)")

	b.Fill("register-email", "ada@example.org")
	b.Press(kb.Enter, `document.querySelector("p.notice") !== null`)
	b.Axe("portal (link asked, fr)")
	link := awaitPortalLink(t, smtp, "ada@example.org", 1)

	b.Open("/c/maple/portal/link/" + link)
	b.Axe("portal link (fr)")
	b.Shot("portal-link")
	b.Fill("password", "short")
	b.Press(kb.Enter, `document.querySelector("p.field-error") !== null`)
	b.Axe("portal link (short password, fr)")
	b.Fill("password", "mon genou va mieux")
	b.Press(kb.Enter, `location.pathname === "/c/maple/portal" && document.getElementById("list") !== null`)
	b.Axe("portal (signed in, fr)")
	b.Shot("portal-signed-in")

	b.TabTo(`el.type === "submit" && el.name === "" && el.closest("form").action.endsWith("/logout")`)
	b.Press(kb.Enter, `document.getElementById("login-email") !== null`)
	b.Open("/c/maple/portal?lang=en")
	b.Fill("login-email", "ada@example.org")
	b.Fill("login-password", "mon genou va mieux")
	b.Press(kb.Enter, `document.getElementById("list") !== null`)
	b.Axe("portal (signed in, en)")

}

// TestBrowser_PortalGrant is the second way in, by keyboard: the front desk
// gives a patient portal access from the request's page, and the patient
// signs in with the temporary password and must choose their own first.
func TestBrowser_PortalGrant(t *testing.T) {
	env := NewEnv(t) // no email: the portal says to ask the clinic
	ag := env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	first := knownPatient(t, web, "maple")
	if err := ag.Console.Staff().Put("desk-admin", staff.RoleAdmin, nil, deskPassword); err != nil {
		t.Fatal(err)
	}

	desk := NewBrowser(t, ag.HTTP.URL)
	desk.Open("/signin")
	desk.Fill("name", "desk-admin")
	desk.Fill("password", deskPassword)
	desk.Press(kb.Enter, `location.pathname === "/"`)
	desk.Open("/requests/" + first["id"])
	desk.TabTo(`el.type === "submit" && el.textContent === "Give portal access"`)
	desk.Press(kb.Enter, `document.getElementById("temp-password") !== null`)
	desk.Axe("console request (portal access given)")
	desk.Shot("console-portal-access")
	temp := desk.Eval(`document.getElementById("temp-password").textContent`)

	b := NewBrowser(t, env.Relay.HTTPURL())
	b.Open("/c/maple/portal?lang=en")
	if got := b.Eval(`document.getElementById("main").textContent`); !strings.Contains(got, "ask Clinic maple for a temporary password") {
		t.Fatalf("a portal that cannot email links says %q", got)
	}
	b.Axe("portal (no email, en)")
	b.Fill("login-email", "ada@example.org")
	b.Fill("login-password", temp)
	b.Press(kb.Enter, `document.getElementById("password-current_password") !== null`)
	if b.Eval(`String(document.getElementById("list") === null)`) != "true" {
		t.Fatal("the portal shows the list before the temporary password is replaced")
	}
	b.Axe("portal (temporary password, en)")
	b.Fill("password-current_password", temp)
	b.Fill("password-new_password", "my own knee phrase")
	b.Press(kb.Enter, `document.getElementById("list") !== null && document.querySelector("p.notice") !== null`)
	b.Axe("portal (own password set, en)")

	// Now the patient has a password of their own: the desk is told, and
	// offered a reset for a patient it has identified.
	desk.Open("/requests/" + first["id"])
	desk.TabTo(`el.type === "submit" && el.textContent === "Give portal access"`)
	desk.Press(kb.Enter, `document.querySelector("div.error") !== null`)
	if got := desk.Eval(`document.querySelector("div.error").textContent`); !strings.Contains(got, "already has a portal account") {
		t.Fatalf("access over the patient's own password says %q", got)
	}
	desk.Axe("console request (the patient has an account)")
	desk.TabTo(`el.type === "submit" && el.textContent === "Reset their portal password"`)
	desk.Press(kb.Enter, `document.getElementById("temp-password") !== null`)
}

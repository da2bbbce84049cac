package integration

import (
	"testing"

	"github.com/chromedp/chromedp/kb"

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
	var first map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/maple/requests", requestAs(firstSlot(t, web, "maple"), "ada@example.org", "416 555 0100"), &first); code != 201 {
		t.Fatalf("create: %d", code)
	}
	awaitState(t, web, first["token"], "delivered")
	b := NewBrowser(t, env.Relay.HTTPURL())

	b.Open("/c/maple/portal?lang=en")
	b.Axe("portal (signed out, en)")
	b.Open("/c/maple/portal?lang=fr")
	b.Axe("portal (signed out, fr)")
	b.Shot("portal-signed-out")

	// A wrong sign-in says so, keeps the email, and is axe-clean.
	b.TabTo(`el.id === "login-email"`)
	b.Type("ada@example.org")
	b.TabTo(`el.id === "login-password"`)
	b.Type("not my phrase at all")
	b.Press(kb.Enter, `document.querySelector("p.error") !== null`)
	if got := b.Eval(`document.querySelector("p.error").textContent`); got != "E-mail ou mot de passe incorrect." {
		t.Fatalf("wrong sign-in says %q", got)
	}
	if got := b.Eval(`document.getElementById("login-email").value`); got != "ada@example.org" {
		t.Fatalf("the email typed is gone: %q", got)
	}
	b.Axe("portal (wrong password, fr)")

	b.TabTo(`el.id === "register-email"`)
	b.Type("ada@example.org")
	b.Press(kb.Enter, `document.querySelector("p.notice") !== null`)
	b.Axe("portal (link asked, fr)")
	link := awaitPortalLink(t, smtp, "ada@example.org", 1)

	b.Open("/c/maple/portal/link/" + link)
	b.Axe("portal link (fr)")
	b.Shot("portal-link")
	b.TabTo(`el.id === "password"`)
	b.Type("short")
	b.Press(kb.Enter, `document.querySelector("p.field-error") !== null`)
	b.Axe("portal link (short password, fr)")
	b.TabTo(`el.id === "password"`)
	b.Type("mon genou va mieux")
	b.Press(kb.Enter, `location.pathname === "/c/maple/portal" && document.getElementById("list") !== null`)
	b.Axe("portal (signed in, fr)")
	b.Shot("portal-signed-in")

	b.TabTo(`el.type === "submit" && el.name === "" && el.closest("form").action.endsWith("/logout")`)
	b.Press(kb.Enter, `document.getElementById("login-email") !== null`)
	b.Open("/c/maple/portal?lang=en")
	b.TabTo(`el.id === "login-email"`)
	b.Type("ada@example.org")
	b.TabTo(`el.id === "login-password"`)
	b.Type("mon genou va mieux")
	b.Press(kb.Enter, `document.getElementById("list") !== null`)
	b.Axe("portal (signed in, en)")
}

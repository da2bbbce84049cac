package integration

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/console/staff"
	"github.com/clinicrelay/clinicrelay/internal/mail/mailtest"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/jetstream/portal"
	"github.com/clinicrelay/clinicrelay/relay"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
	"github.com/clinicrelay/clinicrelay/web"
)

var portalLinkRE = regexp.MustCompile(`/c/([a-z0-9-]+)/portal/link/([a-z0-9-]+_[0-9a-f]{32})`)

// portalLinks are the set-password links mailed to each address so far.
func portalLinks(t *testing.T, smtp *mailtest.Server) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, m := range smtp.Messages() {
		e := readEmail(t, m)
		for _, l := range portalLinkRE.FindAllStringSubmatch(e.text, -1) {
			out[e.to] = append(out[e.to], l[2])
		}
	}
	return out
}

// awaitPortalLink waits for the nth link mailed to addr and returns its token.
func awaitPortalLink(t *testing.T, smtp *mailtest.Server, addr string, n int) string {
	t.Helper()
	var token string
	poll.For(t, 15*time.Second, func() error {
		got := portalLinks(t, smtp)[addr]
		if len(got) < n {
			return fmt.Errorf("%d portal links to %s, want %d", len(got), addr, n)
		}
		token = got[n-1]
		return nil
	})
	return token
}

// knownPatient sends ada's request to clinic, so that the clinic's records
// hold her address, and returns it once the clinic has it.
func knownPatient(t *testing.T, web *Client, clinic string) map[string]string {
	t.Helper()
	var req map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/"+clinic+"/requests", requestAs(firstSlot(t, web, clinic), "ada@example.org", "416 555 0100"), &req); code != 201 {
		t.Fatalf("create: %d %v", code, req)
	}
	awaitState(t, web, req["token"], "delivered")
	return req
}

// registered registers ada at maple by the email link, with the password
// "my own knee phrase", on c.
func registered(t *testing.T, c *Client, smtp *mailtest.Server) {
	t.Helper()
	if code := c.JSON("POST", "/api/v1/clinics/maple/portal/register", map[string]string{"email": "ada@example.org"}, nil); code != 202 {
		t.Fatalf("register: %d", code)
	}
	link := awaitPortalLink(t, smtp, "ada@example.org", 1)
	if code := c.JSON("POST", "/api/v1/clinics/maple/portal/password", map[string]string{"token": link, "password": "my own knee phrase"}, nil); code != 200 {
		t.Fatalf("set password: %d", code)
	}
}

type portalAppointments struct {
	Appointments []struct {
		ID        string `json:"id"`
		Status    string `json:"status"`
		StatusURL string `json:"status_url"`
		Provider  string `json:"provider"`
	} `json:"appointments"`
}

// TestPortal_EmailMethod: a patient the clinic knows (a request of theirs is
// in the console) registers, gets a link by email, sets a password, books
// signed in (the front desk sees a verified portal patient) and sees the
// booking in the portal; a stranger gets the same answer and no email; a
// session ends on sign-out everywhere.
func TestPortal_EmailMethod(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	env := notifyEnv(t, t.TempDir(), smtp, nil)
	ag := env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	env.MustStartAgent(env.MustAddClinic("oak"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	desk := ag.Desk(t)

	// The clinic knows ada from an earlier request.
	first := knownPatient(t, web, "maple")
	// Booked by the front desk: the clinic stands behind these details
	// (a pending request's, anyone could have typed, fill no form).
	if code := desk.JSON("POST", "/api/requests/"+first["id"]+"/confirm", nil, nil); code != 200 {
		t.Fatalf("confirm: %d", code)
	}
	awaitState(t, web, first["token"], "booked")

	patient := newClient(t, env.Relay.HTTPURL())
	var ans map[string]string
	for _, who := range []string{"ada@example.org", "stranger@example.org"} {
		if code := patient.JSON("POST", "/api/v1/clinics/maple/portal/register", map[string]string{"email": who}, &ans); code != 202 ||
			!strings.Contains(ans["message"], "if the clinic has this address") {
			t.Fatalf("register %s: %d %v", who, code, ans)
		}
	}
	// Oak does not know ada: no link from oak.
	if code := patient.JSON("POST", "/api/v1/clinics/oak/portal/register", map[string]string{"email": "ada@example.org"}, nil); code != 202 {
		t.Fatalf("register at oak: %d", code)
	}
	link := awaitPortalLink(t, smtp, "ada@example.org", 1)
	if !strings.HasPrefix(link, "maple_") {
		t.Fatalf("link %s is not maple's", link)
	}
	poll.Still(t, 2*time.Second, func() error {
		got := portalLinks(t, smtp)
		if len(got["stranger@example.org"]) > 0 || len(got["ada@example.org"]) != 1 {
			return fmt.Errorf("links mailed: %v; want one, to ada, from maple", got)
		}
		return nil
	})

	// Without a session, nothing.
	if code := patient.JSON("GET", "/api/v1/clinics/maple/portal/appointments", nil, nil); code != 401 {
		t.Fatalf("appointments before sign-in: %d, want 401", code)
	}
	var in map[string]any
	if code := patient.JSON("POST", "/api/v1/clinics/maple/portal/password", map[string]string{"token": link, "password": "short"}, &in); code != 422 {
		t.Fatalf("a short password: %d %v, want 422", code, in)
	}
	if code := patient.JSON("POST", "/api/v1/clinics/maple/portal/password", map[string]string{"token": link, "password": "my own knee phrase"}, &in); code != 200 {
		t.Fatalf("set password: %d %v", code, in)
	}
	if code := patient.JSON("POST", "/api/v1/clinics/maple/portal/password", map[string]string{"token": link, "password": "another knee phrase"}, nil); code != 401 {
		t.Fatalf("the link a second time: %d, want 401", code)
	}
	// The booking form comes filled with what the clinic has: asked, sealed
	// to the session's key, when the session began.
	formSlot := firstSlot(t, web, "maple")
	poll.For(t, 10*time.Second, func() error {
		code, _, body := patient.Do("GET", "/c/maple/request?slot="+formSlot, "", nil)
		if code != 200 || !strings.Contains(body, `value="Ada Patient"`) || !strings.Contains(body, `value="1980-04-02"`) ||
			!strings.Contains(body, `value="ada@example.org"`) || !strings.Contains(body, `value="existing" checked`) {
			return fmt.Errorf("the signed-in patient's form: %d, not filled from the clinic's file", code)
		}
		return nil
	})
	if code, _, body := web.Do("GET", "/c/maple/request?slot="+formSlot, "", nil); code != 200 || strings.Contains(body, "Ada Patient") {
		t.Fatalf("the form of someone not signed in: %d, holds the patient's name", code)
	}
	// The session is maple's: oak's portal does not know it.
	if code := patient.JSON("GET", "/api/v1/clinics/oak/portal/appointments", nil, nil); code != 401 {
		t.Fatalf("oak's appointments with maple's session: %d, want 401", code)
	}

	// Booked signed in: listed in the portal, verified at the front desk.
	var booked map[string]string
	if code := patient.JSON("POST", "/api/v1/clinics/maple/requests", requestAs(firstSlot(t, web, "maple"), "ada@example.org", "416 555 0100"), &booked); code != 201 {
		t.Fatalf("create signed in: %d %v", code, booked)
	}
	awaitState(t, web, booked["token"], "delivered")
	var list portalAppointments
	if code := patient.JSON("GET", "/api/v1/clinics/maple/portal/appointments", nil, &list); code != 200 ||
		len(list.Appointments) != 1 || list.Appointments[0].ID != booked["id"] || list.Appointments[0].Status != "delivered" ||
		list.Appointments[0].StatusURL != "/r/"+booked["token"] || list.Appointments[0].Provider == "" {
		t.Fatalf("appointments: %d %+v, want the request sent signed in", code, list)
	}
	if code, _, page := patient.Do("GET", "/c/maple/portal", "", nil); code != 200 || !strings.Contains(page, `id="upcoming"`) ||
		!strings.Contains(page, `href="/r/`+booked["token"]+`"`) {
		t.Fatalf("the portal page: %d, want the request under Upcoming with its status page", code)
	}
	var detail map[string]any
	if code := desk.JSON("GET", "/api/requests/"+booked["id"], nil, &detail); code != 200 || detail["portal_verified"] != true {
		t.Fatalf("front desk: %d %v, want portal_verified", code, detail)
	}
	var earlier map[string]any
	if code := desk.JSON("GET", "/api/requests/"+first["id"], nil, &earlier); code != 200 || earlier["portal_verified"] != nil {
		t.Fatalf("front desk, the request sent without the portal: %d %v, want not verified", code, earlier)
	}

	// Signed in elsewhere too; "everywhere" ends both.
	phone := newClient(t, env.Relay.HTTPURL())
	if code := phone.JSON("POST", "/api/v1/clinics/maple/portal/login", map[string]string{"email": "ada@example.org", "password": "my own knee phrase"}, nil); code != 200 {
		t.Fatalf("second sign-in: %d", code)
	}
	if code := patient.JSON("POST", "/api/v1/clinics/maple/portal/logout", map[string]bool{"everywhere": true}, nil); code != 204 {
		t.Fatalf("logout everywhere: %d", code)
	}
	for name, c := range map[string]*Client{"this device": patient, "the other": phone} {
		if code := c.JSON("GET", "/api/v1/clinics/maple/portal/appointments", nil, nil); code != 401 {
			t.Errorf("%s after sign-out everywhere: %d, want 401", name, code)
		}
	}
}

// TestPortal_Lockout: ten wrong passwords lock an account for 30 minutes,
// and an email with no account locks the same way: the answers say nothing
// of who has an account.
func TestPortal_Lockout(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	// Room for 23 tries from one address: the lockout, not the address's
	// budget (web.DefaultPortalIP), is under test.
	env := notifyEnv(t, t.TempDir(), smtp, nil, func(c *relay.Config) {
		c.Abuse.Limits.PortalIP = web.Rate{Every: time.Second, Burst: 30}
	})
	env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	knownPatient(t, web, "maple")
	registered(t, web, smtp)
	for _, email := range []string{"ada@example.org", "nobody@example.org"} {
		c := newClient(t, env.Relay.HTTPURL())
		for i := 1; i <= services.PortalLockAfter; i++ {
			var e map[string]any
			if code := c.JSON("POST", "/api/v1/clinics/maple/portal/login", map[string]string{"email": email, "password": "not my phrase at all"}, &e); code != 401 ||
				e["error"] != "wrong email or password" {
				t.Fatalf("%s try %d: %d %v, want 401", email, i, code, e)
			}
		}
		code, hdr, body := c.Do("POST", "/api/v1/clinics/maple/portal/login", "application/json",
			strings.NewReader(`{"email":"`+email+`","password":"my own knee phrase"}`))
		if wait, _ := strconv.Atoi(hdr.Get("Retry-After")); code != 429 || wait < 1790 || wait > 1801 {
			t.Fatalf("%s locked, the right password: %d %q %s, want 429 with Retry-After about 1800", email, code, hdr.Get("Retry-After"), body)
		}
	}
}

// TestPortal_OtherClinicsAnswer: another clinic that learns one of maple's
// check IDs and answers "yes" to it sends no link and spoils nothing:
// the relay reads the answer under the answering clinic only, and maple's
// own answer still sends the link.
func TestPortal_OtherClinicsAnswer(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	env := notifyEnv(t, t.TempDir(), smtp, nil)
	maple := env.MustAddClinic("maple")
	ag := env.MustStartAgent(maple, nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	knownPatient(t, web, "maple")
	ag.Stop() // maple's check waits in its queue

	if code := web.JSON("POST", "/api/v1/clinics/maple/portal/register", map[string]string{"email": "ada@example.org"}, nil); code != 202 {
		t.Fatal(code)
	}
	stream, err := env.Admin.JS.Stream(t.Context(), subjects.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(t.Context(), subjects.PortalCheck("maple"))
	if err != nil {
		t.Fatal(err)
	}
	check := m.Header.Get(subjects.HeaderRequestID)
	nc := agentConn(t, env, env.MustAddClinic("cedar"), &violations{})
	if err := portal.SendAnswer(t.Context(), nc, "cedar", portal.Answer{Check: check, Known: true}); err != nil {
		t.Fatalf("cedar's answer: %v", err)
	}
	poll.Still(t, time.Second, func() error {
		if got := portalLinks(t, smtp); len(got) > 0 {
			return fmt.Errorf("links mailed on cedar's answer: %v", got)
		}
		return nil
	})
	env.MustStartAgent(maple, nil, ag.Console)
	awaitPortalLink(t, smtp, "ada@example.org", 1)
}

// TestPortal_SessionExpiry: a session used within 30 minutes lives on; one
// left 30 minutes ends, on the relay's clock.
func TestPortal_SessionExpiry(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	var offset atomic.Int64
	env := notifyEnv(t, t.TempDir(), smtp, nil, func(c *relay.Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	knownPatient(t, web, "maple")
	registered(t, web, smtp)
	for i, step := range []struct {
		after time.Duration
		want  int
	}{{29 * time.Minute, 200}, {29 * time.Minute, 200}, {31 * time.Minute, 401}} {
		offset.Add(int64(step.after))
		if code := web.JSON("GET", "/api/v1/clinics/maple/portal/appointments", nil, nil); code != step.want {
			t.Fatalf("step %d, %v later: %d, want %d", i, step.after, code, step.want)
		}
	}
}

// TestPortal_TemporaryPassword: the front desk gives a patient portal
// access from the request's page; the patient signs in with the temporary
// password, can do nothing until they choose their own, and then sees the
// portal. The relay's audit names the staff user; a front-desk account
// limited to another provider cannot give access to this request.
func TestPortal_TemporaryPassword(t *testing.T) {
	smtp := mailtest.Start(t, mailtest.Options{})
	env := notifyEnv(t, t.TempDir(), smtp, nil)
	ag := env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	first := knownPatient(t, web, "maple")
	desk := ag.Desk(t)

	// Limited to another provider: the request does not exist for them.
	var entry struct {
		ProviderID string `json:"provider_id"`
	}
	if code := desk.JSON("GET", "/api/requests/"+first["id"], nil, &entry); code != 200 {
		t.Fatalf("open: %d", code)
	}
	provider := entry.ProviderID
	other := "dr-patel" // the demo's other provider
	if provider == other {
		other = "dr-lee"
	}
	if err := ag.Console.Staff().Put("bo-desk", staff.RoleFrontDesk, []string{other}, deskPassword); err != nil {
		t.Fatal(err)
	}
	bo := newClient(t, ag.HTTP.URL)
	if code := bo.JSON("POST", "/api/session", map[string]string{"name": "bo-desk", "password": deskPassword}, nil); code != 200 {
		t.Fatalf("bo's sign-in: %d", code)
	}
	if code := bo.JSON("POST", "/api/requests/"+first["id"]+"/portal", nil, nil); code != 404 {
		t.Fatalf("another provider's desk gives access: %d, want 404", code)
	}

	var g struct {
		Password string    `json:"temporary_password"`
		Until    time.Time `json:"expires_at"`
	}
	if code := desk.JSON("POST", "/api/requests/"+first["id"]+"/portal", nil, &g); code != 200 || len(g.Password) < 20 ||
		g.Until.Sub(time.Now()) < services.PortalTempLife-time.Hour {
		t.Fatalf("give access: %d %+v", code, g)
	}
	patient := newClient(t, env.Relay.HTTPURL())
	var in map[string]any
	if code := patient.JSON("POST", "/api/v1/clinics/maple/portal/login", map[string]string{"email": "ada@example.org", "password": g.Password}, &in); code != 200 ||
		in["must_change_password"] != true {
		t.Fatalf("sign in with the temporary password: %d %v", code, in)
	}
	if code := patient.JSON("GET", "/api/v1/clinics/maple/portal/appointments", nil, nil); code != 403 {
		t.Fatalf("appointments before choosing a password: %d, want 403", code)
	}
	if code := patient.JSON("POST", "/api/v1/clinics/maple/portal/password/change",
		map[string]string{"current_password": g.Password, "new_password": "my own knee phrase"}, &in); code != 200 || in["must_change_password"] != false {
		t.Fatalf("choose a password: %d %v", code, in)
	}
	if code := patient.JSON("GET", "/api/v1/clinics/maple/portal/appointments", nil, nil); code != 200 {
		t.Fatalf("appointments after: %d", code)
	}
	if code := patient.JSON("POST", "/api/v1/clinics/maple/portal/login", map[string]string{"email": "ada@example.org", "password": g.Password}, nil); code != 401 {
		t.Fatalf("the temporary password after it was replaced: %d, want 401", code)
	}
	// The patient chose a password: the desk cannot replace it by mistake,
	// only by a reset it confirms.
	if code := desk.JSON("POST", "/api/requests/"+first["id"]+"/portal", map[string]bool{}, nil); code != 409 {
		t.Fatalf("access again over the patient's own password: %d, want 409", code)
	}
	if code := desk.JSON("POST", "/api/requests/"+first["id"]+"/portal", map[string]bool{"reset": true}, &g); code != 200 {
		t.Fatalf("a reset the desk confirms: %d", code)
	}
	if code := patient.JSON("GET", "/api/v1/clinics/maple/portal/appointments", nil, nil); code != 401 {
		t.Fatalf("the patient's session after a reset: %d, want 401", code)
	}

	poll.For(t, 10*time.Second, func() error {
		_, out, _ := relayCmd(t, "audit", "--clinic", "maple", "--format", "json", "--data", env.DataDir)
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var ev services.AuditEvent
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Action == services.AuditPortalGranted {
				if ev.Actor != "staff" || ev.User != "desk-admin" || ev.RequestID != first["id"] {
					return fmt.Errorf("grant event %+v, want desk-admin's on the request", ev)
				}
				return nil
			}
		}
		return fmt.Errorf("no %s event in the relay's audit", services.AuditPortalGranted)
	})
}

package portal_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	imail "github.com/clinicrelay/clinicrelay/internal/mail"
	"github.com/clinicrelay/clinicrelay/internal/mail/mailtest"
	"github.com/clinicrelay/clinicrelay/internal/natstest"
	"github.com/clinicrelay/clinicrelay/internal/password"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/portal"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

const good = "correct horse battery"

// dir is the clinics the tests know: maple, with a seal key.
type dir struct{ sealKey string }

func (d dir) Clinic(id string) (services.Clinic, bool) {
	return services.Clinic{ID: id, Name: "Maple Clinic", TimeZone: "America/Toronto"}, id == "maple"
}
func (dir) FreeSlot(string, string) (services.Slot, bool) { return services.Slot{}, false }
func (dir) NextFree(string, int) []services.Slot          { return nil }
func (d dir) SealKey(string) (string, bool)               { return d.sealKey, true }
func (dir) Policy(string, string) services.BookingPolicy  { return services.BookingPolicy{} }

// env is a portal on a real NATS with a real SMTP server, and the clinic
// maple's opener, to read the checks the portal asks.
type env struct {
	t      *testing.T
	js     jetstream.JetStream
	p      *services.Portal
	opener *services.Opener
	smtp   *mailtest.Server
	mu     sync.Mutex
	now    time.Time
	// details are the questions about signed-in patients' details taken.
	details []services.PortalCheck
}

func newEnv(t *testing.T) *env {
	t.Helper()
	js := natstest.RunJetStream(t)
	if err := cjs.Provision(t.Context(), js, cjs.Options{}); err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateCurveKeys()
	pub, _ := kp.PublicKey()
	opener, err := services.NewOpener(kp)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	e := &env{t: t, js: js, opener: opener, smtp: mailtest.Start(t, mailtest.Options{}), now: time.Now().UTC()}
	sender, err := imail.New(imail.Config{URL: e.smtp.URL()})
	if err != nil {
		t.Fatal(err)
	}
	e.p = &services.Portal{Store: portal.NewStore(js, secret), Outbox: cjs.NewRequests(js),
		Send: func(ctx context.Context, to string, msg []byte) error {
			return sender.Send(ctx, "portal@relay.test", to, msg)
		},
		From: "portal@relay.test", Permanent: imail.Permanent, Describe: imail.Describe,
		LinkURL: func(c services.Clinic, token string) string {
			return "https://relay.test/c/" + c.ID + "/portal/link/" + token
		},
		Directory: dir{sealKey: pub}, Now: e.clock}
	a := &portal.Answers{Portal: e.p, Active: func(c string) bool { return c == "maple" }}
	if err := a.Serve(js.Conn()); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

// takeCheck is what the clinic's agent does: the next check on maple's
// queue, opened. Questions about signed-in patients' details (ReplyTo)
// are kept aside in e.details, for the tests that answer them.
func (e *env) takeCheck() services.PortalCheck {
	e.t.Helper()
	for {
		if c := e.nextCheck(); c.ReplyTo == "" {
			return c
		} else {
			e.details = append(e.details, c)
		}
	}
}

func (e *env) nextCheck() services.PortalCheck {
	e.t.Helper()
	c, ok := e.tryCheck(5 * time.Second)
	if !ok {
		e.t.Fatal("no check on maple's queue")
	}
	return c
}

// tryCheck is the next check on maple's queue within wait, if any.
func (e *env) tryCheck(wait time.Duration) (services.PortalCheck, bool) {
	e.t.Helper()
	ctx := e.t.Context()
	c, err := e.js.CreateOrUpdateConsumer(ctx, subjects.StreamRequests, jetstream.ConsumerConfig{Durable: "test_maple",
		FilterSubject: subjects.PortalCheck("maple"), AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		e.t.Fatal(err)
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(wait))
	if err != nil {
		e.t.Fatal(err)
	}
	for m := range batch.Messages() {
		h := m.Headers()
		chk, err := e.opener.OpenPortalCheck(services.Sealed{To: h.Get(subjects.HeaderSealedTo),
			From: h.Get(subjects.HeaderSealedFrom), Box: m.Data()})
		if err != nil || chk.Validate() != nil || chk.ID != h.Get(subjects.HeaderRequestID) {
			e.t.Fatalf("check: %+v, %v", chk, err)
		}
		_ = m.Ack()
		return chk, true
	}
	return services.PortalCheck{}, false
}

var linkRE = regexp.MustCompile(`https://relay\.test/c/maple/portal/link/(maple_[0-9a-f]{32})`)

// register registers email, has the clinic answer known, and returns the
// link token mailed (or "" when none was).
func (e *env) register(email string, known bool) string {
	e.t.Helper()
	before := len(e.smtp.Messages())
	if err := e.p.Register(e.t.Context(), services.Clinic{ID: "maple", Name: "Maple Clinic"}, email, "en", "10.0.0.1"); err != nil {
		e.t.Fatal(err)
	}
	chk := e.takeCheck()
	if chk.Email != email {
		e.t.Fatalf("the clinic was asked about %q, want %q", chk.Email, email)
	}
	if err := portal.SendAnswer(e.t.Context(), e.js.Conn(), "maple", portal.Answer{Check: chk.ID, Known: known}); err != nil {
		e.t.Fatal(err)
	}
	msgs := e.smtp.Messages()
	if !known {
		if len(msgs) != before {
			e.t.Fatalf("a link was mailed for an email the clinic does not know")
		}
		return ""
	}
	if len(msgs) != before+1 {
		e.t.Fatalf("%d messages after a known email's answer, want one more than %d", len(msgs), before)
	}
	m := msgs[len(msgs)-1]
	if m.To[0] != email {
		e.t.Fatalf("link mailed to %v, want %s", m.To, email)
	}
	body := decoded(e.t, m.Data)
	got := linkRE.FindStringSubmatch(body)
	if got == nil {
		e.t.Fatalf("no link in the mail:\n%s", body)
	}
	return got[1]
}

// decoded is a message's text, quoted-printable undone.
func decoded(t *testing.T, data []byte) string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	buf := new(bytes.Buffer)
	buf.ReadFrom(msg.Body)
	b.WriteString(strings.ReplaceAll(strings.ReplaceAll(buf.String(), "=\r\n", ""), "=3D", "="))
	return b.String()
}

func code(t *testing.T, err error, want string) {
	t.Helper()
	if got := services.ErrorCode(err); err == nil || got != want {
		t.Fatalf("error %v (code %s), want code %s", err, got, want)
	}
}

func TestPortal_EmailMethod(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	link := e.register("marie.roy@example.org", true)

	tok, err := e.p.SetPassword(ctx, "maple", link, good, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Ready(ctx, "maple", tok); err != nil {
		t.Fatalf("the session the link started: %v", err)
	}
	// Once only.
	_, err = e.p.SetPassword(ctx, "maple", link, good+"!", "10.0.0.1")
	code(t, err, services.EUnauthorized)
	// Another clinic's link token, or a made-up one, opens nothing.
	_, err = e.p.SetPassword(ctx, "oak", link, good, "10.0.0.1")
	code(t, err, services.EUnauthorized)

	// Sign in: letter case aside, the address as the clinic has it; with
	// a "+tag" it is another address (maybe another person's mailbox).
	if _, err := e.p.SignIn(ctx, "maple", " Marie.Roy@Example.org", good, "10.0.0.2"); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	_, err = e.p.SignIn(ctx, "maple", "marie.roy+portal@example.org", good, "10.0.0.2")
	code(t, err, services.EUnauthorized)
	_, err = e.p.SignIn(ctx, "maple", "marie.roy@example.org", "wrong horse battery", "10.0.0.2")
	code(t, err, services.EUnauthorized)
	// The account is maple's only.
	_, err = e.p.SignIn(ctx, "oak", "marie.roy@example.org", good, "10.0.0.2")
	code(t, err, services.EUnauthorized)
}

func TestPortal_UnknownEmailGetsNothing(t *testing.T) {
	e := newEnv(t)
	if link := e.register("stranger@example.org", false); link != "" {
		t.Fatal("link for an unknown email")
	}
	// No account came of it.
	_, err := e.p.SignIn(t.Context(), "maple", "stranger@example.org", good, "10.0.0.1")
	code(t, err, services.EUnauthorized)
}

func TestPortal_Register_BadEmail(t *testing.T) {
	e := newEnv(t)
	err := e.p.Register(t.Context(), services.Clinic{ID: "maple"}, "not an email", "en", "10.0.0.1")
	var de *services.Error
	if !errors.As(err, &de) || de.Code != services.EInvalid || de.Fields["email"] == "" {
		t.Fatalf("%v, want the email field named", err)
	}
}

func TestPortal_LinkDeadAfterANewerPassword(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	old := e.register("ada@example.org", true)
	e.advance(time.Second)
	newer := e.register("ada@example.org", true)
	if _, err := e.p.SetPassword(ctx, "maple", newer, good, ""); err != nil {
		t.Fatal(err)
	}
	_, err := e.p.SetPassword(ctx, "maple", old, "another good phrase", "")
	code(t, err, services.EUnauthorized)
	// And a link past its life; one within it works.
	e.advance(time.Second)
	late := e.register("ada@example.org", true)
	e.advance(time.Second)
	inTime := e.register("ada@example.org", true)
	e.advance(services.PortalLinkLife - time.Second/2)
	_, err = e.p.SetPassword(ctx, "maple", late, "another good phrase", "")
	code(t, err, services.EUnauthorized)
	if _, err := e.p.SetPassword(ctx, "maple", inTime, "another good phrase", ""); err != nil {
		t.Fatalf("a link within its life: %v", err)
	}
}

func TestPortal_Lockout(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, err := e.p.SetPassword(ctx, "maple", e.register("ada@example.org", true), good, ""); err != nil {
		t.Fatal(err)
	}
	for _, email := range []string{"ada@example.org", "nobody@example.org"} { // an account, and none: alike
		for i := 1; i < services.PortalLockAfter; i++ {
			_, err := e.p.SignIn(ctx, "maple", email, "wrong horse battery", "")
			code(t, err, services.EUnauthorized)
		}
		_, err := e.p.SignIn(ctx, "maple", email, "wrong horse battery", "")
		code(t, err, services.EUnauthorized)
		// Locked now, the right password too.
		_, err = e.p.SignIn(ctx, "maple", email, good, "")
		code(t, err, services.ETooManyTries)
	}
	e.advance(services.PortalLockFor + time.Second)
	if _, err := e.p.SignIn(ctx, "maple", "ada@example.org", good, ""); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
}

// TestPortal_ConcurrentFailuresAllCount: wrong guesses sent at once are
// every one counted, for an account and for an email with none alike, so
// the lock comes after PortalLockAfter of them however they are sent.
func TestPortal_ConcurrentFailuresAllCount(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, err := e.p.SetPassword(ctx, "maple", e.register("ada@example.org", true), good, ""); err != nil {
		t.Fatal(err)
	}
	for _, email := range []string{"ada@example.org", "nobody@example.org"} {
		var wg sync.WaitGroup
		for range services.PortalLockAfter {
			wg.Go(func() {
				_, err := e.p.SignIn(ctx, "maple", email, "wrong horse battery", "")
				if services.ErrorCode(err) != services.EUnauthorized {
					t.Errorf("%s, a wrong guess at once with others: %v, want unauthorized", email, err)
				}
			})
		}
		wg.Wait()
		_, err := e.p.SignIn(ctx, "maple", email, good, "")
		code(t, err, services.ETooManyTries)
	}
}

func TestPortal_SessionEnds(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	first, err := e.p.SetPassword(ctx, "maple", e.register("ada@example.org", true), good, "")
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.p.SignIn(ctx, "maple", "ada@example.org", good, "")
	if err != nil {
		t.Fatal(err)
	}
	// A session is of its clinic only.
	_, err = e.p.Session(ctx, "oak", second)
	code(t, err, services.EUnauthorized)

	t.Run("idle", func(t *testing.T) {
		third, err := e.p.SignIn(ctx, "maple", "ada@example.org", good, "")
		if err != nil {
			t.Fatal(err)
		}
		e.advance(services.PortalIdle - time.Minute)
		if _, err := e.p.Session(ctx, "maple", third); err != nil {
			t.Fatalf("used before its idle time: %v", err)
		}
		e.advance(services.PortalIdle - time.Minute) // renewed by the use above
		if _, err := e.p.Session(ctx, "maple", third); err != nil {
			t.Fatalf("used again within the idle time: %v", err)
		}
		e.advance(services.PortalIdle + time.Second)
		_, err = e.p.Session(ctx, "maple", third)
		code(t, err, services.EUnauthorized)
	})
	first, err = e.p.SignIn(ctx, "maple", "ada@example.org", good, "")
	if err != nil {
		t.Fatal(err)
	}
	second, err = e.p.SignIn(ctx, "maple", "ada@example.org", good, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("signed out", func(t *testing.T) {
		if err := e.p.SignOut(ctx, "maple", first, false, ""); err != nil {
			t.Fatal(err)
		}
		_, err := e.p.Session(ctx, "maple", first)
		code(t, err, services.EUnauthorized)
		if _, err := e.p.Session(ctx, "maple", second); err != nil {
			t.Fatalf("the other session, after one signed out: %v", err)
		}
	})
	t.Run("password changed", func(t *testing.T) {
		_, err := e.p.ChangePassword(ctx, "maple", second, "not it at all", "a brand new phrase", "")
		var de *services.Error
		if !errors.As(err, &de) || de.Fields["current_password"] == "" {
			t.Fatalf("a wrong current password: %v", err)
		}
		other, _ := e.p.SignIn(ctx, "maple", "ada@example.org", good, "")
		next, err := e.p.ChangePassword(ctx, "maple", second, good, "a brand new phrase", "")
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{second, other} {
			_, err := e.p.Session(ctx, "maple", tok)
			code(t, err, services.EUnauthorized)
		}
		if _, err := e.p.Session(ctx, "maple", next); err != nil {
			t.Fatalf("the session the change started: %v", err)
		}
		second = next
	})
	t.Run("everywhere", func(t *testing.T) {
		other, err := e.p.SignIn(ctx, "maple", "ada@example.org", "a brand new phrase", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.p.SignOut(ctx, "maple", second, true, ""); err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{second, other} {
			_, err := e.p.Session(ctx, "maple", tok)
			code(t, err, services.EUnauthorized)
		}
	})
}

func TestPortal_AddRequest(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	tok, err := e.p.SetPassword(ctx, "maple", e.register("ada@example.org", true), good, "")
	if err != nil {
		t.Fatal(err)
	}
	id, st := services.NewToken(), services.NewToken()
	if err := e.p.AddRequest(ctx, "maple", tok, "Ada@example.org", id, st); err != nil {
		t.Fatal(err)
	}
	// Someone else's email, sent while signed in, is not the account's.
	if err := e.p.AddRequest(ctx, "maple", tok, "bob@example.org", services.NewToken(), services.NewToken()); err != nil {
		t.Fatal(err)
	}
	s, err := e.p.Ready(ctx, "maple", tok)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Account.Requests) != 1 || s.Account.Requests[0].ID != id || s.Account.Requests[0].Token != st {
		t.Fatalf("requests %+v, want only %s", s.Account.Requests, id)
	}
}

// TestPortal_MailRefused: a mail server that refuses the address for good
// ends the check (no retries for its life); one that fails for now keeps
// it, and the clinic's answer given again sends the link. Two answers at
// once send one.
func TestPortal_MailRefused(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	ask := func() services.PortalCheck {
		if err := e.p.Register(ctx, services.Clinic{ID: "maple", Name: "Maple Clinic"}, "ada@example.org", "en", ""); err != nil {
			t.Fatal(err)
		}
		return e.takeCheck()
	}
	answer := func(c services.PortalCheck) error {
		return portal.SendAnswer(ctx, e.js.Conn(), "maple", portal.Answer{Check: c.ID, Known: true})
	}
	e.smtp.Refuse(550)
	if err := answer(ask()); err != nil {
		t.Fatalf("refused for good: %v, want the answer taken (nothing to retry)", err)
	}
	e.smtp.Refuse(451)
	c := ask()
	if err := answer(c); err == nil {
		t.Fatal("refused for now: the answer was taken; want it given again")
	}
	e.smtp.Refuse(0)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := answer(c); err != nil {
				t.Errorf("answer again: %v", err)
			}
		})
	}
	wg.Wait()
	if n := len(e.smtp.Messages()); n != 1 {
		t.Fatalf("%d links mailed, want 1 (refused for good: none; three answers at once: one)", n)
	}
}

// answerDetails answers, as the clinic, the latest question about a
// signed-in patient's details with d, sealed to the session key.
func answerDetails(t *testing.T, e *env, d services.PatientDetails) {
	t.Helper()
	for { // every question queued so far: the latest is the last session's
		c, ok := e.tryCheck(200 * time.Millisecond)
		if !ok {
			break
		}
		e.details = append(e.details, c)
	}
	if len(e.details) == 0 {
		t.Fatal("no question about a signed-in patient's details")
	}
	c := e.details[len(e.details)-1]
	if c.ReplyTo == "" {
		t.Fatalf("check %+v asks for no details", c)
	}
	sealed, err := new(services.Sealer).Seal(d, c.ReplyTo)
	if err != nil {
		t.Fatal(err)
	}
	if err := portal.SendAnswer(t.Context(), e.js.Conn(), "maple", portal.Answer{Check: c.ID, Known: true, Details: &sealed}); err != nil {
		t.Fatal(err)
	}
}

// TestPortal_Details: signed in, the patient's details come from the
// clinic, sealed to their session key: they open with the patient's
// cookie only, move to the session a password change starts, and go with
// a sign-out.
func TestPortal_Details(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, err := e.p.SetPassword(ctx, "maple", e.register("ada@example.org", true), good, ""); err != nil {
		t.Fatal(err)
	}
	e.details = nil
	tok, err := e.p.SignIn(ctx, "maple", "ada@example.org", good, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := e.p.Details(ctx, "maple", tok); ok {
		t.Fatal("details before the clinic answered")
	}
	want := services.PatientDetails{Name: "Ada Patient", BirthDate: "1980-04-02", Phone: "416 555 0100", Email: "ada@example.org"}
	answerDetails(t, e, want)
	if got, _, ok := e.p.Details(ctx, "maple", tok); !ok || got != want {
		t.Fatalf("details: %+v %v, want %+v", got, ok, want)
	}
	// The session's token alone (no seed) or another's seed opens nothing.
	token, _, _ := strings.Cut(tok, ".")
	if _, _, ok := e.p.Details(ctx, "maple", token); ok {
		t.Error("details opened without the cookie's seed")
	}
	other, _ := e.p.SignIn(ctx, "maple", "ada@example.org", good, "")
	_, otherSeed, _ := strings.Cut(other, ".")
	if _, _, ok := e.p.Details(ctx, "maple", token+"."+otherSeed); ok {
		t.Error("details opened with another session's seed")
	}
	next, err := e.p.ChangePassword(ctx, "maple", tok, good, "a brand new phrase", "")
	if err != nil {
		t.Fatal(err)
	}
	if got, _, ok := e.p.Details(ctx, "maple", next); !ok || got != want {
		t.Fatalf("details after a password change: %+v %v", got, ok)
	}
	// A password changed before the clinic answers (a temporary one is
	// changed at once): the answer reaches the new session.
	e.details = nil
	late, err := e.p.SignIn(ctx, "maple", "ada@example.org", "a brand new phrase", "")
	if err != nil {
		t.Fatal(err)
	}
	later, err := e.p.ChangePassword(ctx, "maple", late, "a brand new phrase", "a third good phrase", "")
	if err != nil {
		t.Fatal(err)
	}
	answerDetails(t, e, want)
	if got, _, ok := e.p.Details(ctx, "maple", later); !ok || got != want {
		t.Fatalf("details answered after a password change: %+v %v", got, ok)
	}
	if _, err := e.p.Session(ctx, "maple", next); err == nil {
		t.Fatal("a session of before the password change lives on")
	}
	next = later
	if err := e.p.SignOut(ctx, "maple", next, false, ""); err != nil {
		t.Fatal(err)
	}
	nextToken, _, _ := strings.Cut(next, ".")
	var sealed services.Sealed
	if _, err := e.p.Store.Token(ctx, "maple", services.PortalDetailsRecord, services.PortalTokenKey(nextToken), &sealed); services.ErrorCode(err) != services.ENotFound {
		t.Fatalf("details after sign-out: %v, want gone", err)
	}
}

// TestPortal_NothingInClear: what NATS holds of the portal (its buckets
// and the check on the clinic's queue) shows no email, password or token.
func TestPortal_NothingInClear(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	link := e.register("ada.secret@example.org", true)
	tok, err := e.p.SetPassword(ctx, "maple", link, good, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.AddRequest(ctx, "maple", tok, "ada.secret@example.org", services.NewToken(), "statustoken0123456789"); err != nil {
		t.Fatal(err)
	}
	answerDetails(t, e, services.PatientDetails{Name: "Ada Secret", BirthDate: "1980-04-02", Phone: "416 555 0199",
		Email: "ada.secret@example.org"})
	_ = e.p.Register(ctx, services.Clinic{ID: "maple"}, "ada.secret@example.org", "en", "") // a check waiting
	token, seed, _ := strings.Cut(tok, ".")
	for _, stream := range []string{subjects.KVStream(subjects.BucketPortal), subjects.KVStream(subjects.BucketPortalTokens),
		subjects.StreamRequests} {
		for _, m := range all(t, e.js, stream) {
			raw := string(m.Data) + m.Subject
			for _, secret := range []string{"ada.secret", "example.org", good, strings.TrimPrefix(link, "maple_"), token, seed,
				"statustoken", "Ada Secret", "1980-04-02", "416 555 0199"} {
				if strings.Contains(raw, secret) {
					t.Errorf("%s holds %q in clear: %s", stream, secret, m.Subject)
				}
			}
		}
	}
}

// all is every message a stream holds.
func all(t *testing.T, js jetstream.JetStream, stream string) []*nats.Msg {
	t.Helper()
	s, err := js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(t.Context())
	var out []*nats.Msg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			continue // deleted
		}
		out = append(out, &nats.Msg{Subject: m.Subject, Data: m.Data})
	}
	return out
}

// TestAnswers_Refused: an answer that is not one, or for a clinic not
// active, is refused and changes nothing.
func TestAnswers_Refused(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		clinic string
		body   string
	}{
		{"maple", `{"check":"nothex","known":true}`},
		{"maple", `{"check":"` + services.NewToken() + `","known":true,"email":"x@example.org"}`},
		{"oak", `{"check":"` + services.NewToken() + `","known":true}`},
	} {
		m, err := e.js.Conn().Request(subjects.AgentPortalAnswer(tt.clinic), []byte(tt.body), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var r struct{ Code string }
		_ = json.Unmarshal(m.Data, &r)
		if r.Code != "refused" {
			t.Errorf("%s %s: %s, want refused", tt.clinic, tt.body, m.Data)
		}
	}
	// An answer to a check never asked sends nothing, and is no error.
	if err := portal.SendAnswer(t.Context(), e.js.Conn(), "maple", portal.Answer{Check: services.NewToken(), Known: true}); err != nil {
		t.Fatal(err)
	}
	poll.Still(t, 200*time.Millisecond, func() error {
		if n := len(e.smtp.Messages()); n != 0 {
			return errors.New("a link was mailed for a check never asked")
		}
		return nil
	})
}

// TestPortal_TemporaryPassword: the clinic gives access with a temporary
// password (its hash only); the patient signs in with it, can do nothing
// but set their own, and it dies after PortalTempLife unused.
func TestPortal_TemporaryPassword(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	temp := password.OneTime()
	if err := portal.SendGrant(ctx, e.js.Conn(), "maple", portal.Grant{Email: "ada@example.org", Hash: password.Hash(temp)}); err != nil {
		t.Fatal(err)
	}
	tok, err := e.p.SignIn(ctx, "maple", "ada@example.org", temp, "")
	if err != nil {
		t.Fatalf("sign in with the temporary password: %v", err)
	}
	_, err = e.p.Ready(ctx, "maple", tok)
	code(t, err, services.EForbidden)
	next, err := e.p.ChangePassword(ctx, "maple", tok, temp, good, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Ready(ctx, "maple", next); err != nil {
		t.Fatalf("after setting their own: %v", err)
	}

	// The front desk vouches for a caller, not for the mailbox: once the
	// owner chose a password, a grant cannot replace it.
	if err := portal.SendGrant(ctx, e.js.Conn(), "maple", portal.Grant{Email: "ada@example.org", Hash: password.Hash(password.OneTime())}); !errors.Is(err, portal.ErrExists) {
		t.Fatalf("a grant over the owner's own password: %v, want ErrExists", err)
	}
	if _, err := e.p.Ready(ctx, "maple", next); err != nil {
		t.Fatalf("the owner's session after a refused grant: %v", err)
	}
	// Unless the desk resets it, having identified the patient: the
	// owner's sessions end, the new temporary password signs in.
	reset := password.OneTime()
	if err := portal.SendGrant(ctx, e.js.Conn(), "maple", portal.Grant{Email: "ada@example.org", Hash: password.Hash(reset), Reset: true}); err != nil {
		t.Fatalf("a reset: %v", err)
	}
	_, err = e.p.Session(ctx, "maple", next)
	code(t, err, services.EUnauthorized)
	if _, err := e.p.SignIn(ctx, "maple", "ada@example.org", reset, ""); err != nil {
		t.Fatalf("sign in after the reset: %v", err)
	}

	// A grant again, while still on a temporary password, replaces it and
	// ends its sessions; unused for PortalTempLife, it no longer signs in.
	temp2, temp3 := password.OneTime(), password.OneTime()
	for _, pw := range []string{temp2, temp3} {
		if err := portal.SendGrant(ctx, e.js.Conn(), "maple", portal.Grant{Email: "bo@example.org", Hash: password.Hash(pw)}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = e.p.SignIn(ctx, "maple", "bo@example.org", temp2, "")
	code(t, err, services.EUnauthorized)
	e.advance(services.PortalTempLife + time.Minute)
	_, err = e.p.SignIn(ctx, "maple", "bo@example.org", temp3, "")
	code(t, err, services.EUnauthorized)
}

// TestAnswers_GrantRefused: a grant with a hash that would cost more than
// ours to check, or of a clinic not active, is refused; a clinic's grants
// are bounded.
func TestAnswers_GrantRefused(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	costly := strings.Replace(password.Hash("x"), "m=19456", "m=1048576", 1)
	for _, tt := range []struct {
		clinic string
		g      portal.Grant
	}{
		{"maple", portal.Grant{Email: "ada@example.org", Hash: costly}},
		{"maple", portal.Grant{Email: "not an email", Hash: password.Hash("x")}},
		{"oak", portal.Grant{Email: "ada@example.org", Hash: password.Hash("x")}},
	} {
		if err := portal.SendGrant(ctx, e.js.Conn(), tt.clinic, tt.g); !errors.Is(err, portal.ErrRefused) {
			t.Errorf("%s %+v: %v, want refused", tt.clinic, tt.g.Email, err)
		}
	}
	h := password.Hash("a temporary one")
	var err error
	for i := 0; i <= portal.GrantBurst && err == nil; i++ {
		err = portal.SendGrant(ctx, e.js.Conn(), "maple", portal.Grant{Email: fmt.Sprintf("p%d@example.org", i), Hash: h})
	}
	if err == nil || errors.Is(err, portal.ErrRefused) {
		t.Fatalf("grant %d at once: %v, want a try-again", portal.GrantBurst+1, err)
	}
}

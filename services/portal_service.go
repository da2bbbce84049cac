package services

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clinicrelay/clinicrelay/internal/catalog"
	"github.com/clinicrelay/clinicrelay/internal/password"
)

// Audit actions of the portal: ids only, never the email.
const (
	AuditPortalAsked     = "portal-asked"      // web: a patient asked to register; the clinic is asked
	AuditPortalLinkSent  = "portal-link-sent"  // relay: the clinic knew the email; a link was sent
	AuditPortalPassword  = "portal-password"   // web: a password set (link) or changed
	AuditPortalSignedIn  = "portal-signed-in"  // web: a sign-in
	AuditPortalSignInBad = "portal-signin-bad" // web: a sign-in refused
	AuditPortalSignedOut = "portal-signed-out" // web: signed out (Detail "everywhere" when every session)
	AuditPortalGranted   = "portal-granted"    // staff: a patient given portal access with a temporary password (User)
)

// PortalOutbox carries a sealed check to the clinic's queue, at most once per ID.
type PortalOutbox interface {
	PublishPortalCheck(ctx context.Context, clinic, check string, sealed Sealed) error
}

// Portal is the patient portal's use cases, shared by every web front of a
// deployment through its Store. Without Outbox or Send, registering is
// EUnavailable.
type Portal struct {
	Store  PortalStore
	Outbox PortalOutbox
	// Send emails msg to a bare address; From is its From.
	Send func(ctx context.Context, to string, msg []byte) error
	From string
	// LinkURL is the set-password page of a link's token at clinic.
	LinkURL   func(clinic Clinic, token string) string
	Directory Directory
	Audit     Auditor
	Now       func() time.Time

	sealer Sealer

	mu sync.Mutex
	// unknown counts the failed sign-ins of emails no account has (in
	// memory, by email key), so that they lock as an account does and the
	// answers say nothing of which emails have one.
	unknown map[string]*portalFails
}

type portalFails struct {
	n            int
	since, until time.Time
}

// hashers bounds the argon2id hashes the portal computes at once.
var hashers = password.NewTurns(2)

// hashWait is how long a sign-in waits for its turn to hash.
const hashWait = 5 * time.Second

func (p *Portal) now() time.Time {
	if p.Now == nil {
		return time.Now().UTC()
	}
	return p.Now().UTC()
}

func (p *Portal) audit(ctx context.Context, clinic, action, ip, detail string) {
	if p.Audit != nil {
		p.Audit.Audit(ctx, AuditEvent{At: p.now(), Clinic: clinic, Action: action, Actor: "patient", IP: ip, Detail: detail})
	}
}

func errSignIn() error {
	return Keyed(EUnauthorized, "portal.wrong", "wrong email or password")
}

func errSession() error {
	return Keyed(EUnauthorized, "portal.signed_out", "you are not signed in, or your session ended: sign in again")
}

func errLink() error {
	return Keyed(EUnauthorized, "portal.link_dead", "this link has expired or was already used: ask for a new one")
}

func errLocked() error {
	return Keyed(ETooManyTries, "portal.locked",
		"too many failed sign-ins: wait %d minutes, or set a new password with the email link", int(PortalLockFor.Minutes()))
}

// emailField checks a typed email as a form field.
func emailField(email string) error {
	if !ValidEmail(email) {
		var f FieldErrors
		f.AddKey("email", "field.email", "email must be an address like name@example.org")
		return f.Err()
	}
	return nil
}

// passwordField checks a new password as a form field.
func passwordField(field, pw string) error {
	if err := password.Check("", pw); err != nil {
		var f FieldErrors
		f.Add(field, strings.Replace(err.Error(), "password", field, 1))
		return f.Err()
	}
	return nil
}

// Register asks clinic whether its records hold email; if they do, the
// relay emails a link to set a password (Answer). It answers the same
// whatever the clinic will say: nil for any well-formed email.
func (p *Portal) Register(ctx context.Context, clinic Clinic, email, lang, ip string) error {
	email = strings.TrimSpace(email)
	if err := emailField(email); err != nil {
		return err
	}
	if p.Outbox == nil || p.Send == nil {
		return Errorf(EUnavailable, "this relay sends no email, so the portal cannot register anyone")
	}
	to, ok := p.Directory.SealKey(clinic.ID)
	if !ok {
		return Keyed(EUnavailable, "error.not_ready", "the clinic is not ready to take requests yet; please try again later")
	}
	id := NewToken()
	sealed, err := p.sealer.Seal(PortalCheck{ID: id, ClinicID: clinic.ID, Email: email}, to)
	if err != nil {
		return &Error{Code: EInternal, Message: "the check could not be sealed", Err: err}
	}
	unavailable := func(err error) error {
		return &Error{Code: EUnavailable, Message: "the portal cannot take this now; try again in a minute", Err: err}
	}
	if err := p.Store.PutToken(ctx, clinic.ID, PortalAskedRecord, id, PortalAsked{Email: email, Lang: Lang(lang), At: p.now()}, PortalLinkLife); err != nil {
		return unavailable(err)
	}
	if err := p.Outbox.PublishPortalCheck(ctx, clinic.ID, id, sealed); err != nil {
		_ = p.Store.DropToken(ctx, clinic.ID, PortalAskedRecord, id, 0)
		return unavailable(err)
	}
	p.audit(ctx, clinic.ID, AuditPortalAsked, ip, "")
	return nil
}

// Answer is the clinic's answer to check: known says whether its records
// hold the email. A check already answered or expired is nothing to do. An
// error means the link was not sent and the answer should come again.
func (p *Portal) Answer(ctx context.Context, clinic, check string, known bool) error {
	var asked PortalAsked
	rev, err := p.Store.Token(ctx, clinic, PortalAskedRecord, check, &asked)
	switch {
	case ErrorCode(err) == ENotFound:
		return nil
	case err != nil:
		return err
	}
	if known {
		if err := p.sendLink(ctx, clinic, asked); err != nil {
			return err
		}
	}
	if err := p.Store.DropToken(ctx, clinic, PortalAskedRecord, check, rev); ErrorCode(err) == EUnavailable {
		return err
	}
	return nil // answered twice at once: the other answer dropped it
}

// sendLink mints a set-password link for asked's email and emails it.
func (p *Portal) sendLink(ctx context.Context, clinic string, asked PortalAsked) error {
	cl, ok := p.Directory.Clinic(clinic)
	if !ok || p.Send == nil || p.LinkURL == nil {
		return Errorf(EUnavailable, "portal: clinic %s or the mailer is not there", clinic)
	}
	token := NewToken()
	key := tokenKey(token)
	link := PortalLink{EmailKey: p.Store.EmailKey(clinic, asked.Email), Lang: asked.Lang, At: p.now()}
	if err := p.Store.PutToken(ctx, clinic, PortalLinkRecord, key, link, PortalLinkLife); err != nil {
		return err
	}
	lang := Lang(asked.Lang)
	msg := Email{From: p.From, To: asked.Email, Subject: catalog.T(lang, "portal.mail.subject", cl.Name),
		Text: catalog.T(lang, "portal.mail.body", cl.Name, p.LinkURL(cl, StatusToken(clinic, token)),
			int(PortalLinkLife.Minutes())), Date: p.now()}
	b, err := msg.Bytes()
	if err == nil {
		err = p.Send(ctx, asked.Email, b)
	}
	if err != nil {
		_ = p.Store.DropToken(ctx, clinic, PortalLinkRecord, key, 0)
		return err
	}
	p.audit(ctx, clinic, AuditPortalLinkSent, "", "")
	return nil
}

// linkToken splits a link's "<clinic>_<token>" and checks it is of clinic.
func linkToken(clinic, s string) (string, error) {
	c, token, ok := strings.Cut(s, "_")
	if !ok || c != clinic || len(token) != 32 || strings.Trim(token, "0123456789abcdef") != "" {
		return "", errLink()
	}
	return token, nil
}

// SetPassword sets the password of the account a link is for, making the
// account on first use, and signs the patient in. A link works once, for
// PortalLinkLife, and not after a password was set since it was sent. Every
// other session of the account ends.
func (p *Portal) SetPassword(ctx context.Context, clinic, link, pw, ip string) (string, error) {
	token, err := linkToken(clinic, link)
	if err != nil {
		return "", err
	}
	if err := passwordField("password", pw); err != nil {
		return "", err
	}
	key := tokenKey(token)
	var l PortalLink
	rev, err := p.Store.Token(ctx, clinic, PortalLinkRecord, key, &l)
	if err != nil || p.now().Sub(l.At) > PortalLinkLife {
		return "", orUnavailable(err, errLink())
	}
	// Used once: the first to delete it at its revision has it.
	if err := p.Store.DropToken(ctx, clinic, PortalLinkRecord, key, rev); err != nil {
		return "", orUnavailable(err, errLink())
	}
	acct, arev, err := p.Store.Account(ctx, clinic, l.EmailKey)
	switch {
	case ErrorCode(err) == ENotFound:
		acct, arev = PortalAccount{ID: NewToken(), ClinicID: clinic, Created: p.now()}, 0
	case err != nil:
		return "", err
	case !l.At.After(acct.PasswordAt):
		return "", errLink() // a password was set since this link left
	}
	hash, err := hashInTurn(ctx, pw)
	if err != nil {
		return "", err
	}
	acct.Hash, acct.PasswordAt, acct.MustChange, acct.TempUntil = hash, p.now(), false, time.Time{}
	acct.Gen++
	acct.Fails, acct.FailedSince, acct.LockedUntil = 0, time.Time{}, time.Time{}
	if _, err := p.Store.SaveAccount(ctx, clinic, l.EmailKey, acct, arev); err != nil {
		return "", err
	}
	p.audit(ctx, clinic, AuditPortalPassword, ip, "link")
	return p.startSession(ctx, clinic, l.EmailKey, acct)
}

// orUnavailable is err as a 503 when it is one, else what the caller says.
func orUnavailable(err, otherwise error) error {
	if err != nil && ErrorCode(err) == EUnavailable {
		return err
	}
	return otherwise
}

func hashInTurn(ctx context.Context, pw string) (h string, err error) {
	ctx, cancel := context.WithTimeout(ctx, hashWait)
	defer cancel()
	if hashers.Do(ctx, func() { h = password.Hash(pw) }) != nil {
		return "", Errorf(EUnavailable, "the portal is busy checking passwords: try again in a moment")
	}
	return h, nil
}

func verifyInTurn(ctx context.Context, hash, pw string) (ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, hashWait)
	defer cancel()
	if len(pw) > password.MaxLen {
		pw = "" // checked all the same, as long as any other
	}
	if hashers.Do(ctx, func() { ok = password.Verify(hash, pw) }) != nil {
		return false, Errorf(EUnavailable, "the portal is busy checking passwords: try again in a moment")
	}
	return ok, nil
}

// SignIn checks email and password at clinic and starts a session. An
// account (or an email no account has) that failed PortalLockAfter times
// in PortalLockFor is refused for PortalLockFor, whatever the password.
func (p *Portal) SignIn(ctx context.Context, clinic, email, pw, ip string) (string, error) {
	email = strings.TrimSpace(email)
	if err := emailField(email); err != nil {
		return "", err
	}
	key := p.Store.EmailKey(clinic, email)
	acct, rev, err := p.Store.Account(ctx, clinic, key)
	if ErrorCode(err) == ENotFound {
		return "", p.signInUnknown(ctx, clinic, key, pw, ip)
	}
	if err != nil {
		return "", err
	}
	now := p.now()
	if now.Before(acct.LockedUntil) {
		p.audit(ctx, clinic, AuditPortalSignInBad, ip, "locked")
		return "", errLocked()
	}
	ok, err := verifyInTurn(ctx, acct.Hash, pw)
	if err != nil {
		return "", err
	}
	if !ok {
		if now.Sub(acct.FailedSince) > PortalLockFor {
			acct.Fails, acct.FailedSince = 0, now
		}
		acct.Fails++
		if acct.Fails >= PortalLockAfter {
			acct.LockedUntil = now.Add(PortalLockFor)
		}
		// Lost to a concurrent write, the count is one short: still bounded.
		_, _ = p.Store.SaveAccount(ctx, clinic, key, acct, rev)
		p.audit(ctx, clinic, AuditPortalSignInBad, ip, "")
		return "", errSignIn()
	}
	if acct.MustChange && !now.Before(acct.TempUntil) {
		return "", Keyed(EUnauthorized, "portal.temp_expired",
			"this temporary password has expired: ask the clinic for a new one, or use the email link")
	}
	if acct.Fails > 0 || !acct.LockedUntil.IsZero() {
		acct.Fails, acct.FailedSince, acct.LockedUntil = 0, time.Time{}, time.Time{}
		_, _ = p.Store.SaveAccount(ctx, clinic, key, acct, rev)
	}
	p.audit(ctx, clinic, AuditPortalSignedIn, ip, "")
	return p.startSession(ctx, clinic, key, acct)
}

// signInUnknown answers a sign-in as an email no account has: as long as
// a check, counted and locked as an account is.
func (p *Portal) signInUnknown(ctx context.Context, clinic, key, pw, ip string) error {
	now := p.now()
	p.mu.Lock()
	if p.unknown == nil || len(p.unknown) > 100_000 {
		p.unknown = map[string]*portalFails{} // a flood of made-up emails forgets, never grows without end
	}
	f := p.unknown[clinic+"."+key]
	if f == nil || now.Sub(f.since) > PortalLockFor && !now.Before(f.until) {
		f = &portalFails{since: now}
		p.unknown[clinic+"."+key] = f
	}
	locked := now.Before(f.until)
	p.mu.Unlock()
	p.audit(ctx, clinic, AuditPortalSignInBad, ip, "")
	if locked {
		return errLocked()
	}
	if _, err := verifyInTurn(ctx, password.Dummy, pw); err != nil {
		return err
	}
	p.mu.Lock()
	if f.n++; f.n >= PortalLockAfter {
		f.until = now.Add(PortalLockFor)
	}
	p.mu.Unlock()
	return errSignIn()
}

// startSession starts a session of acct and returns its token.
func (p *Portal) startSession(ctx context.Context, clinic, emailKey string, acct PortalAccount) (string, error) {
	token := NewToken()
	now := p.now()
	s := PortalSession{AccountID: acct.ID, EmailKey: emailKey, Gen: acct.Gen, Created: now, Renewed: now}
	if err := p.Store.PutToken(ctx, clinic, PortalSessionRecord, tokenKey(token), s, PortalIdle); err != nil {
		return "", err
	}
	return token, nil
}

// Signed is a signed-in patient: their account and session.
type Signed struct {
	Account  PortalAccount
	EmailKey string
	token    string
	rev      uint64 // the account's
}

// MustChange reports whether the patient must set a new password before
// anything else.
func (s Signed) MustChange() bool { return s.Account.MustChange }

// Session is the patient signed in with token at clinic, and renews the
// session. An unknown, idle or too old session, or one of an account whose
// password changed or that signed out everywhere since, is EUnauthorized.
func (p *Portal) Session(ctx context.Context, clinic, token string) (Signed, error) {
	if len(token) != 32 {
		return Signed{}, errSession()
	}
	key := tokenKey(token)
	var s PortalSession
	srev, err := p.Store.Token(ctx, clinic, PortalSessionRecord, key, &s)
	if err != nil {
		return Signed{}, orUnavailable(err, errSession())
	}
	now := p.now()
	if now.Sub(s.Renewed) > PortalIdle || now.Sub(s.Created) > PortalSessionMax {
		_ = p.Store.DropToken(ctx, clinic, PortalSessionRecord, key, srev)
		return Signed{}, errSession()
	}
	acct, rev, err := p.Store.Account(ctx, clinic, s.EmailKey)
	if err != nil || acct.ID != s.AccountID || acct.Gen != s.Gen {
		return Signed{}, orUnavailable(err, errSession())
	}
	if now.Sub(s.Renewed) > time.Minute { // renewed at most once a minute: a write per page is not worth it
		s.Renewed = now
		ttl := min(PortalIdle, PortalSessionMax-now.Sub(s.Created))
		_ = p.Store.PutToken(ctx, clinic, PortalSessionRecord, key, s, ttl)
	}
	return Signed{Account: acct, EmailKey: s.EmailKey, token: token, rev: rev}, nil
}

// Ready is Session for anything but changing the password: a patient
// signed in with a temporary password must set their own first.
func (p *Portal) Ready(ctx context.Context, clinic, token string) (Signed, error) {
	s, err := p.Session(ctx, clinic, token)
	if err == nil && s.MustChange() {
		err = Keyed(EForbidden, "portal.must_change", "set a password of your own first")
	}
	return s, err
}

// SignOut ends the session of token; everywhere ends every session of its
// account.
func (p *Portal) SignOut(ctx context.Context, clinic, token string, everywhere bool, ip string) error {
	s, err := p.Session(ctx, clinic, token)
	if err != nil {
		return err
	}
	if everywhere {
		s.Account.Gen++
		if _, err := p.Store.SaveAccount(ctx, clinic, s.EmailKey, s.Account, s.rev); err != nil {
			return err
		}
	}
	if err := p.Store.DropToken(ctx, clinic, PortalSessionRecord, tokenKey(token), 0); err != nil {
		return err
	}
	detail := ""
	if everywhere {
		detail = "everywhere"
	}
	p.audit(ctx, clinic, AuditPortalSignedOut, ip, detail)
	return nil
}

// ChangePassword replaces the signed-in patient's password (a temporary
// one too), ends their other sessions and returns the new session's token.
func (p *Portal) ChangePassword(ctx context.Context, clinic, token, current, next, ip string) (string, error) {
	s, err := p.Session(ctx, clinic, token)
	if err != nil {
		return "", err
	}
	if err := passwordField("new_password", next); err != nil {
		return "", err
	}
	ok, err := verifyInTurn(ctx, s.Account.Hash, current)
	if err != nil {
		return "", err
	}
	var f FieldErrors
	switch {
	case !ok:
		f.AddKey("current_password", "portal.current_wrong", "current_password is not your current password")
	case current == next:
		f.AddKey("new_password", "portal.same", "new_password must differ from the current one")
	}
	if err := f.Err(); err != nil {
		return "", err
	}
	hash, err := hashInTurn(ctx, next)
	if err != nil {
		return "", err
	}
	a := s.Account
	a.Hash, a.PasswordAt, a.MustChange, a.TempUntil = hash, p.now(), false, time.Time{}
	a.Gen++
	if _, err := p.Store.SaveAccount(ctx, clinic, s.EmailKey, a, s.rev); err != nil {
		return "", err
	}
	_ = p.Store.DropToken(ctx, clinic, PortalSessionRecord, tokenKey(token), 0)
	p.audit(ctx, clinic, AuditPortalPassword, ip, "changed")
	return p.startSession(ctx, clinic, s.EmailKey, a)
}

// Grant gives the patient of email at clinic portal access with a
// temporary password, of which the clinic sends only the argon2id hash
// (password.Ours): good for PortalTempLife, to be replaced at first
// sign-in. An existing account's password is replaced the same way, and
// its sessions and links end.
func (p *Portal) Grant(ctx context.Context, clinic, email, hash string) error {
	email = strings.TrimSpace(email)
	if !ValidEmail(email) || !password.Ours(hash) {
		return Errorf(EInvalid, "a grant is an email address and an argon2id hash made as internal/password makes them")
	}
	key := p.Store.EmailKey(clinic, email)
	for range 3 { // a concurrent write to the account: read again
		acct, rev, err := p.Store.Account(ctx, clinic, key)
		switch {
		case ErrorCode(err) == ENotFound:
			acct, rev = PortalAccount{ID: NewToken(), ClinicID: clinic, Created: p.now()}, 0
		case err != nil:
			return err
		}
		acct.Hash, acct.MustChange, acct.TempUntil, acct.PasswordAt = hash, true, p.now().Add(PortalTempLife), p.now()
		acct.Gen++
		acct.Fails, acct.FailedSince, acct.LockedUntil = 0, time.Time{}, time.Time{}
		// Recorded by the clinic, with the staff user who gave it.
		_, err = p.Store.SaveAccount(ctx, clinic, key, acct, rev)
		if err == nil {
			return nil
		}
		if ErrorCode(err) != EConflict {
			return err
		}
	}
	return Errorf(EUnavailable, "the account kept changing; try again")
}

// AddRequest lists a request sent while signed in with token on its
// account, when the request's email is the account's: its status page is
// then one click from the portal. It changes nothing otherwise.
func (p *Portal) AddRequest(ctx context.Context, clinic, token, email, requestID, statusToken string) error {
	for range 3 { // a concurrent write to the account: read again
		s, err := p.Ready(ctx, clinic, token)
		if err != nil || s.EmailKey != p.Store.EmailKey(clinic, strings.TrimSpace(email)) {
			return nil
		}
		a := s.Account
		a.Requests = slices.Insert(slices.Clone(a.Requests), 0, PortalRequest{ID: requestID, Token: statusToken, At: p.now()})
		if len(a.Requests) > PortalMaxRequests {
			a.Requests = a.Requests[:PortalMaxRequests]
		}
		_, err = p.Store.SaveAccount(ctx, clinic, s.EmailKey, a, s.rev)
		if ErrorCode(err) != EConflict {
			return err
		}
	}
	return errors.New("portal: the account kept changing")
}

package services

import (
	"context"
	"errors"
	"slices"
	"strings"
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
	AuditPortalSignInBad = "portal-signin-bad" // web: a sign-in (or a password change) refused
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
	// Send emails msg to a bare address; From is its From. Permanent
	// says whether a Send error is final (the server refused the address
	// for good), Describe what of it may be logged (an SMTP server's text
	// may quote the address); as the notifier's (jetstream/notify).
	Send      func(ctx context.Context, to string, msg []byte) error
	From      string
	Permanent func(error) bool
	Describe  func(error) string
	// LinkURL is the set-password page of a link's token at clinic.
	LinkURL   func(clinic Clinic, token string) string
	Directory Directory
	Audit     Auditor
	Now       func() time.Time

	sealer Sealer
}

// hashers bounds the argon2id hashes the portal computes at once.
var hashers = password.NewTurns(2)

// hashWait is how long a sign-in waits for its turn to hash.
const hashWait = 5 * time.Second

// accountTries bounds the read-modify-write loop on one account.
const accountTries = 8

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

func errBusy() error {
	return Errorf(EUnavailable, "the portal is busy; try again in a moment")
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

// passwordField checks a new password as a form field, in the catalogue's
// words (field.password.*).
func passwordField(field, pw string) error {
	err := password.Check("", pw)
	if err == nil {
		return nil
	}
	key := "field.password.common"
	switch {
	case errors.Is(err, password.ErrShort):
		key = "field.password.short"
	case errors.Is(err, password.ErrLong):
		key = "field.password.long"
	case errors.Is(err, password.ErrRepeated):
		key = "field.password.repeated"
	}
	var f FieldErrors
	f.AddKey(field, key, strings.Replace(err.Error(), "password", field, 1))
	return f.Err()
}

// CanRegister reports whether patients can register alone: the relay
// emails links.
func (p *Portal) CanRegister() bool { return p.Outbox != nil && p.Send != nil }

// Register asks clinic whether its records hold email; if they do, the
// relay emails a link to set a password (Answer). It answers the same
// whatever the clinic will say: nil for any well-formed email.
func (p *Portal) Register(ctx context.Context, clinic Clinic, email, lang, ip string) error {
	email = strings.TrimSpace(email)
	if err := emailField(email); err != nil {
		return err
	}
	if !p.CanRegister() {
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
	asked := PortalAsked{Email: email, Lang: Lang(lang), At: p.now()}
	if err := p.Store.PutToken(ctx, clinic.ID, PortalAskedRecord, id, asked, PortalLinkLife); err != nil {
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
// hold the email, and details, to a question about a signed-in patient,
// are theirs sealed to the session key. A check already answered or expired is nothing to do, and
// so is one whose address the mail server refuses for good. Any other error
// means the link was not sent and the answer should come again.
func (p *Portal) Answer(ctx context.Context, clinic, check string, known bool, details *Sealed) error {
	var asked PortalAsked
	rev, err := p.Store.Token(ctx, clinic, PortalAskedRecord, check, &asked)
	switch {
	case ErrorCode(err) == ENotFound:
		return nil
	case err != nil:
		return err
	}
	// Taken once: the first answer to delete the question at its revision
	// acts on it, so two answers at once send one link.
	switch err := p.Store.DropToken(ctx, clinic, PortalAskedRecord, check, rev); ErrorCode(err) {
	case EConflict, ENotFound:
		return nil
	case EUnavailable:
		return err
	}
	if asked.Session != "" {
		// A signed-in patient's details, sealed to their session key:
		// kept beside the session while it lives, and not for one gone.
		var sess PortalSession
		_, err := p.Store.Token(ctx, clinic, PortalSessionRecord, asked.Session, &sess)
		if !known || details == nil || ErrorCode(err) == ENotFound {
			return nil
		}
		if err != nil {
			return err
		}
		left := PortalSessionMax - p.now().Sub(sess.Created)
		if left < time.Second {
			return nil
		}
		return p.Store.PutToken(ctx, clinic, PortalDetailsRecord, asked.Session, *details, left)
	}
	if !known {
		return nil
	}
	err = p.sendLink(ctx, clinic, asked)
	if err != nil && ErrorCode(err) != EInvalid {
		// Not sent: the question goes back for the answer that comes again.
		if left := PortalLinkLife - p.now().Sub(asked.At); left > time.Second {
			_ = p.Store.PutToken(ctx, clinic, PortalAskedRecord, check, asked, left)
		}
		return err
	}
	return nil
}

// sendLink mints a set-password link for asked's email and emails it.
func (p *Portal) sendLink(ctx context.Context, clinic string, asked PortalAsked) error {
	cl, ok := p.Directory.Clinic(clinic)
	if !ok || p.Send == nil || p.LinkURL == nil {
		return Errorf(EUnavailable, "portal: clinic %s or the mailer is not there", clinic)
	}
	token := NewToken()
	key := PortalTokenKey(token)
	link := PortalLink{EmailKey: p.Store.EmailKey(clinic, asked.Email), Email: asked.Email, At: p.now()}
	if err := p.Store.PutToken(ctx, clinic, PortalLinkRecord, key, link, PortalLinkLife); err != nil {
		return err
	}
	lang := Lang(asked.Lang)
	msg := Email{From: p.From, To: asked.Email, Subject: catalog.T(lang, "portal.mail.subject", cl.Name),
		Text: catalog.T(lang, "portal.mail.body", cl.Name, p.LinkURL(cl, StatusToken(clinic, token)),
			int(PortalLinkLife.Minutes())), Date: p.now(), MessageID: "portal." + NewToken() + "@clinicrelay"}
	b, err := msg.Bytes()
	if err == nil {
		err = p.Send(ctx, asked.Email, b)
	}
	if err != nil {
		_ = p.Store.DropToken(ctx, clinic, PortalLinkRecord, key, 0)
		return p.sendError(err)
	}
	p.audit(ctx, clinic, AuditPortalLinkSent, "", "")
	return nil
}

// sendError is a Send error as the domain's, saying only what may be
// logged: EInvalid when it is final, EUnavailable otherwise.
func (p *Portal) sendError(err error) error {
	code, why := EUnavailable, "the mail server could not be reached"
	if p.Permanent != nil && p.Permanent(err) {
		code = EInvalid
	}
	if p.Describe != nil {
		why = p.Describe(err)
	}
	return Errorf(code, "portal link not sent: %s", why)
}

// linkToken splits a link's "<clinic>_<token>" and checks it is of clinic.
func linkToken(clinic, s string) (string, error) {
	c, token, ok := strings.Cut(s, "_")
	if !ok || c != clinic || len(token) != 32 || strings.Trim(token, "0123456789abcdef") != "" {
		return "", errLink()
	}
	return token, nil
}

// LinkAlive reports whether a set-password link still works (for the page
// that opens it: a dead link says so at once).
func (p *Portal) LinkAlive(ctx context.Context, clinic, link string) bool {
	token, err := linkToken(clinic, link)
	if err != nil {
		return false
	}
	var l PortalLink
	_, err = p.Store.Token(ctx, clinic, PortalLinkRecord, PortalTokenKey(token), &l)
	return err == nil && p.now().Sub(l.At) <= PortalLinkLife
}

// SetPassword sets the password of the account a link is for, making the
// account on first use, and signs the patient in. A link works once, for
// PortalLinkLife, and not after a password was set since it was sent. Every
// other session of the account ends, and a lock on it is lifted.
func (p *Portal) SetPassword(ctx context.Context, clinic, link, pw, ip string) (string, error) {
	token, err := linkToken(clinic, link)
	if err != nil {
		return "", err
	}
	if err := passwordField("password", pw); err != nil {
		return "", err
	}
	key := PortalTokenKey(token)
	var l PortalLink
	rev, err := p.Store.Token(ctx, clinic, PortalLinkRecord, key, &l)
	if err != nil || p.now().Sub(l.At) > PortalLinkLife {
		return "", orUnavailable(err, errLink())
	}
	// Hashed before the link is used up: a busy portal leaves it working.
	hash, err := hashInTurn(pw)
	if err != nil {
		return "", err
	}
	// Used once: the first to delete it at its revision has it.
	if err := p.Store.DropToken(ctx, clinic, PortalLinkRecord, key, rev); err != nil {
		return "", orUnavailable(err, errLink())
	}
	acct, err := p.updateAccount(ctx, clinic, l.EmailKey, true, func(a *PortalAccount) error {
		if !l.At.After(a.PasswordAt) {
			return errLink() // a password was set since this link left
		}
		a.Hash, a.PasswordAt, a.MustChange, a.TempUntil = hash, p.now(), false, time.Time{}
		a.Gen++
		return nil
	})
	if err != nil {
		return "", err
	}
	_ = p.Store.DropToken(ctx, clinic, PortalFailRecord, l.EmailKey, 0)
	p.audit(ctx, clinic, AuditPortalPassword, ip, "link")
	return p.startSession(ctx, clinic, l.EmailKey, l.Email, acct)
}

// updateAccount applies change to the account of emailKey and saves it,
// reading it again when another write came first; create makes the
// account when there is none (else ENotFound). An error of change is
// returned as it is.
func (p *Portal) updateAccount(ctx context.Context, clinic, emailKey string, create bool,
	change func(*PortalAccount) error) (PortalAccount, error) {
	for range accountTries {
		acct, rev, err := p.Store.Account(ctx, clinic, emailKey)
		switch {
		case ErrorCode(err) == ENotFound && create:
			acct, rev = PortalAccount{ID: NewToken()}, 0 // bound to its clinic by its key
		case err != nil:
			return PortalAccount{}, err
		}
		if err := change(&acct); err != nil {
			return PortalAccount{}, err
		}
		_, err = p.Store.SaveAccount(ctx, clinic, emailKey, acct, rev)
		if ErrorCode(err) != EConflict {
			return acct, err
		}
	}
	return PortalAccount{}, errBusy()
}

// orUnavailable is err as a 503 when it is one, else what the caller says.
func orUnavailable(err, otherwise error) error {
	if err != nil && ErrorCode(err) == EUnavailable {
		return err
	}
	return otherwise
}

func hashInTurn(pw string) (string, error) {
	h, err := hashers.Hash(hashWait, pw)
	if err != nil {
		return "", Errorf(EUnavailable, "the portal is busy checking passwords: try again in a moment")
	}
	return h, nil
}

func verifyInTurn(hash, pw string) (bool, error) {
	ok, err := hashers.Verify(hashWait, hash, pw)
	if err != nil {
		return false, Errorf(EUnavailable, "the portal is busy checking passwords: try again in a moment")
	}
	return ok, nil
}

// Grant gives the patient of email at clinic portal access with a
// temporary password, of which the clinic sends only the argon2id hash
// (password.Ours): good for PortalTempLife, to be replaced at first
// sign-in. An account still on an earlier temporary password gets the new
// one (its sessions and links end); one whose owner chose a password is
// EConflict unless reset: the front desk confirms it has identified the
// patient (with no email link, as without --smtp-url, it is the only way
// back for one who forgot or locked their password). The clinic records
// it, with the staff user.
func (p *Portal) Grant(ctx context.Context, clinic, email, hash string, reset bool) error {
	email = strings.TrimSpace(email)
	if !ValidEmail(email) || !password.Ours(hash) {
		return Errorf(EInvalid, "a grant is an email address and an argon2id hash made as internal/password makes them")
	}
	key := p.Store.EmailKey(clinic, email)
	_, err := p.updateAccount(ctx, clinic, key, true, func(a *PortalAccount) error {
		if a.Hash != "" && !a.MustChange && !reset {
			// The front desk vouches for a caller, not for the mailbox: an
			// account whose owner chose a password is reset by its email.
			return Errorf(EConflict,
				"this patient already has a portal account with a password of their own: they can set a new one with the email link on the portal page")
		}
		a.Hash, a.MustChange, a.TempUntil, a.PasswordAt = hash, true, p.now().Add(PortalTempLife), p.now()
		a.Gen++
		return nil
	})
	if err == nil {
		_ = p.Store.DropToken(ctx, clinic, PortalFailRecord, key, 0)
	}
	return err
}

// AddRequest lists a request sent while signed in with token on its
// account, when the request's email is the account's: its status page is
// then one click from the portal. It changes nothing otherwise.
func (p *Portal) AddRequest(ctx context.Context, clinic, cookie, email, requestID, statusToken string) error {
	s, err := p.Ready(ctx, clinic, cookie)
	if err != nil || s.EmailKey != p.Store.EmailKey(clinic, strings.TrimSpace(email)) {
		return nil
	}
	_, err = p.updateAccount(ctx, clinic, s.EmailKey, false, func(a *PortalAccount) error {
		if a.ID != s.Account.ID {
			return errSession()
		}
		a.Requests = slices.Insert(slices.Clone(a.Requests), 0, PortalRequest{ID: requestID, Token: statusToken, At: p.now()})
		if len(a.Requests) > PortalMaxRequests {
			a.Requests = a.Requests[:PortalMaxRequests]
		}
		return nil
	})
	return err
}

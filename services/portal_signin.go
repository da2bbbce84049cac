package services

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/clinicrelay/clinicrelay/internal/password"
)

// Signing in to the portal, its sessions, and the count of failures that
// locks an email: kept in the store under the email's key (PortalFailRecord)
// whether an account has it or not, so every web front counts alike and no
// answer, nor its timing, says which emails have an account.

// portalFails is an email's failed sign-ins since Since; past
// PortalLockAfter, it is locked until Until.
type portalFails struct {
	N     int       `json:"n"`
	Since time.Time `json:"since"`
	Until time.Time `json:"until,omitzero"`
}

// failTries bounds the compare-and-set loop on one email's count.
const failTries = 16

// errLocked refuses while a lock lasts, for left still (Wait): the
// message gives the minutes left, and where the relay emails no links,
// says to call the clinic instead.
func (p *Portal) errLocked(left time.Duration) error {
	minutes := int((left + time.Minute - 1) / time.Minute)
	e := Keyed(ETooManyTries, "portal.locked",
		"too many failed sign-ins: wait %d minutes, or set a new password with the email link", minutes)
	if !p.CanRegister() {
		e = Keyed(ETooManyTries, "portal.locked_call",
			"too many failed sign-ins: wait %d minutes, or call the clinic for a temporary password", minutes)
	}
	e.Err, e.KeyArgs = Wait{left}, []any{minutes}
	return e
}

// locked is the error of the email of key while it is locked, else nil.
func (p *Portal) locked(ctx context.Context, clinic, key string) error {
	var f portalFails
	_, err := p.Store.Token(ctx, clinic, PortalFailRecord, key, &f)
	switch {
	case ErrorCode(err) == ENotFound:
		return nil
	case err != nil:
		return orUnavailable(err, errBusy())
	}
	if left := f.Until.Sub(p.now()); left > 0 {
		return p.errLocked(left)
	}
	return nil
}

// failed counts one failure of the email of key, every concurrent one too
// (compare-and-set): a failure that cannot be counted is an error, so that
// no guess goes uncounted.
func (p *Portal) failed(ctx context.Context, clinic, key string) error {
	for range failTries {
		var f portalFails
		rev, err := p.Store.Token(ctx, clinic, PortalFailRecord, key, &f)
		switch {
		case ErrorCode(err) == ENotFound:
			f, rev = portalFails{}, 0
		case err != nil:
			return orUnavailable(err, errBusy())
		}
		now := p.now()
		if now.Sub(f.Since) > PortalLockFor && !now.Before(f.Until) {
			f = portalFails{Since: now}
		}
		if f.N++; f.N >= PortalLockAfter && f.Until.IsZero() {
			f.Until = now.Add(PortalLockFor)
		}
		_, err = p.Store.SwapToken(ctx, clinic, PortalFailRecord, key, f, rev, 2*PortalLockFor)
		if ErrorCode(err) != EConflict {
			return orUnavailable(err, err)
		}
	}
	return errBusy()
}

// SignIn checks email and password at clinic and starts a session. An
// email that failed PortalLockAfter times in PortalLockFor (whether an
// account has it or not) is refused for PortalLockFor, whatever the
// password; a wrong password and an email with no account answer alike,
// after the same work.
func (p *Portal) SignIn(ctx context.Context, clinic, email, pw, ip string) (string, error) {
	email = strings.TrimSpace(email)
	if err := emailField(email); err != nil {
		return "", err
	}
	key := p.Store.EmailKey(clinic, email)
	if err := p.locked(ctx, clinic, key); err != nil {
		if ErrorCode(err) == ETooManyTries {
			p.audit(ctx, clinic, AuditPortalSignInBad, ip, "locked")
		}
		return "", err
	}
	acct, _, err := p.Store.Account(ctx, clinic, key)
	known := err == nil
	if !known {
		if ErrorCode(err) != ENotFound {
			return "", err
		}
		acct.Hash = password.Dummy()
	}
	ok, err := verifyInTurn(acct.Hash, pw)
	if err != nil {
		return "", err
	}
	if !ok || !known {
		if err := p.failed(ctx, clinic, key); err != nil {
			return "", err
		}
		p.audit(ctx, clinic, AuditPortalSignInBad, ip, "")
		return "", errSignIn()
	}
	if acct.MustChange && !p.now().Before(acct.TempUntil) {
		return "", Keyed(EUnauthorized, "portal.temp_expired",
			"this temporary password has expired: ask the clinic for a new one, or use the email link")
	}
	_ = p.Store.DropToken(ctx, clinic, PortalFailRecord, key, 0)
	p.audit(ctx, clinic, AuditPortalSignedIn, ip, "")
	return p.startSession(ctx, clinic, key, email, acct)
}

// A session's cookie is "<token>.<seed>": the token finds the session
// (the store keeps only its hash), the seed is the private half of the
// session's curve key, to which the clinic seals the patient's details
// (PatientDetails): the relay keeps them, and cannot open them without the
// patient's cookie.

// splitCookie is a session cookie's token and seed.
func splitCookie(cookie string) (token, seed string) {
	token, seed, _ = strings.Cut(cookie, ".")
	return token, seed
}

// startSession starts a session of acct, with a key of its own, and
// returns its cookie. With the patient's email, it asks the clinic for
// their details.
func (p *Portal) startSession(ctx context.Context, clinic, emailKey, email string, acct PortalAccount) (string, error) {
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		return "", &Error{Code: EInternal, Message: "a session key could not be made", Err: err}
	}
	token, asked := NewToken(), ""
	if email != "" {
		asked = NewToken()
	}
	// The session first: the clinic's answer may come back at once, and
	// is kept only for a session that is there.
	cookie, err := p.newSession(ctx, clinic, emailKey, acct, token, kp, asked)
	if err == nil && asked != "" {
		pub, _ := kp.PublicKey()
		p.askDetails(ctx, clinic, asked, PortalTokenKey(token), email, pub)
	}
	return cookie, err
}

// newSession keeps the session of token, whose key is kp and whose
// question about the patient's details (if any) is asked, and returns its
// cookie.
func (p *Portal) newSession(ctx context.Context, clinic, emailKey string, acct PortalAccount, token string, kp nkeys.KeyPair,
	asked string) (string, error) {
	seed, err := kp.Seed()
	if err != nil {
		return "", &Error{Code: EInternal, Message: "a session key could not be kept", Err: err}
	}
	now := p.now()
	s := PortalSession{AccountID: acct.ID, EmailKey: emailKey, Gen: acct.Gen, Created: now, Renewed: now, Asked: asked}
	if err := p.Store.PutToken(ctx, clinic, PortalSessionRecord, PortalTokenKey(token), s, PortalIdle); err != nil {
		return "", err
	}
	return token + "." + string(seed), nil
}

// askDetails asks the clinic, as question id, for the details of the
// patient of email, sealed to the session key pub; the answer is kept
// beside the session (Answer). Best effort: without them the patient types
// them.
func (p *Portal) askDetails(ctx context.Context, clinic, id, session, email, pub string) {
	to, ok := p.Directory.SealKey(clinic)
	if p.Outbox == nil || !ok {
		return
	}
	sealed, err := p.sealer.Seal(PortalCheck{ID: id, ClinicID: clinic, Email: email, ReplyTo: pub}, to)
	if err != nil {
		return
	}
	if p.Store.PutToken(ctx, clinic, PortalAskedRecord, id, PortalAsked{Session: session, At: p.now()}, PortalLinkLife) != nil {
		return
	}
	if p.Outbox.PublishPortalCheck(ctx, clinic, id, sealed) != nil {
		_ = p.Store.DropToken(ctx, clinic, PortalAskedRecord, id, 0)
	}
}

// endSession drops the session of key and the details kept beside it.
func (p *Portal) endSession(ctx context.Context, clinic, key string, rev uint64) {
	_ = p.Store.DropToken(ctx, clinic, PortalSessionRecord, key, rev)
	_ = p.Store.DropToken(ctx, clinic, PortalDetailsRecord, key, 0)
}

// carrySession starts, for a password change, the session that follows
// the one of cookie (s): a new token, the same key (the patient's browser
// holds it), its details and its question moved along.
func (p *Portal) carrySession(ctx context.Context, clinic, cookie string, s Signed, acct PortalAccount) (string, error) {
	oldToken, seed := splitCookie(cookie)
	old := PortalTokenKey(oldToken)
	var prev PortalSession
	_, _ = p.Store.Token(ctx, clinic, PortalSessionRecord, old, &prev)
	kp, err := nkeys.FromCurveSeed([]byte(seed))
	if err != nil {
		return p.startSession(ctx, clinic, s.EmailKey, "", acct) // a cookie of before session keys
	}
	token := NewToken()
	next := PortalTokenKey(token)
	fresh, err := p.newSession(ctx, clinic, s.EmailKey, acct, token, kp, prev.Asked)
	if err != nil {
		return "", err
	}
	var box Sealed
	if _, err := p.Store.Token(ctx, clinic, PortalDetailsRecord, old, &box); err == nil {
		_ = p.Store.PutToken(ctx, clinic, PortalDetailsRecord, next, box, PortalSessionMax)
	}
	var q PortalAsked
	if prev.Asked != "" {
		if _, err := p.Store.Token(ctx, clinic, PortalAskedRecord, prev.Asked, &q); err == nil {
			q.Session = next // the answer still to come goes to the new session
			if left := PortalLinkLife - p.now().Sub(q.At); left > time.Second {
				_ = p.Store.PutToken(ctx, clinic, PortalAskedRecord, prev.Asked, q, left)
			}
		}
	}
	p.endSession(ctx, clinic, old, 0)
	return fresh, nil
}

// Details are the signed-in patient's details as the clinic has them, for
// their booking form; ok is false while the clinic has not answered (or
// has none), signedIn whether a patient is signed in with cookie at all.
// Opened with the seed of the patient's cookie, in memory only.
func (p *Portal) Details(ctx context.Context, clinic, cookie string) (d PatientDetails, signedIn, ok bool) {
	if _, err := p.Ready(ctx, clinic, cookie); err != nil {
		return PatientDetails{}, false, false
	}
	d, ok = p.openDetails(ctx, clinic, cookie)
	return d, true, ok
}

// openDetails opens the details kept beside the session of cookie.
func (p *Portal) openDetails(ctx context.Context, clinic, cookie string) (PatientDetails, bool) {
	token, seed := splitCookie(cookie)
	var sealed Sealed
	if _, err := p.Store.Token(ctx, clinic, PortalDetailsRecord, PortalTokenKey(token), &sealed); err != nil {
		return PatientDetails{}, false
	}
	kp, err := nkeys.FromCurveSeed([]byte(seed))
	if err != nil {
		return PatientDetails{}, false
	}
	o, err := NewOpener(kp)
	if err != nil {
		return PatientDetails{}, false
	}
	d, err := o.OpenPatientDetails(sealed)
	return d, err == nil
}

// Signed is a signed-in patient: their account and session.
type Signed struct {
	Account  PortalAccount
	EmailKey string
}

// MustChange reports whether the patient must set a new password before
// anything else.
func (s Signed) MustChange() bool { return s.Account.MustChange }

// Session is the patient signed in with token at clinic, and renews the
// session. An unknown, idle or too old session, or one of an account whose
// password changed or that signed out everywhere since, is EUnauthorized.
func (p *Portal) Session(ctx context.Context, clinic, cookie string) (Signed, error) {
	token, _ := splitCookie(cookie)
	if len(token) != 32 {
		return Signed{}, errSession()
	}
	key := PortalTokenKey(token)
	var s PortalSession
	srev, err := p.Store.Token(ctx, clinic, PortalSessionRecord, key, &s)
	if err != nil {
		return Signed{}, orUnavailable(err, errSession())
	}
	now := p.now()
	if now.Sub(s.Renewed) > PortalIdle || now.Sub(s.Created) > PortalSessionMax {
		p.endSession(ctx, clinic, key, srev)
		return Signed{}, errSession()
	}
	acct, _, err := p.Store.Account(ctx, clinic, s.EmailKey)
	if err != nil || acct.ID != s.AccountID || acct.Gen != s.Gen {
		if err == nil || ErrorCode(err) == ENotFound {
			p.endSession(ctx, clinic, key, srev) // signed out everywhere, or a new password, since
		}
		return Signed{}, orUnavailable(err, errSession())
	}
	if now.Sub(s.Renewed) > time.Minute { // renewed at most once a minute: a write per page is not worth it
		s.Renewed = now
		ttl := min(PortalIdle, PortalSessionMax-now.Sub(s.Created))
		// At the revision read: a session signed out meanwhile stays out.
		_, _ = p.Store.SwapToken(ctx, clinic, PortalSessionRecord, key, s, srev, ttl)
	}
	return Signed{Account: acct, EmailKey: s.EmailKey}, nil
}

// Ready is Session for anything but changing the password: a patient
// signed in with a temporary password must set their own first.
func (p *Portal) Ready(ctx context.Context, clinic, cookie string) (Signed, error) {
	s, err := p.Session(ctx, clinic, cookie)
	if err == nil && s.MustChange() {
		err = Keyed(EForbidden, "portal.must_change", "set a password of your own first")
	}
	return s, err
}

// SignOut ends the session of token; everywhere ends every session of its
// account.
func (p *Portal) SignOut(ctx context.Context, clinic, cookie string, everywhere bool, ip string) error {
	s, err := p.Session(ctx, clinic, cookie)
	if err != nil {
		return err
	}
	detail := ""
	if everywhere {
		detail = "everywhere"
		_, err := p.updateAccount(ctx, clinic, s.EmailKey, false, func(a *PortalAccount) error {
			a.Gen++
			return nil
		})
		if err != nil {
			return err
		}
	}
	token, _ := splitCookie(cookie)
	key := PortalTokenKey(token)
	if err := p.Store.DropToken(ctx, clinic, PortalSessionRecord, key, 0); err != nil {
		return err
	}
	_ = p.Store.DropToken(ctx, clinic, PortalDetailsRecord, key, 0)
	p.audit(ctx, clinic, AuditPortalSignedOut, ip, detail)
	return nil
}

// ChangePassword replaces the signed-in patient's password (a temporary
// one too), ends their other sessions and returns the new session's token.
// A wrong current password counts as a failed sign-in, and locks the same.
func (p *Portal) ChangePassword(ctx context.Context, clinic, cookie, current, next, ip string) (string, error) {
	s, err := p.Session(ctx, clinic, cookie)
	if err != nil {
		return "", err
	}
	if err := p.locked(ctx, clinic, s.EmailKey); err != nil {
		return "", err
	}
	if err := passwordField("new_password", next); err != nil {
		return "", err
	}
	ok, err := verifyInTurn(s.Account.Hash, current)
	if err != nil {
		return "", err
	}
	var f FieldErrors
	switch {
	case !ok:
		if err := p.failed(ctx, clinic, s.EmailKey); err != nil {
			return "", err
		}
		p.audit(ctx, clinic, AuditPortalSignInBad, ip, "password change")
		f.AddKey("current_password", "portal.current_wrong", "current_password is not your current password")
	case current == next:
		f.AddKey("new_password", "portal.same", "new_password must differ from the current one")
	}
	if err := f.Err(); err != nil {
		return "", err
	}
	hash, err := hashInTurn(next)
	if err != nil {
		return "", err
	}
	acct, err := p.updateAccount(ctx, clinic, s.EmailKey, false, func(a *PortalAccount) error {
		if a.ID != s.Account.ID || a.Gen != s.Account.Gen {
			return errSession() // signed out everywhere, or another change, meanwhile
		}
		a.Hash, a.PasswordAt, a.MustChange, a.TempUntil = hash, p.now(), false, time.Time{}
		a.Gen++
		return nil
	})
	if err != nil {
		return "", err
	}
	_ = p.Store.DropToken(ctx, clinic, PortalFailRecord, s.EmailKey, 0)
	p.audit(ctx, clinic, AuditPortalPassword, ip, "changed")
	return p.carrySession(ctx, clinic, cookie, s, acct)
}

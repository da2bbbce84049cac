package staff

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/clinicrelay/clinicrelay/services"
)

// Failed sign-ins: the first few are free, then each waits twice as long
// as the one before (up to maxDelay) before another is heard; LockAfter in a
// row lock the account for LockFor, or until an admin unlocks or resets it.
// One client address gets AddrLockAfter failures within AddrWindow, across
// accounts, then waits out the window.
const (
	freeTries     = 3
	maxDelay      = 30 * time.Second
	LockAfter     = 10
	LockFor       = 30 * time.Minute
	addrFreeTries = 5
	AddrLockAfter = 30
	AddrWindow    = 15 * time.Minute
)

// tries counts failed sign-ins in a row.
type tries struct {
	Failed int       `json:"failed,omitempty"`
	Last   time.Time `json:"last,omitzero"`
}

// wait is how long from now until another try is heard, after free tries.
func (t tries) wait(now time.Time, free int) time.Duration {
	if t.Failed < free {
		return 0
	}
	d := min(time.Second<<min(t.Failed-free, 10), maxDelay)
	return max(t.Last.Add(d).Sub(now), 0)
}

// addrTries are the failures per client address, in memory.
type addrTries struct {
	mu sync.Mutex
	m  map[string]*tries
}

// wait is how long addr must wait before another try.
func (a *addrTries) wait(addr string, now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.m[addr]
	if t == nil {
		return 0
	}
	if now.Sub(t.Last) >= AddrWindow {
		delete(a.m, addr)
		return 0
	}
	if t.Failed >= AddrLockAfter {
		return t.Last.Add(AddrWindow).Sub(now)
	}
	return t.wait(now, addrFreeTries)
}

func (a *addrTries) fail(addr string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.m[addr]
	if t == nil {
		if len(a.m) >= 10_000 { // a flood of addresses: forget the quiet ones
			for k, o := range a.m {
				if now.Sub(o.Last) >= AddrWindow {
					delete(a.m, k)
				}
			}
		}
		t = &tries{}
		a.m[addr] = t
	}
	t.Failed++
	t.Last = now
}

// waitError carries how long to wait, for a Retry-After.
type waitError struct{ d time.Duration }

func (w waitError) Error() string { return fmt.Sprintf("retry after %s", w.d) }

// RetryAfter is how long a sign-in refused with ETooManyTries must wait,
// rounded up to a second; 0 for any other error.
func RetryAfter(err error) time.Duration {
	var w waitError
	if errors.As(err, &w) {
		return w.d.Truncate(time.Second) + time.Second
	}
	return 0
}

// tooMany refuses a sign-in for d: who failed too often, and what else
// can be done.
func tooMany(d time.Duration, who, orElse string) error {
	e := services.Errorf(services.ETooManyTries, "too many failed sign-ins %s: try again in %s%s", who, roundUp(d), orElse)
	e.Err = waitError{d}
	return e
}

const askAdmin = ", or ask an admin to unlock the account"

func roundUp(d time.Duration) string {
	if d > time.Minute {
		return fmt.Sprintf("%d minutes", int(d.Minutes())+1)
	}
	return fmt.Sprintf("%d seconds", int(d.Seconds())+1)
}

// errWrong is the one answer to a wrong name, a wrong password and a
// disabled user alike: none says which names exist.
func errWrong() error { return services.Errorf(services.EUnauthorized, "wrong name or password") }

// SignIn checks name and password from a client at addr and starts a
// session. Before the password is checked, a client or account that failed
// too often is told to wait (ETooManyTries, see RetryAfter).
func (d *Directory) SignIn(name, password, addr string) (token string, u User, err error) {
	now := d.now()
	if w := d.addrs.wait(addr, now); w > 0 {
		return "", User{}, tooMany(w, "from this address", "")
	}
	var a *account
	err = d.view(func(b *bolt.Bucket) error {
		a, err = get(b, name)
		return err
	})
	if services.ErrorCode(err) == services.ENotFound || err == nil && len(password) > maxPasswordLen {
		verifyPassword(dummyHash, password) // as long as a real check
		d.addrs.fail(addr, now)
		return "", User{}, errWrong()
	}
	if err != nil {
		return "", User{}, err
	}
	if now.Before(a.LockedUntil) {
		return "", User{}, tooMany(a.LockedUntil.Sub(now), "for this user", askAdmin)
	}
	if w := a.Tries.wait(now, freeTries); w > 0 {
		return "", User{}, tooMany(w, "for this user", askAdmin)
	}
	if !verifyPassword(a.Hash, password) {
		d.addrs.fail(addr, now)
		if _, err := d.change(name, func(a *account) error {
			a.Tries.Failed++
			a.Tries.Last = now
			if a.Tries.Failed >= LockAfter {
				a.LockedUntil = now.Add(LockFor)
			}
			return nil
		}); err != nil {
			return "", User{}, err
		}
		return "", User{}, errWrong()
	}
	if a.Disabled {
		return "", User{}, errWrong()
	}
	if a.MustChange && !now.Before(a.OneTimeUntil) {
		return "", User{}, services.Errorf(services.EUnauthorized,
			"this one-time password has expired: ask an admin to reset the account")
	}
	if a.Tries.Failed > 0 || !a.LockedUntil.IsZero() {
		if a.User, err = d.change(name, func(a *account) error {
			a.Tries, a.LockedUntil = tries{}, time.Time{}
			return nil
		}); err != nil {
			return "", User{}, err
		}
	}
	return d.sessions.start(a.Name, a.Gen, now), a.User, nil
}

// Session is the user signed in with token, and renews the session; an
// ended, idle or unknown session is EUnauthorized, as is one whose user
// was disabled, reset or given a new password or role since.
func (d *Directory) Session(token string) (User, error) { return d.session(token, true) }

func (d *Directory) session(token string, renew bool) (User, error) {
	now := d.now()
	s, ok := d.sessions.get(token, now, renew)
	if !ok {
		return User{}, services.Errorf(services.EUnauthorized, "not signed in, or signed out after a while idle")
	}
	var a *account
	err := d.view(func(b *bolt.Bucket) error {
		var err error
		a, err = get(b, s.name)
		return err
	})
	if err == nil && (a.Disabled || a.Gen != s.gen) || services.ErrorCode(err) == services.ENotFound {
		d.sessions.end(token)
		return User{}, services.Errorf(services.EUnauthorized, "this session has ended: sign in again")
	}
	if err != nil {
		return User{}, err
	}
	return a.User, nil
}

// Peek is Session without renewing it: for what the browser does by itself
// (a live page), which must not keep an idle user signed in.
func (d *Directory) Peek(token string) (User, error) { return d.session(token, false) }

// SignOut ends the session of token.
func (d *Directory) SignOut(token string) { d.sessions.end(token) }

// ChangePassword replaces the password of the user signed in with token
// (current must be right) and returns a new session token: every session
// of the user ends, this one included.
func (d *Directory) ChangePassword(token, current, next string) (string, error) {
	u, err := d.Session(token)
	if err != nil {
		return "", err
	}
	if err := CheckPassword(u.Name, next); err != nil {
		return "", err
	}
	if current == next {
		var fe services.FieldErrors
		fe.Add("password", "the new password must differ from the current one")
		return "", fe.Err()
	}
	hash := hashPassword(next)
	var gen uint64
	_, err = d.change(u.Name, func(a *account) error {
		if !verifyPassword(a.Hash, current) {
			var fe services.FieldErrors
			fe.Add("current", "the current password is wrong")
			return fe.Err()
		}
		a.Hash, a.MustChange, a.OneTimeUntil, a.PasswordAt = hash, false, time.Time{}, d.now()
		a.Gen++
		gen = a.Gen
		return nil
	})
	if err != nil {
		return "", err
	}
	d.sessions.end(token)
	return d.sessions.start(u.Name, gen, d.now()), nil
}

// sessions are the console's signed-in users, by the SHA-256 of their token.
type sessions struct {
	mu        sync.Mutex
	idle, max time.Duration
	m         map[[32]byte]*session
}

type session struct {
	name          string
	gen           uint64
	started, seen time.Time
}

func (s *sessions) start(name string, gen uint64, now time.Time) string {
	token := rand.Text() + rand.Text() // 260 bits
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, o := range s.m {
		if !s.live(o, now) {
			delete(s.m, k)
		}
	}
	s.m[sha256.Sum256([]byte(token))] = &session{name: name, gen: gen, started: now, seen: now}
	return token
}

func (s *sessions) live(o *session, now time.Time) bool {
	return now.Sub(o.seen) < s.idle && now.Sub(o.started) < s.max
}

func (s *sessions) get(token string, now time.Time, renew bool) (session, bool) {
	k := sha256.Sum256([]byte(token))
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.m[k]
	if o == nil {
		return session{}, false
	}
	if !s.live(o, now) {
		delete(s.m, k)
		return session{}, false
	}
	if renew {
		o.seen = now
	}
	return *o, true
}

func (s *sessions) end(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sha256.Sum256([]byte(token)))
}

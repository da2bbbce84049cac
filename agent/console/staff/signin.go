package staff

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/clinicrelay/clinicrelay/internal/password"
	"github.com/clinicrelay/clinicrelay/services"
)

// Failed sign-ins, counted in the console's memory for every name tried
// (whether a user has it or not, so that the answers and their timing say
// nothing of which names exist) and for every client address (an IPv6
// address by its /64): the first few are free, then each waits twice as long
// as the one before (up to maxDelay) before another is heard. LockAfter in a
// row lock the name for LockFor, or until an admin unlocks or resets the
// user. One address gets AddrLockAfter failures within AddrWindow, across
// names, then waits out the window. A restart of the console forgets them.
const (
	freeTries     = 3
	maxDelay      = 30 * time.Second
	LockAfter     = 10
	LockFor       = 30 * time.Minute
	addrFreeTries = 5
	AddrLockAfter = 30
	AddrWindow    = 15 * time.Minute
	maxThrottled  = 20_000 // names and addresses remembered; the quietest go first past it
)

// tries counts failed sign-ins in a row.
type tries struct {
	Failed int
	Last   time.Time
	Locked time.Time // until then, nothing is heard
	// unlocks is the user's Unlocks when counting began: an admin's unlock
	// or reset (in any process) bumps it, and the count starts again.
	unlocks uint64
	busy    bool // a check is running: one at a time per name
}

// wait is how long from now until another try is heard, after free tries.
func (t *tries) wait(now time.Time, free int) time.Duration {
	if now.Before(t.Locked) {
		return t.Locked.Sub(now)
	}
	if t.Failed < free {
		return 0
	}
	d := min(time.Second<<min(t.Failed-free, 10), maxDelay)
	return max(t.Last.Add(d).Sub(now), 0)
}

// throttle is the failures by name and by address.
type throttle struct {
	mu    sync.Mutex
	names map[string]*tries
	addrs map[string]*tries
}

// addrKey is the key of a client address: an IPv6 address by its /64
// (one LAN host has them all), anything else as it is.
func addrKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Is4() || ip.Is4In6() {
		return addr
	}
	p, _ := ip.Prefix(64)
	return p.String()
}

func entry(m map[string]*tries, key string, now time.Time) *tries {
	t := m[key]
	if t == nil {
		if len(m) >= maxThrottled {
			forgetQuietest(m, now)
		}
		t = &tries{}
		m[key] = t
	}
	return t
}

// forgetQuietest drops the entries not failed for AddrWindow, and if none
// is that quiet, the oldest tenth.
func forgetQuietest(m map[string]*tries, now time.Time) {
	for k, t := range m {
		if now.Sub(t.Last) >= AddrWindow && !now.Before(t.Locked) && !t.busy {
			delete(m, k)
		}
	}
	if len(m) < maxThrottled {
		return
	}
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int { return m[a].Last.Compare(m[b].Last) })
	for _, k := range keys[:len(keys)/10] {
		if !m[k].busy {
			delete(m, k)
		}
	}
}

// begin says how long name, tried from addr, must wait, and when it need
// not, marks the name busy until end: two checks of one name never run
// together, so a burst of guesses cannot pass one count.
func (th *throttle) begin(name, addr string, unlocks uint64, now time.Time) error {
	th.mu.Lock()
	defer th.mu.Unlock()
	a := entry(th.addrs, addrKey(addr), now)
	if now.Sub(a.Last) >= AddrWindow {
		*a = tries{}
	}
	if a.Failed >= AddrLockAfter {
		return tooMany(a.Last.Add(AddrWindow).Sub(now), "from this address", "")
	}
	if w := a.wait(now, addrFreeTries); w > 0 {
		return tooMany(w, "from this address", "")
	}
	n := entry(th.names, name, now)
	if n.unlocks != unlocks {
		*n = tries{unlocks: unlocks}
	}
	if n.busy {
		return tooMany(time.Second, "for this user", askAdmin)
	}
	if w := n.wait(now, freeTries); w > 0 {
		return tooMany(w, "for this user", askAdmin)
	}
	n.busy = true
	return nil
}

// end records the check begun for name: a failure counts for the name and
// the address, a success clears the name's count.
func (th *throttle) end(name, addr string, failed bool, now time.Time) {
	th.mu.Lock()
	defer th.mu.Unlock()
	n := entry(th.names, name, now)
	n.busy = false
	if !failed {
		*n = tries{unlocks: n.unlocks}
		return
	}
	for _, t := range []*tries{n, entry(th.addrs, addrKey(addr), now)} {
		t.Failed++
		t.Last = now
	}
	if n.Failed >= LockAfter {
		n.Locked = now.Add(LockFor)
	}
}

// abort ends the check begun for name without counting it.
func (th *throttle) abort(name string) {
	th.mu.Lock()
	defer th.mu.Unlock()
	if n := th.names[name]; n != nil {
		n.busy = false
	}
}

// lockedUntil is when name's lock ends, zero when it is not locked.
func (th *throttle) lockedUntil(name string, unlocks uint64, now time.Time) time.Time {
	th.mu.Lock()
	defer th.mu.Unlock()
	if n := th.names[name]; n != nil && n.unlocks == unlocks && now.Before(n.Locked) {
		return n.Locked
	}
	return time.Time{}
}

// tooMany refuses a sign-in for d: who failed too often, and what else
// can be done.
func tooMany(d time.Duration, who, orElse string) error {
	e := services.Errorf(services.ETooManyTries, "too many failed sign-ins %s: try again in %s%s", who, roundUp(d), orElse)
	e.Err = services.Wait{D: d}
	return e
}

const askAdmin = ", or ask an admin to unlock the account"

func roundUp(d time.Duration) string {
	n, unit := int(d.Seconds())+1, "second"
	if d > time.Minute {
		n, unit = int(d.Minutes())+1, "minute"
	}
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// errWrong is the one answer to a wrong name, a wrong password and a
// disabled user alike: none says which names exist.
func errWrong() error { return services.Errorf(services.EUnauthorized, "wrong name or password") }

// SignIn checks name and password from a client at addr and starts a
// session. Before the password is checked, a name or address that failed
// too often is told to wait (ETooManyTries, see RetryAfter), and the same
// for a name no user has. known says whether a user has the name, for the
// console's own record.
func (d *Directory) SignIn(name, pw, addr string) (token string, u User, known bool, err error) {
	now := d.now()
	var a *account
	err = d.view(func(b *bolt.Bucket) error {
		a, err = get(b, name)
		return err
	})
	switch {
	case services.ErrorCode(err) == services.ENotFound:
		a, err = &account{Hash: password.Dummy()}, nil // as long as a real check, and counted the same
	case err != nil:
		return "", User{}, false, err
	}
	known = a.Name != ""
	if err := d.throttle.begin(name, addr, a.Unlocks, now); err != nil {
		return "", User{}, known, err
	}
	ok, err := d.check(name, addr, a.Hash, pw, now)
	ok = ok && known
	if err != nil {
		return "", User{}, known, err
	}
	switch {
	case !ok, a.Disabled:
		return "", User{}, known, errWrong()
	case a.MustChange && !now.Before(a.OneTimeUntil):
		return "", User{}, known, services.Errorf(services.EUnauthorized,
			"this one-time password has expired: ask an admin to reset the account")
	}
	return d.sessions.start(a.Name, a.Gen, now), a.User, known, nil
}

// check verifies pw against hash for a check begun on name, and ends it:
// counted as a failure unless it matches, not counted when the console was
// too busy to check.
func (d *Directory) check(name, addr, hash, pw string, now time.Time) (bool, error) {
	ok, err := hashers.Verify(hashWait, hash, pw) // an overlong password: as long as a check, never a match
	if err != nil {
		err = busy()
	}
	if err != nil {
		d.throttle.abort(name)
		return false, err
	}
	d.throttle.end(name, addr, !ok, now)
	return ok, nil
}

// LockedUntil is when the lock of the user name ends (zero: not locked),
// as this console counts.
func (d *Directory) LockedUntil(u User) time.Time {
	var unlocks uint64
	d.view(func(b *bolt.Bucket) error {
		if a, err := get(b, u.Name); err == nil {
			unlocks = a.Unlocks
		}
		return nil
	})
	return d.throttle.lockedUntil(u.Name, unlocks, d.now())
}

// hashers bounds the argon2 computations running at once (19 MiB each):
// a flood of sign-ins queues instead of exhausting memory.
var hashers = password.NewTurns(2)

// hashWait is how long a computation waits for its turn.
const hashWait = 5 * time.Second

func busy() error {
	return services.Errorf(services.EUnavailable, "the console is busy checking passwords: try again in a moment")
}

// Hash is password.Hash in the console's turn (a staff password, or a
// patient's temporary portal password); busy when none comes.
func Hash(pw string) (string, error) {
	h, err := hashers.Hash(hashWait, pw)
	if err != nil {
		return "", busy()
	}
	return h, nil
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
func (d *Directory) ChangePassword(token, current, next, addr string) (string, error) {
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
	// The current password is checked as a sign-in is, counted the same
	// (a guess at an unlocked desk meets the same delays), outside any
	// write to the accounts' file.
	var a *account
	if err := d.view(func(b *bolt.Bucket) error { a, err = get(b, u.Name); return err }); err != nil {
		return "", err
	}
	now := d.now()
	if err := d.throttle.begin(u.Name, addr, a.Unlocks, now); err != nil {
		return "", err
	}
	ok, err := d.check(u.Name, addr, a.Hash, current, now)
	if err != nil {
		return "", err
	}
	if !ok {
		var fe services.FieldErrors
		fe.Add("current", "the current password is wrong")
		return "", fe.Err()
	}
	hash, err := Hash(next)
	if err != nil {
		return "", err
	}
	var gen uint64
	_, err = d.change(u.Name, func(b *account) error {
		if b.Gen != a.Gen {
			return services.Errorf(services.EConflict, "the account changed meanwhile: sign in again")
		}
		b.Hash, b.MustChange, b.OneTimeUntil, b.PasswordAt = hash, false, time.Time{}, d.now()
		b.Gen++
		gen = b.Gen
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

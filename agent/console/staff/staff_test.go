package staff

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

// clock is a settable Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func open(t *testing.T) (*Directory, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 3, 3, 8, 0, 0, 0, time.UTC)}
	d, err := Open(Config{Path: filepath.Join(t.TempDir(), "staff.db"), Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return d, c
}

func code(t *testing.T, err error, want string) {
	t.Helper()
	if got := services.ErrorCode(err); got != want {
		t.Fatalf("err = %v (%s), want %s", err, got, want)
	}
}

const good = "correct horse battery"

// signedIn adds name with role, signs in with the one-time password and
// sets good: a user as after their first sign-in.
func signedIn(t *testing.T, d *Directory, name string, role Role, providers ...string) string {
	t.Helper()
	otp, err := d.Add(name, role, providers)
	if err != nil {
		t.Fatal(err)
	}
	tok, u, _, err := d.SignIn(name, otp, "10.0.0.1")
	if err != nil || !u.MustChange {
		t.Fatalf("first sign-in: %v, must change %v", err, u.MustChange)
	}
	tok, err = d.ChangePassword(tok, otp, good, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestCheckPassword_NamesTheField(t *testing.T) {
	err := CheckPassword("ana.front-desk", "ana.front-desk!")
	var e *services.Error
	if !errors.As(err, &e) || !strings.Contains(e.Fields["password"], "user name") {
		t.Errorf("%v, want the password field saying it holds the user name", err)
	}
	if err := CheckPassword("ana.front-desk", good); err != nil {
		t.Errorf("%q refused: %v", good, err)
	}
}

func TestFirstSignIn_MustChange(t *testing.T) {
	d, c := open(t)
	otp, err := d.Add("ana", RoleFrontDesk, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Add("ana", RoleAdmin, nil); services.ErrorCode(err) != services.EConflict {
		t.Fatalf("second ana: %v", err)
	}
	tok, u, _, err := d.SignIn("ana", otp, "10.0.0.1")
	if err != nil || !u.MustChange {
		t.Fatalf("sign in with the one-time password: %v, must change %v", err, u.MustChange)
	}
	_, err = d.ChangePassword(tok, otp, "password1234", "10.0.0.1")
	code(t, err, services.EInvalid)
	_, err = d.ChangePassword(tok, "not it", good, "10.0.0.1")
	code(t, err, services.EInvalid)
	tok2, err := d.ChangePassword(tok, otp, good, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Session(tok)
	code(t, err, services.EUnauthorized) // the old session ended with the change
	if u, err := d.Session(tok2); err != nil || u.MustChange {
		t.Fatalf("new session: %v, must change %v", err, u.MustChange)
	}
	_, _, _, err = d.SignIn("ana", otp, "10.0.0.1")
	code(t, err, services.EUnauthorized) // the one-time password is spent

	// An unused one-time password stops working after OneTimeLife.
	otp, _ = d.Add("bob", RoleFrontDesk, nil)
	c.Add(OneTimeLife)
	_, _, _, err = d.SignIn("bob", otp, "10.0.0.2")
	code(t, err, services.EUnauthorized)
}

func TestSession_EndsWhenIdleDisabledOrReset(t *testing.T) {
	d, c := open(t)
	signedIn(t, d, "boss", RoleAdmin)
	tok := signedIn(t, d, "ana", RoleFrontDesk)
	c.Add(DefaultIdleTimeout - time.Second)
	if _, err := d.Session(tok); err != nil {
		t.Fatalf("used within the idle timeout: %v", err)
	}
	c.Add(DefaultIdleTimeout - time.Second) // renewed by the last use
	if _, err := d.Session(tok); err != nil {
		t.Fatalf("renewed session: %v", err)
	}
	c.Add(DefaultIdleTimeout)
	_, err := d.Session(tok)
	code(t, err, services.EUnauthorized)

	tok, _, _, _ = d.SignIn("ana", good, "10.0.0.1")
	if err := d.Disable("ana"); err != nil {
		t.Fatal(err)
	}
	_, err = d.Session(tok)
	code(t, err, services.EUnauthorized)
	_, _, _, err = d.SignIn("ana", good, "10.0.0.1")
	code(t, err, services.EUnauthorized) // disabled: the same answer as a wrong password
	if err := d.Enable("ana"); err != nil {
		t.Fatal(err)
	}
	tok, _, _, err = d.SignIn("ana", good, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Reset("ana"); err != nil {
		t.Fatal(err)
	}
	_, err = d.Session(tok)
	code(t, err, services.EUnauthorized)

	tok = signedIn(t, d, "cy", RoleFrontDesk)
	if err := d.SetRole("cy", RoleFrontDesk, []string{"dr-a"}); err != nil {
		t.Fatal(err)
	}
	_, err = d.Session(tok)
	code(t, err, services.EUnauthorized) // a narrower role takes effect at once
	if _, err := d.Session("made-up"); services.ErrorCode(err) != services.EUnauthorized {
		t.Fatalf("made-up token: %v", err)
	}
}

func TestLastAdmin(t *testing.T) {
	d, _ := open(t)
	d.Add("boss", RoleAdmin, nil)
	code(t, d.Disable("boss"), services.EConflict)
	code(t, d.SetRole("boss", RoleFrontDesk, nil), services.EConflict)
	d.Add("second", RoleAdmin, nil)
	if err := d.Disable("boss"); err != nil {
		t.Fatalf("with another admin: %v", err)
	}
	if u, _ := d.Get("boss"); !u.Disabled {
		t.Fatal("not disabled")
	}
}

func TestSignIn_DelaysThenLockout(t *testing.T) {
	d, c := open(t)
	signedIn(t, d, "ana", RoleFrontDesk)
	for range freeTries {
		_, _, _, err := d.SignIn("ana", "wrong password", "10.0.0.9")
		code(t, err, services.EUnauthorized)
	}
	// Past the free tries, the next one waits, whatever the password.
	_, _, _, err := d.SignIn("ana", good, "10.0.0.9")
	code(t, err, services.ETooManyTries)
	if services.RetryAfter(err) < time.Second {
		t.Fatalf("Retry-After %s", services.RetryAfter(err))
	}
	var waited []time.Duration
	for n := freeTries; n < LockAfter; n++ {
		w := time.Duration(0)
		for {
			// A new address each time: the account's count alone.
			_, _, _, err = d.SignIn("ana", "wrong password", fmt.Sprintf("10.0.2.%d", n))
			if services.ErrorCode(err) != services.ETooManyTries {
				break
			}
			c.Add(time.Second)
			w += time.Second
		}
		code(t, err, services.EUnauthorized)
		waited = append(waited, w)
	}
	for i := 1; i < len(waited); i++ {
		if waited[i] < waited[i-1] {
			t.Fatalf("delays %v: want them growing", waited)
		}
	}
	if waited[len(waited)-1] < 8*time.Second {
		t.Fatalf("delays %v: want them to grow to several seconds", waited)
	}
	u, _ := d.Get("ana")
	if until := d.LockedUntil(u); !until.After(c.Now()) {
		t.Fatalf("after %d failures: not locked (%v)", LockAfter, until)
	}
	c.Add(maxDelay)
	_, _, _, err = d.SignIn("ana", good, "10.0.1.1")
	code(t, err, services.ETooManyTries) // locked: even the right password waits
	if !strings.Contains(err.Error(), "admin") {
		t.Fatalf("lockout message %q: want it to say an admin can unlock", err)
	}
	if err := d.Unlock("ana"); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := d.SignIn("ana", good, "10.0.1.1"); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
}

func TestSignIn_PerAddress(t *testing.T) {
	d, c := open(t)
	signedIn(t, d, "ana", RoleFrontDesk)
	// One address guessing across many names (none of them real).
	n := 0
	for ; n < 100; n++ {
		_, _, _, err := d.SignIn(fmt.Sprintf("nobody%d", n), "guess guess guess", "10.9.9.9")
		if services.ErrorCode(err) == services.ETooManyTries {
			break
		}
		code(t, err, services.EUnauthorized) // unknown names answer as wrong passwords
		c.Add(maxDelay)                      // patient: waits out each delay
	}
	if n != AddrLockAfter {
		t.Fatalf("address stopped after %d failures, want %d", n, AddrLockAfter)
	}
	_, _, _, err := d.SignIn("ana", good, "10.9.9.9")
	code(t, err, services.ETooManyTries)
	if _, _, _, err := d.SignIn("ana", good, "10.0.0.1"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	c.Add(AddrWindow)
	if _, _, _, err := d.SignIn("ana", good, "10.9.9.9"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

// The user command writes the file while the console has it: each opens it
// only for an operation.
func TestTwoDirectoriesShareTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "staff.db")
	console, err := Open(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := Open(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	otp, err := cli.Add("ana", RoleFrontDesk, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, _, err := console.SignIn("ana", otp, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cli.Add("boss", RoleAdmin, nil)
	if err := cli.Disable("ana"); err != nil {
		t.Fatal(err)
	}
	_, err = console.Session(tok)
	code(t, err, services.EUnauthorized)
}

func TestCheckName(t *testing.T) {
	for _, n := range []string{"", "a", "Ana", "ana smith", "-ana", strings.Repeat("a", 41), "ana/x"} {
		code(t, CheckName(n), services.EInvalid)
	}
	for _, n := range []string{"ana", "ana.smith", "front-desk-2", "a_b"} {
		if err := CheckName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
}

// What a live page does by itself does not keep an idle user signed in.
func TestPeek_DoesNotRenew(t *testing.T) {
	d, c := open(t)
	tok := signedIn(t, d, "ana", RoleFrontDesk)
	c.Add(DefaultIdleTimeout - time.Second)
	if _, err := d.Peek(tok); err != nil {
		t.Fatalf("peek within the idle timeout: %v", err)
	}
	c.Add(2 * time.Second) // idle since the sign-in: the peek renewed nothing
	_, err := d.Peek(tok)
	code(t, err, services.EUnauthorized)
}

// A name no user has is answered as a real one with a wrong password: the
// same codes and messages, try after try, lockout included.
func TestSignIn_NoEnumeration(t *testing.T) {
	d, c := open(t)
	signedIn(t, d, "ana", RoleFrontDesk)
	answers := func(name string) []string {
		var out []string
		for n := range LockAfter + 2 {
			_, _, _, err := d.SignIn(name, "wrong password", fmt.Sprintf("10.1.%d.1", n)) // the name's count alone
			msg := services.ErrorCode(err)
			var e *services.Error
			if errors.As(err, &e) {
				msg += " " + e.Message
			}
			out = append(out, msg)
			c.Add(maxDelay)
		}
		return out
	}
	real, none := answers("ana"), answers("nobody")
	if strings.Join(real, "|") != strings.Join(none, "|") {
		t.Fatalf("a user's answers differ from a stranger's:\n user %q\n none %q", real, none)
	}
	if !strings.Contains(real[len(real)-1], "too many") {
		t.Fatalf("never locked: %q", real)
	}
}

// A burst of guesses at one name at the same moment checks one at a time:
// the others are told to wait, and none passes the count.
func TestSignIn_BurstChecksOne(t *testing.T) {
	d, _ := open(t)
	signedIn(t, d, "ana", RoleFrontDesk)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for i := range 20 {
		wg.Go(func() {
			_, _, _, err := d.SignIn("ana", fmt.Sprintf("guess %d guess", i), fmt.Sprintf("10.2.0.%d", i))
			mu.Lock()
			codes[services.ErrorCode(err)]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[services.EUnauthorized] > freeTries || codes[services.EUnauthorized]+codes[services.ETooManyTries] != 20 {
		t.Fatalf("answers %v: want at most %d passwords checked, the rest told to wait", codes, freeTries)
	}
}

// One host's IPv6 addresses count as one address.
func TestAddrKey(t *testing.T) {
	if addrKey("2001:db8:1:2::1") != addrKey("2001:db8:1:2:ffff::9") || addrKey("2001:db8:1:2::1") == addrKey("2001:db8:1:3::1") {
		t.Fatal("IPv6 addresses not keyed by their /64")
	}
	if addrKey("10.0.0.1") == addrKey("10.0.0.2") {
		t.Fatal("IPv4 addresses merged")
	}
}

// Package password is how clinicrelay takes passwords, for the front
// desk's accounts (agent/console/staff) and the patients' (the portal):
// what it accepts (Check), argon2id hashes in the PHC string format (Hash,
// Verify), and a bound on the hashes computed at once (Turns), since each
// takes 19 MiB.
package password

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// MinLen is the shortest password accepted, in characters.
const MinLen = 12

// MaxLen bounds what is hashed, in bytes: argon2 reads all of it.
const MaxLen = 256

// argon2id parameters: OWASP's first recommendation (19 MiB, 2 passes, 1
// lane). They are written into each hash, so raising them later still
// verifies the hashes made before.
const (
	argonMemory  = 19 * 1024 // KiB
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

//go:embed common-passwords.txt
var commonList []byte

// common holds the shipped list of common passwords, lower case, loaded
// on first use: every binary that links this package need not pay for it.
var common = sync.OnceValue(func() map[string]bool {
	m := make(map[string]bool, 10_000)
	sc := bufio.NewScanner(bytes.NewReader(commonList))
	for sc.Scan() {
		if w := sc.Text(); w != "" && !strings.HasPrefix(w, "#") {
			m[w] = true
		}
	}
	return m
})

// Why Check refuses a password, for callers that say it in other words
// (errors.Is); every refusal wraps one.
var (
	ErrShort    = errors.New("too short")
	ErrLong     = errors.New("too long")
	ErrRepeated = errors.New("one character repeated")
	ErrCommon   = errors.New("too common")
	ErrName     = errors.New("holds the name")
)

// refused is a refusal: its message, and why.
type refused struct {
	msg string
	why error
}

func (r *refused) Error() string { return r.msg }
func (r *refused) Unwrap() error { return r.why }

// Check says why pw is not acceptable for the account called name (a user
// name or an email address), or nil: at least MinLen characters, not a
// common password (nor one with digits or symbols around it, like
// "dragon123456"), not one repeated character, and not the account's name.
// Its messages name the field "password".
func Check(name, pw string) error {
	n := utf8.RuneCountInString(pw)
	switch {
	case n < MinLen:
		return &refused{fmt.Sprintf("password must be at least %d characters", MinLen), ErrShort}
	case len(pw) > MaxLen:
		return &refused{fmt.Sprintf("password must be at most %d bytes", MaxLen), ErrLong}
	case strings.Count(pw, string([]rune(pw)[:1])) == n:
		return &refused{"password must not be one character repeated", ErrRepeated}
	}
	low := strings.ToLower(pw)
	core := strings.TrimFunc(low, func(r rune) bool { return unicode.IsDigit(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) })
	if list := common(); list[low] || list[core] || core == "" && isSequence(low) {
		return &refused{"password is too common: choose a longer phrase of your own", ErrCommon}
	}
	if local, _, _ := strings.Cut(strings.ToLower(name), "@"); local != "" && strings.Contains(low, local) {
		return &refused{"password must not contain the user name", ErrName}
	}
	return nil
}

// isSequence reports whether s is a run of consecutive characters, up or
// down ("123456789012" wraps), like a row of keys.
func isSequence(s string) bool {
	up, down := true, true
	for i := 1; i < len(s); i++ {
		d := int(s[i]) - int(s[i-1])
		up = up && (d == 1 || s[i-1] == '9' && s[i] == '0')
		down = down && (d == -1 || s[i-1] == '0' && s[i] == '9')
	}
	return up || down
}

// Hash is pw's argon2id hash in the PHC string format.
func Hash(pw string) string {
	salt := make([]byte, argonSaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

// Verify reports whether pw matches hash, in constant time for a given
// hash. A hash that does not parse matches nothing.
func Verify(hash, pw string) bool {
	var version int
	var memory, time uint32
	var threads uint8
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &memory, &time, &threads); err != nil ||
		memory == 0 || memory > 1<<20 || time == 0 || time > 16 || threads == 0 {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	key, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(key) == 0 || len(key) > 64 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, time, memory, threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}

// Ours reports whether hash is one Hash makes: argon2id with this
// package's parameters, salt and key lengths. A hash made elsewhere (an
// agent's, for a patient's temporary password) must be, so that checking
// it costs what a check of ours does, never more.
func Ours(hash string) bool {
	parts := strings.Split(hash, "$")
	want := fmt.Sprintf("m=%d,t=%d,p=%d", argonMemory, argonTime, argonThreads)
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) || parts[3] != want {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	key, err2 := b64.DecodeString(parts[5])
	return err1 == nil && err2 == nil && len(salt) == argonSaltLen && len(key) == argonKeyLen
}

// Dummy is a hash to check when no account has the name given, so that
// signing in as no one takes as long as with a wrong password. Made on
// first use (one hash: 19 MiB and about 25 ms).
var Dummy = sync.OnceValue(func() string { return Hash(rand.Text()) })

// OneTime is a password to be replaced at first sign-in: 20 characters of
// base32 in groups of five, about 100 bits.
func OneTime() string {
	t := rand.Text()[:20]
	return t[:5] + "-" + t[5:10] + "-" + t[10:15] + "-" + t[15:]
}

// Turns bounds the hashes computed at once (19 MiB each): a flood of
// sign-ins queues instead of exhausting memory. Its zero value is not
// usable: NewTurns.
type Turns chan struct{}

// NewTurns lets n hashes run at once.
func NewTurns(n int) Turns { return make(Turns, n) }

// ErrBusy is a hash that waited its turn too long.
var ErrBusy = errors.New("busy checking passwords: try again in a moment")

// Do runs f in its turn, waiting until ctx ends for one (ErrBusy).
func (t Turns) Do(ctx context.Context, f func()) error {
	select {
	case t <- struct{}{}:
	case <-ctx.Done():
		return ErrBusy
	}
	defer func() { <-t }()
	f()
	return nil
}

// Hash is Hash in its turn, waiting at most wait for one (ErrBusy).
func (t Turns) Hash(wait time.Duration, pw string) (h string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err = t.Do(ctx, func() { h = Hash(pw) })
	return h, err
}

// Verify is Verify in its turn, waiting at most wait for one (ErrBusy). A
// password longer than MaxLen is checked as an empty one: as long as any
// other check, and never a match.
func (t Turns) Verify(wait time.Duration, hash, pw string) (ok bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	too := len(pw) > MaxLen
	if too {
		pw = ""
	}
	err = t.Do(ctx, func() { ok = Verify(hash, pw) })
	return ok && !too, err
}

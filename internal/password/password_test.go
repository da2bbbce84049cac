package password

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

const good = "correct horse battery"

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		name, pw, want string
		why            error
	}{
		{"ana", "short", "at least 12", ErrShort},
		{"ana", strings.Repeat("long ", 60), "at most 256", ErrLong},
		{"ana", "aaaaaaaaaaaaaaa", "repeated", ErrRepeated},
		{"ana", "1qaz2wsx3edc", "too common", ErrCommon},
		{"ana", "Password1234!", "too common", ErrCommon}, // a common word with digits around it
		{"ana", "dragon123456", "too common", ErrCommon},
		{"ana", "123456789012", "too common", ErrCommon}, // a run of digits
		{"ana.front-desk", "ana.front-desk!", "user name", ErrName},
		{"marie.roy@example.org", "marie.roy-2026!", "user name", ErrName}, // an email's mailbox counts as the name
		{"ana.front-desk", good, "", nil},
		{"ana.front-desk", "ça va très bien", "", nil},
	} {
		err := Check(tt.name, tt.pw)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%q refused: %v", tt.pw, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, tt.why) {
			t.Errorf("%q: %v, want %q (%v)", tt.pw, err, tt.want, tt.why)
		}
	}
	if n := len(common()); n < 9_000 {
		t.Fatalf("common passwords: %d loaded, want the shipped 10,000", n)
	}
}

func TestHash(t *testing.T) {
	h := Hash(good)
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q: want argon2id with OWASP's parameters in PHC format", h)
	}
	if h == Hash(good) {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	if !Verify(h, good) || Verify(h, good+"x") || Verify("$argon2id$garbage", good) {
		t.Fatal("verify: right refused, wrong accepted, or garbage accepted")
	}
	costly := strings.Replace(h, "m=19456", "m=1048576", 1) // 1 GiB a check
	for _, bad := range []string{costly, "$argon2id$garbage", strings.TrimSuffix(h, h[len(h)-4:]), ""} {
		if Ours(bad) {
			t.Errorf("Ours(%q): want false", bad)
		}
	}
	if !Ours(h) {
		t.Errorf("Ours(%q): want true", h)
	}
}

func TestTurns_Busy(t *testing.T) {
	turns := NewTurns(1)
	hold, release := make(chan struct{}), make(chan struct{})
	go turns.Do(context.Background(), func() { close(hold); <-release })
	<-hold
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	ran := false
	if err := turns.Do(ctx, func() { ran = true }); !errors.Is(err, ErrBusy) || ran {
		t.Fatalf("second turn while the only one is taken: %v, ran %v; want ErrBusy", err, ran)
	}
	close(release)
	if err := turns.Do(context.Background(), func() { ran = true }); err != nil || !ran {
		t.Fatalf("turn once free: %v, ran %v", err, ran)
	}
}

// BenchmarkVerify is what one sign-in costs in CPU (19 MiB of memory
// besides): go test -bench Verify ./internal/password.
func BenchmarkVerify(b *testing.B) {
	h := Hash(good)
	for b.Loop() {
		Verify(h, good)
	}
}

// TestTurns_VerifyOverlong: a password past MaxLen never matches, even the
// hash of its first MaxLen bytes' empty stand-in.
func TestTurns_VerifyOverlong(t *testing.T) {
	turns := NewTurns(1)
	long := strings.Repeat("x", MaxLen+1)
	if ok, err := turns.Verify(time.Second, Hash(""), long); err != nil || ok {
		t.Fatalf("an overlong password against the empty one's hash: %v %v, want no match", ok, err)
	}
	if ok, err := turns.Verify(time.Second, Hash(good), good); err != nil || !ok {
		t.Fatalf("the right one: %v %v", ok, err)
	}
}

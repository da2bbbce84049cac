// Package poll is the tests' one way to wait for something that happens in
// the background: poll a condition until it holds or a deadline passes (as
// nats-server's own tests do with checkFor), instead of sleeping a guess.
package poll

import (
	"testing"
	"time"
)

// Every is how often For and Still check.
const Every = 10 * time.Millisecond

// For calls fn until it returns nil; after timeout the test fails with fn's
// last error.
func For(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		time.Sleep(Every)
	}
}

// Still calls fn for d and fails the test as soon as it returns an error:
// for what must not happen (a second email, a copy offered again).
func Still(t testing.TB, d time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if err := fn(); err != nil {
			t.Fatalf("within %s: %v", d, err)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(Every)
	}
}

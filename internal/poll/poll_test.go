package poll

import (
	"errors"
	"testing"
	"time"
)

// fakeT records a failure instead of ending the test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(string, ...any) {
	f.failed = true
	panic(f) // Fatalf ends the caller, as FailNow does
}

func run(fn func(t testing.TB)) (failed bool) {
	f := &fakeT{}
	defer func() {
		if r := recover(); r != nil && r != f {
			panic(r)
		}
		failed = f.failed
	}()
	fn(f)
	return false
}

func TestFor(t *testing.T) {
	start := time.Now()
	ok := func() error {
		if time.Since(start) < 50*time.Millisecond {
			return errors.New("not yet")
		}
		return nil
	}
	if run(func(t testing.TB) { For(t, time.Second, ok) }) {
		t.Error("For failed on a condition that comes true in 50 ms")
	}
	if !run(func(t testing.TB) { For(t, 30*time.Millisecond, func() error { return errors.New("never") }) }) {
		t.Error("For passed on a condition that never holds")
	}
}

func TestStill(t *testing.T) {
	if run(func(t testing.TB) { Still(t, 30*time.Millisecond, func() error { return nil }) }) {
		t.Error("Still failed on a condition that always holds")
	}
	start := time.Now()
	breaks := func() error {
		if time.Since(start) > 20*time.Millisecond {
			return errors.New("it happened")
		}
		return nil
	}
	if !run(func(t testing.TB) { Still(t, time.Second, breaks) }) {
		t.Error("Still passed on a condition that broke after 20 ms")
	}
}

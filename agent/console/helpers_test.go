package console_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/agent/console/staff"
	"github.com/clinicrelay/clinicrelay/services"
)

// toronto is the clinic's zone in every test.
var toronto = mustZone("America/Toronto")

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// at is a wall-clock time in Toronto on 2026-03-dd (Monday 2 to Saturday 7, EST).
func at(day, hour, minute int) time.Time {
	return time.Date(2026, time.March, day, hour, minute, 0, 0, toronto)
}

// clock is a settable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// env is a console on a temp file with the demo providers, the Toronto
// clinic and a clock set to Tuesday 2026-03-03 08:00.
type env struct {
	path  string
	clock *clock
	c     *console.Console
	admin *http.Cookie // the signed-in admin's session, sent by call, getPage and postForm
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{path: filepath.Join(t.TempDir(), "console.db"), clock: &clock{t: at(3, 8, 0)}}
	e.c = e.open(t)
	if err := e.c.SeedDemo(t.Context()); err != nil {
		t.Fatalf("SeedDemo: %v", err)
	}
	drain(e.c)
	return e
}

// open opens the console at e.path and closes it when the test ends.
func (e *env) open(t *testing.T) *console.Console {
	t.Helper()
	c, err := console.Open(console.Config{
		Path:   e.path,
		Addr:   "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
		Now:    e.clock.Now,
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetClinic(services.Clinic{ID: "maple", Name: "Maple Clinic", TimeZone: "America/Toronto"})
	if e.admin == nil {
		e.admin = signIn(t, c, "desk-admin", staff.RoleAdmin)
	} else { // reopened: the sessions were in the closed console's memory
		e.admin = postSession(t, c, "desk-admin", staffPassword, http.StatusOK)
	}
	sessions.Store(c, e.admin)
	return c
}

// reopen closes the console and opens the same file again.
func (e *env) reopen(t *testing.T) {
	t.Helper()
	if err := e.c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	e.c = e.open(t)
}

// request is a valid request number n for the slot of provider at start.
func request(n int, provider string, start time.Time) services.Request {
	return services.Request{
		ID:        services.RequestIDFor(fmt.Sprintf("token-%d", n)),
		ClinicID:  "maple",
		SlotID:    services.SlotID(provider, start),
		Name:      fmt.Sprintf("Patient Number%d", n),
		BirthDate: "1980-05-17",
		Phone:     "+1 416 555 0100",
		Email:     fmt.Sprintf("patient%d@example.org", n),
		Reason:    "Check-up <b>now</b>",
		Consent:   true,
		CreatedAt: at(3, 7, 0),
	}
}

// mustStore stores req or fails the test.
func (e *env) mustStore(t *testing.T, req services.Request) {
	t.Helper()
	if err := e.c.Store(t.Context(), req); err != nil {
		t.Fatalf("Store(%s): %v", req.ID, err)
	}
}

// drain empties the Changed channel.
func drain(c *console.Console) {
	select {
	case <-c.Changed():
	default:
	}
}

// changed reports whether Changed has a value, and takes it.
func changed(c *console.Console) bool {
	select {
	case <-c.Changed():
		return true
	default:
		return false
	}
}

// wantCode fails unless err is a services.Error with code and, when field is
// not "", names field.
func wantCode(t *testing.T, err error, code, field string) {
	t.Helper()
	var e *services.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want a services.Error %s", err, code)
	}
	if e.Code != code {
		t.Fatalf("code = %s (%v), want %s", e.Code, err, code)
	}
	if _, ok := e.Fields[field]; field != "" && !ok {
		t.Fatalf("fields = %v, want %q named", e.Fields, field)
	}
}

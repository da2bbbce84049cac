package console_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/agent/console/staff"
	"github.com/clinicrelay/clinicrelay/services"
)

// stream opens GET /api/events on srv with ck and returns its events, one
// "event|data" string each.
func stream(t *testing.T, srv *httptest.Server, ck *http.Cookie) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel) // before srv.Close, which waits for open streams
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
	req.AddCookie(ck)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /api/events: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	out := make(chan string, 16)
	go func() {
		defer res.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(res.Body)
		ev := ""
		for sc.Scan() {
			switch line := sc.Text(); {
			case strings.HasPrefix(line, "event: "):
				ev = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				out <- ev + "|" + strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return out
}

func next(t *testing.T, events <-chan string) string {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return ""
}

// The live page hears of each new request the user sees, at once, and of
// the end of its session; the stream carries counts, never patient data.
func TestEvents_Live(t *testing.T) {
	clk := &clock{t: at(3, 8, 0)}
	c, err := console.Open(console.Config{Path: filepath.Join(t.TempDir(), "console.db"), Now: clk.Now,
		LiveCheck: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetClinic(services.Clinic{ID: "maple", Name: "Maple Clinic", TimeZone: "America/Toronto"})
	if err := c.SeedDemo(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	ck := signIn(t, c, "lee-desk", staff.RoleFrontDesk, "dr-lee")
	events := stream(t, srv, ck)
	if ev := next(t, events); ev != `requests|{"pending":0}` {
		t.Fatalf("first event %q", ev)
	}
	lee := request(1, "dr-lee", at(3, 9, 0))
	if err := c.Store(t.Context(), lee); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, events); ev != `requests|{"pending":1}` {
		t.Fatalf("after a new request: %q", ev)
	}
	c.Store(t.Context(), request(2, "dr-patel", at(3, 10, 0))) // another provider's: the count stays
	if ev := next(t, events); ev != `requests|{"pending":1}` {
		t.Fatalf("after another provider's request: %q", ev)
	}
	if _, err := c.Confirm(t.Context(), lee.ID); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, events); ev != `requests|{"pending":0}` {
		t.Fatalf("after the confirmation: %q", ev)
	}
	// The stream itself does not keep the session alive: idle, it ends.
	clk.Set(at(3, 8, 0).Add(staff.DefaultIdleTimeout + time.Minute))
	if ev := next(t, events); ev != "signedout|{}" {
		t.Fatalf("after the idle timeout: %q", ev)
	}
}

// A server's read timeout (the console's is 30 s) does not end the stream
// (net/http clears the read deadline once the request is read): were it to,
// the browser would reconnect every 30 s.
func TestEvents_OutliveTheReadTimeout(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewUnstartedServer(e.c.Handler())
	srv.Config.ReadTimeout = 200 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	events := stream(t, srv, e.admin)
	if ev := next(t, events); ev != `requests|{"pending":0}` {
		t.Fatalf("first event %q", ev)
	}
	time.Sleep(time.Second) // five read timeouts
	e.mustStore(t, request(1, "dr-lee", at(3, 9, 0)))
	if ev := next(t, events); ev != `requests|{"pending":1}` {
		t.Fatalf("after the read timeout: %q, want the same stream to carry the new request", ev)
	}
}

package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

// abuseServer is the web front over the fuzz test's in-memory ports, served
// over real HTTP on loopback, with its clock in the test's hands.
type abuseServer struct {
	*fuzzServer
	url string
	mu  sync.Mutex
	now time.Time
}

func newAbuseServer(t *testing.T, l Limits, trusted ...string) *abuseServer {
	t.Helper()
	var proxies []netip.Prefix
	for _, p := range trusted {
		proxies = append(proxies, netip.MustParsePrefix(p))
	}
	return newAbuseServerWith(t, func(cfg *Config) { cfg.Limits, cfg.TrustedProxies = l, proxies })
}

// newAbuseServerWith is newAbuseServer with its Config set by edit.
func newAbuseServerWith(t *testing.T, edit func(*Config)) *abuseServer {
	t.Helper()
	a := &abuseServer{fuzzServer: newFuzzServer(t), now: fuzzNow}
	cfg := a.srv.cfg
	edit(&cfg)
	cfg.Now = a.clock
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.srv = srv
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	a.url = hs.URL
	return a
}

func (a *abuseServer) clock() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.now
}

func (a *abuseServer) advance(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.now = a.now.Add(d)
}

// post sends the API request body for clinic, from the client at xff when set.
func (a *abuseServer) post(t *testing.T, clinic, body, xff string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.url+"/api/v1/clinics/"+clinic+"/requests", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	return a.do(t, req)
}

func (a *abuseServer) get(t *testing.T, path, xff string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, a.url+path, nil)
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	return a.do(t, req)
}

func (a *abuseServer) do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

// want429 checks a 429 with Retry-After and, under /api, the JSON code.
func want429(t *testing.T, res *http.Response, retryAfter string) {
	t.Helper()
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", res.StatusCode)
	}
	if got := res.Header.Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After %q, want %q", got, retryAfter)
	}
	if strings.Contains(res.Request.URL.Path, "/api/") {
		var e apiError
		if err := json.NewDecoder(res.Body).Decode(&e); err != nil || e.Code != codeRateLimited || e.Error == "" {
			t.Errorf("429 body: %+v (%v), want code %q", e, err, codeRateLimited)
		}
	} else if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("429 page is %q, want text/html", ct)
	}
}

func TestRateLimit_CreateIP(t *testing.T) {
	a := newAbuseServer(t, Limits{CreateIP: Rate{Every: time.Hour, Burst: 2}})
	for i := range 2 {
		if res := a.post(t, "maple", fuzzBody, ""); res.StatusCode != http.StatusCreated {
			t.Fatalf("request %d: status %d", i+1, res.StatusCode)
		}
	}
	// X-Forwarded-For from an untrusted peer changes nothing.
	want429(t, a.post(t, "maple", fuzzBody, "203.0.113.9"), "3600")
	// The form shares the API's limit and answers a page.
	form := url.Values{"slot_id": {"dr-lee_20260302T1430Z"}}
	req, _ := http.NewRequest(http.MethodPost, a.url+"/c/maple/request", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	want429(t, a.do(t, req), "3600")
	// The wait shrinks as the bucket refills; then one more goes through.
	a.advance(59 * time.Minute)
	want429(t, a.post(t, "maple", fuzzBody, ""), "60")
	a.advance(time.Minute)
	if res := a.post(t, "maple", fuzzBody, ""); res.StatusCode != http.StatusCreated {
		t.Fatalf("after an hour: status %d", res.StatusCode)
	}
	// Reads have their own, looser limit.
	if res := a.get(t, "/api/v1/clinics", ""); res.StatusCode != http.StatusOK {
		t.Fatalf("read: status %d", res.StatusCode)
	}
}

// TestRateLimit_CreateClinic: the clinic's limit counts every IP; a request
// it refuses spends none of its IP's tokens.
func TestRateLimit_CreateClinic(t *testing.T) {
	a := newAbuseServer(t, Limits{CreateIP: Rate{Every: time.Hour, Burst: 1}, CreateClinic: Rate{Every: time.Minute, Burst: 1}},
		"127.0.0.1/32")
	if res := a.post(t, "maple", fuzzBody, "203.0.113.1"); res.StatusCode != http.StatusCreated {
		t.Fatalf("first: status %d", res.StatusCode)
	}
	want429(t, a.post(t, "maple", fuzzBody, "203.0.113.2"), "60")
	a.advance(time.Minute)
	if res := a.post(t, "maple", fuzzBody, "203.0.113.2"); res.StatusCode != http.StatusCreated {
		t.Fatalf("second IP after a minute: status %d (its token was spent by the refusal)", res.StatusCode)
	}
	// Made-up clinics get a 404 and no limiter, neither the clinic's nor
	// the IP's.
	for i := range 5 {
		if res := a.post(t, fmt.Sprintf("nope-%d", i), fuzzBody, fmt.Sprintf("198.51.100.%d", i)); res.StatusCode != http.StatusNotFound {
			t.Fatalf("unknown clinic: status %d", res.StatusCode)
		}
	}
	if n := a.srv.rates.createClinic.len(); n != 1 {
		t.Errorf("%d clinic limiters, want 1 (maple)", n)
	}
	if n := a.srv.rates.createIP.len(); n != 2 {
		t.Errorf("%d IP limiters, want 2 (the IPs that posted to maple)", n)
	}
}

// noRequest is a StatusSwapper that knows no request: a reschedule that
// gets past the limits answers 404.
type noRequest struct{}

func (noRequest) GetStatusRev(context.Context, string, string) (services.Status, uint64, error) {
	return services.Status{}, 0, services.Errorf(services.ENotFound, "no such request")
}

func (noRequest) SwapStatus(context.Context, services.Status, uint64) (uint64, error) {
	return 0, services.Errorf(services.EConflict, "changed")
}

// TestRateLimit_Reschedule: a reschedule holds a new slot, so it spends the
// creation tokens of its IP and of the token's clinic, on the form and the
// API alike; a malformed token or an unknown clinic spends none.
func TestRateLimit_Reschedule(t *testing.T) {
	a := newAbuseServer(t, Limits{CreateIP: Rate{Every: time.Hour, Burst: 2}, CreateClinic: Rate{Every: time.Minute, Burst: 4}},
		"127.0.0.1/32")
	a.srv.cfg.Booker.Swapper = noRequest{}
	token := "maple_" + strings.Repeat("ab", 16)
	api := func(token, xff string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, a.url+"/api/v1/requests/"+token+"/reschedule",
			strings.NewReader(`{"slot_id":"dr-lee_20260302T1430Z"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", xff)
		return a.do(t, req)
	}
	form := func(token, xff string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, a.url+"/r/"+token+"/reschedule",
			strings.NewReader(url.Values{"slot_id": {"dr-lee_20260302T1430Z"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("X-Forwarded-For", xff)
		return a.do(t, req)
	}
	// Malformed tokens and unknown clinics: 404, no token spent, no limiter.
	for i := range 5 {
		ip := fmt.Sprintf("198.51.100.%d", i)
		for _, tok := range []string{"garbage", "maple_xyz", "nope_" + strings.Repeat("ab", 16)} {
			if res := api(tok, ip); res.StatusCode != http.StatusNotFound {
				t.Fatalf("API reschedule of %q: status %d, want 404", tok, res.StatusCode)
			}
			if res := form(tok, ip); res.StatusCode != http.StatusNotFound {
				t.Fatalf("form reschedule of %q: status %d, want 404", tok, res.StatusCode)
			}
		}
	}
	if n, m := a.srv.rates.createIP.len(), a.srv.rates.createClinic.len(); n != 0 || m != 0 {
		t.Fatalf("%d IP and %d clinic limiters after bad tokens, want none", n, m)
	}
	// One IP: its two tokens, then 429 on the API and the form.
	for i := range 2 {
		if res := api(token, "203.0.113.1"); res.StatusCode != http.StatusNotFound {
			t.Fatalf("reschedule %d: status %d, want the handler's 404", i+1, res.StatusCode)
		}
	}
	want429(t, api(token, "203.0.113.1"), "3600")
	want429(t, form(token, "203.0.113.1"), "3600")
	// The clinic's limit counts the slots held from every IP: the refused
	// reschedules above gave its tokens back, so four creations get through
	// and the fifth, from a new address, hears that the clinic is busy.
	if res := form(token, "203.0.113.2"); res.StatusCode != http.StatusNotFound {
		t.Fatalf("second IP: status %d, want the handler's 404", res.StatusCode)
	}
	for i := range 4 {
		if res := a.post(t, "maple", fuzzBody, fmt.Sprintf("203.0.113.%d", 10+i)); res.StatusCode != http.StatusCreated {
			t.Fatalf("creation %d, within the clinic's 4 tokens: status %d", i+1, res.StatusCode)
		}
	}
	want429(t, api(token, "203.0.113.4"), "60")
	if b, _ := io.ReadAll(api(token, "203.0.113.5").Body); !strings.Contains(string(b), "clinic is receiving many requests") {
		t.Errorf("429 past the clinic's limit says %s, want that the clinic is busy", b)
	}
	want429(t, a.post(t, "maple", fuzzBody, "203.0.113.4"), "60")
	// Cancels keep the read limit only.
	req, _ := http.NewRequest(http.MethodPost, a.url+"/api/v1/requests/"+token+"/cancel", nil)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", "203.0.113.1")
	if res := a.do(t, req); res.StatusCode == http.StatusTooManyRequests {
		t.Errorf("cancel after the reschedule limit: 429, want no creation limit")
	}
}

func TestRateLimit_Read(t *testing.T) {
	a := newAbuseServer(t, Limits{Read: Rate{Every: time.Second, Burst: 3}})
	for range 3 {
		if res := a.get(t, "/api/v1/clinics", ""); res.StatusCode != http.StatusOK {
			t.Fatalf("status %d", res.StatusCode)
		}
	}
	want429(t, a.get(t, "/api/v1/clinics/maple/slots", ""), "1")
	want429(t, a.get(t, "/", ""), "1")
	for _, p := range []string{"/healthz", "/static/style.css"} {
		if res := a.get(t, p, ""); res.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d, want 200 (never limited)", p, res.StatusCode)
		}
	}
	off := newAbuseServer(t, Limits{Off: true, Read: Rate{Every: time.Second, Burst: 1}})
	for range 5 {
		if res := off.get(t, "/api/v1/clinics", ""); res.StatusCode != http.StatusOK {
			t.Fatalf("limits off: status %d", res.StatusCode)
		}
	}
}

// TestRateLimit_Store: an IP flood keeps at most MaxKeys limiters, a new
// client still gets its own (the least recently used goes), and idle ones
// go once they have refilled.
func TestRateLimit_Store(t *testing.T) {
	a := newAbuseServer(t, Limits{Read: Rate{Every: time.Second, Burst: 5}, MaxKeys: 50}, "127.0.0.1/32")
	ip := func(i int) string { return fmt.Sprintf("10.0.%d.%d", i/250, i%250) }
	for i := range 200 {
		a.get(t, "/api/v1/clinics", ip(i))
	}
	if n := a.srv.rates.read.len(); n != 50 {
		t.Errorf("%d limiters after 200 IPs, want the cap, 50", n)
	}
	if a.srv.rates.read.has(ip(149)) || !a.srv.rates.read.has(ip(150)) || !a.srv.rates.read.has(ip(199)) {
		t.Errorf("the store does not hold the 50 most recent IPs")
	}
	// A new IP while full is served, from a bucket of its own.
	for i := range 5 {
		if res := a.get(t, "/api/v1/clinics", "10.9.9.9"); res.StatusCode != http.StatusOK {
			t.Fatalf("a new IP while full, request %d: status %d, want 200", i+1, res.StatusCode)
		}
	}
	want429(t, a.get(t, "/api/v1/clinics", "10.9.9.9"), "1")
	if n := a.srv.rates.read.len(); n != 50 {
		t.Errorf("%d limiters, want still 50", n)
	}
	a.advance(5 * time.Second) // Burst*Every: every limiter is full again
	if res := a.get(t, "/api/v1/clinics", "10.9.9.8"); res.StatusCode != http.StatusOK {
		t.Errorf("after the sweep: status %d", res.StatusCode)
	}
	if n := a.srv.rates.read.len(); n != 1 {
		t.Errorf("%d limiters after the idle ones were swept, want 1", n)
	}
}

// TestRateLimit_CreateFlood: one IPv6 /48 posting from more /64s than the
// store holds does not lock a new patient out of booking.
func TestRateLimit_CreateFlood(t *testing.T) {
	a := newAbuseServer(t, Limits{CreateIP: Rate{Every: time.Hour, Burst: 10}, CreateClinic: Rate{Every: time.Millisecond, Burst: 1000},
		MaxKeys: 50}, "127.0.0.1/32")
	for i := range 200 {
		if res := a.post(t, "maple", fuzzBody, fmt.Sprintf("2001:db8:7:%x::1", i)); res.StatusCode != http.StatusCreated {
			t.Fatalf("flood request %d: status %d", i+1, res.StatusCode)
		}
	}
	if n := a.srv.rates.createIP.len(); n != 50 {
		t.Errorf("%d IP limiters after the flood, want the cap, 50", n)
	}
	for i := range 10 {
		if res := a.post(t, "maple", fuzzBody, "203.0.113.50"); res.StatusCode != http.StatusCreated {
			t.Fatalf("a new patient after the flood, request %d: status %d, want 201", i+1, res.StatusCode)
		}
	}
	want429(t, a.post(t, "maple", fuzzBody, "203.0.113.50"), "3600")
	// An unknown clinic takes no IP limiter: the flood's newest stay.
	for i := range 100 {
		if res := a.post(t, "nope", fuzzBody, fmt.Sprintf("2001:db8:8:%x::1", i)); res.StatusCode != http.StatusNotFound {
			t.Fatalf("unknown clinic: status %d", res.StatusCode)
		}
	}
	if !a.srv.rates.createIP.has("203.0.113.50") || a.srv.rates.createIP.has("2001:db8:8::/64") {
		t.Errorf("posts to an unknown clinic made room for themselves in the IP store")
	}
}

// TestMetrics: /metrics answers a client on the relay's host, and 404 to
// anyone else, including through a reverse proxy on that host.
func TestMetrics(t *testing.T) {
	for _, tc := range []struct {
		name, trusted, peer, header string
		want                        int
	}{
		{"loopback", "", "127.0.0.1:9", "", http.StatusOK},
		{"IPv6 loopback", "", "[::1]:9", "", http.StatusOK},
		{"loopback, another host is the proxy", "10.0.0.0/8", "127.0.0.1:9", "", http.StatusOK},
		{"remote", "", "203.0.113.5:9", "", http.StatusNotFound},
		{"a proxy on the host, trusted", "127.0.0.1/32", "127.0.0.1:9", "", http.StatusNotFound},
		{"a proxy on the host, trusted, with X-Forwarded-For", "127.0.0.1/32", "127.0.0.1:9", "X-Forwarded-For", http.StatusNotFound},
		{"a proxy on the host, untrusted, X-Forwarded-For", "", "127.0.0.1:9", "X-Forwarded-For", http.StatusNotFound},
		{"a proxy on the host, untrusted, Forwarded", "", "127.0.0.1:9", "Forwarded", http.StatusNotFound},
		{"a proxy on the host, untrusted, X-Real-IP", "", "[::1]:9", "X-Real-IP", http.StatusNotFound},
	} {
		var trusted []string
		if tc.trusted != "" {
			trusted = append(trusted, tc.trusted)
		}
		a := newAbuseServer(t, Limits{Off: true}, trusted...)
		a.srv.HandleMetrics(func(w io.Writer) { io.WriteString(w, "clinicrelay_up 1\n") })
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		r.RemoteAddr = tc.peer
		if tc.header != "" {
			r.Header.Set(tc.header, "for=198.51.100.7")
		}
		w := httptest.NewRecorder()
		a.srv.Handler().ServeHTTP(w, r)
		if w.Code != tc.want || (w.Code == http.StatusOK) != strings.Contains(w.Body.String(), "clinicrelay_up 1") {
			t.Errorf("%s: status %d, body %.60q; want %d", tc.name, w.Code, w.Body, tc.want)
		}
	}
}

// TestStatusEvents_Caps: live status streams are capped per client IP and in
// all, 429 with Retry-After over either; a closed stream frees its place.
func TestStatusEvents_Caps(t *testing.T) {
	a := newAbuseServer(t, Limits{Streams: 2, StreamsTotal: 3}, "127.0.0.1/32")
	a.srv.cfg.Booker.Statuses = oneStatus{} // delivered: its stream stays open
	path := "/r/maple_" + strings.Repeat("ab", 16) + "/events"
	open := func(xff string) (*http.Response, context.CancelFunc) {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.url+path, nil)
		req.Header.Set("X-Forwarded-For", xff)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); res.Body.Close() })
		if res.StatusCode == http.StatusOK {
			if line, err := bufio.NewReader(res.Body).ReadString('\n'); line != "event: status\n" {
				t.Fatalf("stream from %s: first line %q (%v)", xff, line, err)
			}
		}
		return res, cancel
	}
	wantOpen := func(res *http.Response) {
		t.Helper()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("stream: status %d, want 200", res.StatusCode)
		}
	}
	_, closeA := open("203.0.113.1")
	a2, _ := open("203.0.113.1")
	wantOpen(a2)
	want429(t, first(open("203.0.113.1")), "30") // the IP's cap
	wantOpen(first(open("203.0.113.2")))
	want429(t, first(open("203.0.113.3")), "30") // the total cap
	closeA()
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, cancel := open("203.0.113.3")
		if res.StatusCode == http.StatusOK {
			break
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream did not free its place: status %d", res.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}

	off := newAbuseServer(t, Limits{Off: true, Streams: 1, StreamsTotal: 1})
	off.srv.cfg.Booker.Statuses = oneStatus{}
	for range 3 {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, off.url+path, nil)
		if res := off.do(t, req); res.StatusCode != http.StatusOK {
			t.Fatalf("limits off: status %d", res.StatusCode)
		}
	}
}

func first[A, B any](a A, _ B) A { return a }

func TestClientKey(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"203.0.113.7", "203.0.113.7"},
		{"::ffff:203.0.113.7", "203.0.113.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::ffff", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"", ""},
	} {
		if got := clientKey(tc.ip); got != tc.want {
			t.Errorf("clientKey(%q) = %q, want %q", tc.ip, got, tc.want)
		}
	}
}

// TestIPExtractor: X-Forwarded-For counts only from a trusted proxy, and
// then only the nearest address that is not a proxy.
func TestIPExtractor(t *testing.T) {
	trusted := ipExtractor([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	for _, tc := range []struct {
		name, peer, xff, direct, proxied string
	}{
		{"no header", "203.0.113.5:1", "", "203.0.113.5", "203.0.113.5"},
		{"spoofed by a client", "203.0.113.5:1", "198.51.100.1", "203.0.113.5", "203.0.113.5"},
		{"through the proxy", "10.0.0.2:1", "198.51.100.1", "10.0.0.2", "198.51.100.1"},
		{"spoof through the proxy", "10.0.0.2:1", "1.2.3.4, 198.51.100.1", "10.0.0.2", "198.51.100.1"},
		{"loopback is not trusted unless listed", "127.0.0.1:1", "198.51.100.1", "127.0.0.1", "127.0.0.1"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.peer
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := ipExtractor(nil)(r); got != tc.direct {
			t.Errorf("%s, no trusted proxy: %q, want %q", tc.name, got, tc.direct)
		}
		if got := trusted(r); got != tc.proxied {
			t.Errorf("%s, 10/8 trusted: %q, want %q", tc.name, got, tc.proxied)
		}
	}
}

// TestHoneypot: a filled honeypot is answered as accepted, and nothing is
// held or sent; bad fields still get the usual 422.
func TestHoneypot(t *testing.T) {
	a := newAbuseServer(t, Limits{Off: true})
	body := strings.Replace(fuzzBody, `{`, `{"website":"http://spam.example",`, 1)
	res := a.post(t, "maple", body, "")
	var out map[string]string
	if err := json.NewDecoder(res.Body).Decode(&out); res.StatusCode != http.StatusCreated || err != nil || out["token"] == "" ||
		out["status_url"] != "/r/"+out["token"] || out["status"] != "received" {
		t.Fatalf("API honeypot: status %d, body %v (%v); want an accepted-looking 201", res.StatusCode, out, err)
	}
	if len(a.out) != 0 {
		t.Fatalf("API honeypot: %d request(s) sent to the clinic", len(a.out))
	}
	bad := strings.Replace(body, `"ada@example.org"`, `"not an address"`, 1)
	if res := a.post(t, "maple", bad, ""); res.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("API honeypot with a bad email: status %d, want 422 like any bad email", res.StatusCode)
	}

	form := url.Values{"slot_id": {"dr-lee_20260302T1430Z"}, "name": {"Ada"}, "birth_date": {"1990-04-01"},
		"phone": {"4165550100"}, "email": {"ada@example.org"}, "consent": {"yes"}, "website": {"x"}}
	req, _ := http.NewRequest(http.MethodPost, a.url+"/c/maple/request", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res = a.do(t, req)
	if loc := res.Header.Get("Location"); res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/r/maple_") {
		t.Fatalf("form honeypot: status %d to %q, want 303 to a status page", res.StatusCode, loc)
	}
	if len(a.out) != 0 {
		t.Fatalf("form honeypot: %d request(s) sent to the clinic", len(a.out))
	}
	// The honest form carries the field, empty, hidden from people.
	page := a.get(t, "/c/maple/request?slot=dr-lee_20260302T1430Z", "")
	var sb strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := page.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	for _, want := range []string{`name="website"`, `tabindex="-1"`, `autocomplete="off"`, `aria-hidden="true"`, `class="hp"`} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("request form lacks %s", want)
		}
	}
}

// TestRequestCreate_BodyLimit: the form, like the API, refuses a body over
// the limit with 413 and sends nothing.
func TestRequestCreate_BodyLimit(t *testing.T) {
	a := newAbuseServer(t, Limits{Off: true})
	body := "slot_id=dr-lee_20260302T1430Z&consent=yes&name=" + strings.Repeat("x", fuzzBodyLimit)
	req, _ := http.NewRequest(http.MethodPost, a.url+"/c/maple/request", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if res := a.do(t, req); res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("form body over 64KiB: status %d, want 413", res.StatusCode)
	}
	if len(a.out) != 0 {
		t.Errorf("%d request(s) sent", len(a.out))
	}
}

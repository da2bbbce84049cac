package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
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
	a := &abuseServer{fuzzServer: newFuzzServer(t), now: fuzzNow}
	var proxies []netip.Prefix
	for _, p := range trusted {
		proxies = append(proxies, netip.MustParsePrefix(p))
	}
	cfg := a.srv.cfg
	cfg.Limits, cfg.TrustedProxies, cfg.Now = l, proxies, a.clock
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
	// Made-up clinics get a 404 and no limiter.
	for i := range 5 {
		if res := a.post(t, fmt.Sprintf("nope-%d", i), fuzzBody, fmt.Sprintf("198.51.100.%d", i)); res.StatusCode != http.StatusNotFound {
			t.Fatalf("unknown clinic: status %d", res.StatusCode)
		}
	}
	if n := a.srv.rates.createClinic.len(); n != 1 {
		t.Errorf("%d clinic limiters, want 1 (maple)", n)
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

// TestRateLimit_Store: an IP flood keeps at most MaxKeys limiters (the rest
// share one), and idle ones go once they have refilled.
func TestRateLimit_Store(t *testing.T) {
	a := newAbuseServer(t, Limits{Read: Rate{Every: time.Second, Burst: 5}, MaxKeys: 50}, "127.0.0.1/32")
	for i := range 200 {
		a.get(t, "/api/v1/clinics", fmt.Sprintf("10.0.%d.%d", i/250, i%250))
	}
	if n := a.srv.rates.read.len(); n != 50 {
		t.Errorf("%d limiters after 200 IPs, want the cap, 50", n)
	}
	// The overflow limiter is shared: 5 at once, then 429.
	if res := a.get(t, "/api/v1/clinics", "10.9.9.9"); res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a new IP while full, after the shared limiter's burst: status %d, want 429", res.StatusCode)
	}
	a.advance(5 * time.Second) // Burst*Every: every limiter is full again
	if res := a.get(t, "/api/v1/clinics", "10.9.9.9"); res.StatusCode != http.StatusOK {
		t.Errorf("after the sweep: status %d", res.StatusCode)
	}
	if n := a.srv.rates.read.len(); n != 1 {
		t.Errorf("%d limiters after the idle ones were swept, want 1", n)
	}
}

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

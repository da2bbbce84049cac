package web

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

// Rate lets Burst events through at once, then one every Every.
type Rate struct {
	Every time.Duration
	Burst int
}

// Limits throttle patients' traffic by client IP and by clinic. A zero Rate
// takes its default.
type Limits struct {
	// CreateIP limits request creations (form and API) per client IP, an
	// IPv6 client counted by its /64: 10 at once, then one every 2 minutes
	// (30 an hour), room for a family and its typos behind one NAT.
	CreateIP Rate
	// CreateClinic limits request creations per clinic, from all IPs
	// together: 30 at once, then one every 10 s (360 an hour, many times a
	// busy clinic's real rate), so a botnet cannot hold a clinic's whole
	// calendar in minutes.
	CreateClinic Rate
	// Read limits every other route but /static and /healthz per client IP:
	// 100 at once, then 20 a second. Reads are served from memory; this only
	// stops one client from hogging the server.
	Read Rate
	// MaxKeys bounds the limiters kept per kind (default 65,536, a few MB).
	// Idle limiters are dropped once they have refilled; when the store is
	// still full, new clients share one limiter until room frees up.
	MaxKeys int
	// Off turns every limit off (load tests).
	Off bool
}

// Default limits; see Limits.
var (
	DefaultCreateIP     = Rate{Every: 2 * time.Minute, Burst: 10}
	DefaultCreateClinic = Rate{Every: 10 * time.Second, Burst: 30}
	DefaultRead         = Rate{Every: 50 * time.Millisecond, Burst: 100}
)

const defaultMaxKeys = 1 << 16

// codeRateLimited is the API error code of a 429.
const codeRateLimited = "rate_limited"

func (r Rate) or(d Rate) Rate {
	if r.Every <= 0 || r.Burst < 1 {
		return d
	}
	return r
}

// limiters keeps one token bucket per key, dropping those that have sat
// idle long enough to be full again (a fresh one is the same).
type limiters struct {
	rate     Rate
	max      int
	mu       sync.Mutex
	m        map[string]*limiter
	overflow *rate.Limiter // shared by new keys while m is full
	swept    time.Time
}

type limiter struct {
	l    *rate.Limiter
	seen time.Time
}

func newLimiters(r Rate, max int) *limiters {
	return &limiters{rate: r, max: max, m: map[string]*limiter{},
		overflow: rate.NewLimiter(rate.Every(r.Every), r.Burst)}
}

// idle is how long an unused bucket takes to refill.
func (ls *limiters) idle() time.Duration { return ls.rate.Every * time.Duration(ls.rate.Burst) }

// reserve takes a token for key at now.
func (ls *limiters) reserve(key string, now time.Time) *rate.Reservation {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	e, ok := ls.m[key]
	if !ok {
		if now.Sub(ls.swept) > min(ls.idle(), time.Minute) || len(ls.m) >= ls.max && now.Sub(ls.swept) > time.Second {
			ls.sweep(now)
		}
		if len(ls.m) >= ls.max {
			return ls.overflow.ReserveN(now, 1)
		}
		e = &limiter{l: rate.NewLimiter(rate.Every(ls.rate.Every), ls.rate.Burst)}
		ls.m[key] = e
	}
	e.seen = now
	return e.l.ReserveN(now, 1)
}

func (ls *limiters) sweep(now time.Time) {
	ls.swept = now
	for k, e := range ls.m {
		if now.Sub(e.seen) >= ls.idle() {
			delete(ls.m, k)
		}
	}
}

func (ls *limiters) len() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return len(ls.m)
}

// rateLimits are the server's stores, nil when limits are off.
type rateLimits struct {
	createIP, createClinic, read *limiters
	proxyHint                    sync.Once
}

func newRateLimits(l Limits) *rateLimits {
	if l.Off {
		return nil
	}
	if l.MaxKeys < 1 {
		l.MaxKeys = defaultMaxKeys
	}
	return &rateLimits{createIP: newLimiters(l.CreateIP.or(DefaultCreateIP), l.MaxKeys),
		createClinic: newLimiters(l.CreateClinic.or(DefaultCreateClinic), l.MaxKeys),
		read:         newLimiters(l.Read.or(DefaultRead), l.MaxKeys)}
}

// ipExtractor takes the client IP from the connection, or from
// X-Forwarded-For only when the connection comes from a trusted proxy (and
// then the nearest address that is not one).
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		p = p.Masked()
		opts = append(opts, echo.TrustIPRange(&net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// clientKey is the rate-limit key of an IP: an IPv6 address by its /64,
// which one subscriber usually holds whole.
func clientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// limitRead applies the Read limit to every route but request creation
// (which has its own), static files and the health check.
func (s *Server) limitRead(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p := c.Path()
		if s.rates == nil || strings.HasPrefix(p, "/static") || p == "/healthz" ||
			c.Request().Method == http.MethodPost && (p == "/c/:slug/request" || p == "/api/v1/clinics/:slug/requests") {
			return next(c)
		}
		s.proxyHint(c)
		if wait := s.take(s.cfg.Now(), s.rates.read, clientKey(c.RealIP())); wait > 0 {
			return s.tooMany(c, wait)
		}
		return next(c)
	}
}

// limitCreate applies the CreateIP and CreateClinic limits; a request is
// let through only if both have a token, and neither is spent otherwise.
func (s *Server) limitCreate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.rates == nil {
			return next(c)
		}
		s.proxyHint(c)
		now := s.cfg.Now()
		// An unknown clinic gets no limiter: the handler answers 404, and
		// made-up names cannot fill the store.
		var clinic *limiters
		if s.cfg.Catalog != nil {
			if _, ok := s.cfg.Catalog.Clinic(c.Param("slug")); ok {
				clinic = s.rates.createClinic
			}
		}
		if wait := s.take(now, s.rates.createIP, clientKey(c.RealIP()), clinic, c.Param("slug")); wait > 0 {
			return s.tooMany(c, wait)
		}
		return next(c)
	}
}

// take reserves a token from each (store, key) pair, a nil store skipped,
// and returns how long to wait; when it is not zero it gives them all back.
func (s *Server) take(now time.Time, pairs ...any) time.Duration {
	var rs []*rate.Reservation
	var wait time.Duration
	for i := 0; i+1 < len(pairs); i += 2 {
		ls, _ := pairs[i].(*limiters)
		if ls == nil {
			continue
		}
		r := ls.reserve(pairs[i+1].(string), now)
		rs = append(rs, r)
		wait = max(wait, r.DelayFrom(now))
	}
	if wait > 0 {
		for _, r := range rs {
			r.CancelAt(now)
		}
	}
	return wait
}

// tooMany answers 429 with Retry-After in whole seconds: JSON under /api/,
// a page elsewhere.
func (s *Server) tooMany(c echo.Context, wait time.Duration) error {
	secs := strconv.Itoa(int(math.Ceil(wait.Seconds())))
	h := c.Response().Header()
	h.Set("Retry-After", secs)
	h.Set("Cache-Control", "no-store")
	msg := "too many requests from your network; please try again in " + secs + " seconds"
	if strings.HasPrefix(c.Request().URL.Path, "/api/") {
		return c.JSON(http.StatusTooManyRequests, apiError{Code: codeRateLimited, Error: msg})
	}
	return c.Render(http.StatusTooManyRequests, "error.html", s.pageData(c, map[string]any{
		"Status": http.StatusTooManyRequests, "Message": msg}))
}

// proxyHint warns once when a request comes through a proxy that is not
// trusted: every patient behind it then shares the proxy's limits.
func (s *Server) proxyHint(c echo.Context) {
	if len(s.cfg.TrustedProxies) > 0 || c.Request().Header.Get(echo.HeaderXForwardedFor) == "" {
		return
	}
	s.rates.proxyHint.Do(func() {
		s.log.Warn("requests carry X-Forwarded-For but no trusted proxy is configured: rate limits count the proxy's address, " +
			"shared by every patient; set the proxy's address with --trusted-proxies")
	})
}

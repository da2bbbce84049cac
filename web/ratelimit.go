package web

import (
	"container/list"
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

	"github.com/clinicrelay/clinicrelay/services"
)

// Rate lets Burst events through at once, then one every Every.
type Rate struct {
	Every time.Duration
	Burst int
}

// Limits throttle patients' traffic by client IP and by clinic. A zero Rate
// takes its default.
type Limits struct {
	// CreateIP limits request creations and reschedules (form and API)
	// per client IP, an IPv6 client counted by its /64: 10 at once, then
	// one every 2 minutes (30 an hour), room for a family and its typos
	// behind one NAT. A reschedule holds a new slot as a creation does.
	CreateIP Rate
	// CreateClinic limits request creations and reschedules per clinic,
	// from all IPs together: 30 at once, then one every 10 s (360 an hour,
	// many times a busy clinic's real rate), so a botnet cannot hold a
	// clinic's whole calendar in minutes.
	CreateClinic Rate
	// CodeSend limits the email codes sent to one address at one clinic
	// (Config.EmailCodes): 3 at once, then one every 2 minutes. CodeGuess
	// limits the codes tried for one: 5, then one every 2 minutes, so a
	// code of 6 digits is not guessed.
	CodeSend, CodeGuess Rate
	// PortalIP limits portal sign-ins, password changes and registrations per client IP:
	// 20 at once, then one every 15 s. Each account (and each email with
	// none) locks after services.PortalLockAfter failures besides; a
	// registration also spends its mailbox's CodeSend, as it sends an email.
	PortalIP Rate
	// Read limits every other route but /static and /healthz per client IP:
	// 100 at once, then 20 a second. Reads are served from memory; this only
	// stops one client from hogging the server.
	Read Rate
	// MaxKeys bounds the limiters kept per kind (default 65,536, a few MB).
	// Idle limiters are dropped once they have refilled; when the store is
	// still full, a new client's limiter takes the place of the one used
	// least recently, so a flood of addresses cannot lock new clients out.
	MaxKeys int
	// Streams caps the live status streams open per client IP (default 8),
	// and StreamsTotal those open in all (default 10,000): each holds a
	// goroutine and a connection. Over either the answer is 429.
	Streams, StreamsTotal int
	// Off turns every limit off (load tests).
	Off bool
}

// Default limits; see Limits.
var (
	DefaultCreateIP     = Rate{Every: 2 * time.Minute, Burst: 10}
	DefaultCreateClinic = Rate{Every: 10 * time.Second, Burst: 30}
	DefaultRead         = Rate{Every: 50 * time.Millisecond, Burst: 100}
	DefaultCodeSend     = Rate{Every: 2 * time.Minute, Burst: 3}
	DefaultCodeGuess    = Rate{Every: 2 * time.Minute, Burst: 5}
	DefaultPortalIP     = Rate{Every: 15 * time.Second, Burst: 20}
)

const (
	defaultMaxKeys      = 1 << 16
	defaultStreams      = 8
	defaultStreamsTotal = 10_000
	// streamRetry is the Retry-After of a stream refused by its cap: open
	// streams end on no schedule, so this is a guess, not a promise.
	streamRetry = 30 * time.Second
)

// codeRateLimited is the API error code of a 429.
const codeRateLimited = "rate_limited"

func (r Rate) or(d Rate) Rate {
	if r.Every <= 0 || r.Burst < 1 {
		return d
	}
	return r
}

// limiters keeps one token bucket per key, at most max of them, most
// recently used first. Those that have sat idle long enough to be full again
// are dropped (a fresh one is the same); when the store is full anyway, the
// least recently used goes, so that a new client always gets its own bucket.
type limiters struct {
	rate Rate
	max  int
	mu   sync.Mutex
	m    map[string]*list.Element // of *limiter, in lru
	lru  list.List                // front: the most recently used
}

type limiter struct {
	key  string
	l    *rate.Limiter
	seen time.Time
}

func newLimiters(r Rate, max int) *limiters {
	return &limiters{rate: r, max: max, m: map[string]*list.Element{}}
}

// idle is how long an unused bucket takes to refill.
func (ls *limiters) idle() time.Duration { return ls.rate.Every * time.Duration(ls.rate.Burst) }

// reserve takes a token for key at now.
func (ls *limiters) reserve(key string, now time.Time) *rate.Reservation {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	el, ok := ls.m[key]
	if ok {
		ls.lru.MoveToFront(el)
	} else {
		ls.makeRoom(now)
		el = ls.lru.PushFront(&limiter{key: key, l: rate.NewLimiter(rate.Every(ls.rate.Every), ls.rate.Burst)})
		ls.m[key] = el
	}
	e := el.Value.(*limiter)
	e.seen = now
	return e.l.ReserveN(now, 1)
}

// makeRoom drops, from the least recently used end, the limiters that are
// full again, then more until there is room for one.
func (ls *limiters) makeRoom(now time.Time) {
	for el := ls.lru.Back(); el != nil; el = ls.lru.Back() {
		e := el.Value.(*limiter)
		if len(ls.m) < ls.max && now.Sub(e.seen) < ls.idle() {
			return
		}
		ls.lru.Remove(el)
		delete(ls.m, e.key)
	}
}

func (ls *limiters) len() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return len(ls.m)
}

// has reports whether key has a limiter.
func (ls *limiters) has(key string) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	_, ok := ls.m[key]
	return ok
}

// streams counts the open live status streams, per client key and in all.
type streams struct {
	perKey, total int
	mu            sync.Mutex
	open          map[string]int // no zero values: at most total keys
	n             int
}

// acquire takes a stream for key; ok is false over either cap. release
// gives it back, once.
func (st *streams) acquire(key string) (release func(), ok bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.n >= st.total || st.open[key] >= st.perKey {
		return nil, false
	}
	st.n++
	st.open[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			st.mu.Lock()
			defer st.mu.Unlock()
			st.n--
			if st.open[key]--; st.open[key] <= 0 {
				delete(st.open, key)
			}
		})
	}, true
}

// rateLimits are the server's stores, nil when limits are off.
type rateLimits struct {
	createIP, createClinic, read *limiters
	codeSend, codeGuess          *limiters
	portalIP                     *limiters
	streams                      *streams
	proxyHint                    sync.Once
}

func newRateLimits(l Limits) *rateLimits {
	if l.Off {
		return nil
	}
	if l.MaxKeys < 1 {
		l.MaxKeys = defaultMaxKeys
	}
	if l.Streams < 1 {
		l.Streams = defaultStreams
	}
	if l.StreamsTotal < 1 {
		l.StreamsTotal = defaultStreamsTotal
	}
	return &rateLimits{createIP: newLimiters(l.CreateIP.or(DefaultCreateIP), l.MaxKeys),
		createClinic: newLimiters(l.CreateClinic.or(DefaultCreateClinic), l.MaxKeys),
		read:         newLimiters(l.Read.or(DefaultRead), l.MaxKeys),
		codeSend:     newLimiters(l.CodeSend.or(DefaultCodeSend), l.MaxKeys),
		codeGuess:    newLimiters(l.CodeGuess.or(DefaultCodeGuess), l.MaxKeys),
		portalIP:     newLimiters(l.PortalIP.or(DefaultPortalIP), l.MaxKeys),
		streams:      &streams{perKey: l.Streams, total: l.StreamsTotal, open: map[string]int{}}}
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

// createLimited are the routes under limitCreate, by method and path:
// each holds a slot.
var createLimited = map[string]bool{
	"/c/:slug/request":                   true,
	"/api/v1/clinics/:slug/requests":     true,
	"/r/:token/reschedule":               true,
	"/api/v1/requests/:token/reschedule": true,
}

// limitRead applies the Read limit to every route but those holding a slot
// (which have their own), static files and the health check.
func (s *Server) limitRead(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p := c.Path()
		if s.rates == nil || strings.HasPrefix(p, "/static") || p == "/healthz" || p == "/readyz" ||
			c.Request().Method == http.MethodPost && createLimited[p] {
			return next(c)
		}
		s.proxyHint(c)
		if wait := s.take(s.cfg.Now(), s.rates.read, clientKey(c.RealIP())); wait > 0 {
			return s.tooMany(c, wait, byNetwork)
		}
		return next(c)
	}
}

// limitCreate applies the CreateIP and CreateClinic limits to the routes
// that hold a slot: request creation (the clinic from :slug) and reschedule
// (the clinic from :token). A request is let through only if both have a
// token, and neither is spent otherwise.
func (s *Server) limitCreate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.rates == nil {
			return next(c)
		}
		clinic := c.Param("slug")
		if token := c.Param("token"); token != "" {
			var err error
			if clinic, _, err = services.ParseStatusToken(token); err != nil {
				return next(c) // the handler answers 404
			}
		}
		// An unknown clinic spends no token and gets no limiter: the
		// handler answers 404, and made-up names cannot fill the stores.
		if s.cfg.Catalog != nil {
			if _, ok := s.cfg.Catalog.Clinic(clinic); !ok {
				return next(c)
			}
		}
		s.proxyHint(c)
		now := s.cfg.Now()
		ip := s.rates.createIP.reserve(clientKey(c.RealIP()), now)
		cl := s.rates.createClinic.reserve(clinic, now)
		ipWait, clWait := ip.DelayFrom(now), cl.DelayFrom(now)
		if ipWait == 0 && clWait > 0 && s.cfg.EmailCodes != nil && c.Param("token") == "" {
			// The clinic's budget is spent: a new request goes on if its
			// patient proves their email (checkEmailCode). It spends the
			// address's token, not the clinic's.
			cl.CancelAt(now)
			c.Set(needsCodeKey, true)
			return next(c)
		}
		if wait := max(ipWait, clWait); wait > 0 {
			ip.CancelAt(now)
			cl.CancelAt(now)
			if clWait >= wait {
				return s.tooMany(c, wait, byClinic)
			}
			return s.tooMany(c, wait, byNetwork)
		}
		err := next(c)
		// The clinic's budget counts slots held, not attempts: a request
		// refused (bad input, a slot taken, a service busy) gives its
		// token back, so junk sent from a few addresses cannot close a
		// clinic to everyone else. The address's token stays spent.
		if err != nil || c.Response().Status >= 400 {
			cl.CancelAt(now)
		}
		return err
	}
}

// openStream takes one of the live status streams for c's client, false
// over the caps. release is never nil.
func (s *Server) openStream(c echo.Context) (release func(), ok bool) {
	if s.rates == nil {
		return func() {}, true
	}
	if release, ok = s.rates.streams.acquire(clientKey(c.RealIP())); !ok {
		return func() {}, false
	}
	return release, true
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

// Whose budget a 429 is about: the message says so.
const (
	byNetwork = "too many requests from your network"
	byClinic  = "this clinic is receiving many requests right now"
)

// tooMany answers 429 with Retry-After in whole seconds: JSON under /api/,
// a page elsewhere. who is byNetwork or byClinic.
func (s *Server) tooMany(c echo.Context, wait time.Duration, who string) error {
	secs := strconv.Itoa(int(math.Ceil(wait.Seconds())))
	h := c.Response().Header()
	h.Set("Retry-After", secs)
	h.Set("Cache-Control", "no-store")
	msg := who + "; please try again in " + secs + " seconds"
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

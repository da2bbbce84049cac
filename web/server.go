// Package web is the patients' front: Echo v4 pages and the JSON API under
// /api/v1, served from the relay's in-memory catalog.
package web

import (
	"context"
	"embed"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/clinicrelay/clinicrelay/internal/httpserve"
	"github.com/clinicrelay/clinicrelay/services"
)

//go:embed templates static
var assets embed.FS

// Catalog is the read side the web front needs.
type Catalog interface {
	services.Directory
	Clinics() []services.Clinic
	Providers(clinic string) []services.Provider
	LastSeen(clinic string) services.Heartbeat
	Slots(clinic string, from, to time.Time) []services.Slot
	// Version changes whenever anything of the clinic does.
	Version(clinic string) uint64
}

// Config wires the web front.
type Config struct {
	Addr    string // listen address, e.g. 127.0.0.1:8080
	Booker  *services.Booker
	Catalog Catalog
	Logger  *slog.Logger
	Now     func() time.Time
	// SecureCookies marks cookies Secure (set behind HTTPS).
	SecureCookies bool
	// BodyLimit caps request bodies (default 64KiB, as documented; "K" alone
	// would mean 1000 bytes).
	BodyLimit string
	// NATS, when set, returns a context that is done while the relay has
	// lost NATS. The routes that need NATS (request create, status lookups)
	// then answer 503 with Retry-After at once, and those in flight when it
	// goes are cut short the same way instead of waiting out their timeouts;
	// pages read from the catalog still serve.
	NATS func() context.Context
	// Audit, when set, records request creations and status reads.
	Audit services.Auditor
	// Limits throttle traffic per client IP and per clinic (web/ratelimit.go).
	Limits Limits
	// EmailCodes, when set, keep a clinic whose creation budget is spent
	// open to patients who prove their email (web/emailcode.go); without
	// them such a clinic answers 429 until its budget refills.
	EmailCodes *services.EmailCodes
	// Portal, when set, serves the patient portal (web/portal.go); without
	// it the portal's routes answer 503.
	Portal *services.Portal
	// TrustedProxies are the reverse proxies whose X-Forwarded-For gives
	// the client IP; with none, the client IP is the connection's peer.
	TrustedProxies []netip.Prefix
	// Ready, when set, says whether the relay can take requests (nil) or
	// what stops it: GET /readyz answers 503 with it.
	Ready func() error
}

// Server is the Echo web front.
type Server struct {
	cfg   Config
	e     *echo.Echo
	log   *slog.Logger
	pages *pages
	slots slotCache
	// rates are the rate limiters, nil when Config.Limits.Off.
	rates *rateLimits
	hub   statusHub
	// streams ends when the server shuts down: live status streams end at
	// once rather than hold the shutdown for its whole grace period.
	streams    context.Context
	endStreams context.CancelFunc
}

// New builds the server and its routes.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BodyLimit == "" {
		cfg.BodyLimit = "64KiB"
	}
	p, err := loadPages()
	if err != nil {
		return nil, err
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	s := &Server{cfg: cfg, e: e, log: cfg.Logger.With("component", "web"), pages: p, rates: newRateLimits(cfg.Limits)}
	s.streams, s.endStreams = context.WithCancel(context.Background())
	e.IPExtractor = ipExtractor(cfg.TrustedProxies)
	e.Renderer = p
	e.HTTPErrorHandler = s.handleError
	e.Pre(headAsGet)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true,
		LogErrorFunc: func(c echo.Context, err error, _ []byte) error {
			s.log.Error("panic", "path", c.Path(), "err", err.Error())
			return err
		}}))
	e.Use(s.language) // first, so that error pages are in the patient's language too
	e.Use(middleware.BodyLimit(cfg.BodyLimit))
	e.Use(s.limitRead)
	e.Use(noStoreButStatic)
	e.Use(middleware.SecureWithConfig(middleware.SecureConfig{
		XSSProtection:         "0",
		ContentTypeNosniff:    "nosniff",
		XFrameOptions:         "DENY",
		HSTSMaxAge:            31536000,
		ContentSecurityPolicy: "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		ReferrerPolicy:        "no-referrer", // status URLs carry the patient's secret token
	}))
	e.Use(middleware.CSRFWithConfig(middleware.CSRFConfig{
		Skipper:        func(c echo.Context) bool { return strings.HasPrefix(c.Request().URL.Path, "/api/") },
		TokenLookup:    "form:_csrf",
		CookieName:     "_csrf",
		CookiePath:     "/",
		CookieHTTPOnly: true,
		CookieSecure:   cfg.SecureCookies,
		CookieSameSite: http.SameSiteStrictMode,
		// A page of a sibling host (same site, not same origin) could set
		// the CSRF cookie itself: its posts are refused, not checked
		// against the cookie.
		AllowSecFetchSiteFunc: func(echo.Context) (bool, error) {
			return false, echo.NewHTTPError(http.StatusForbidden, "request from another site refused")
		},
	}))
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	e := s.e
	e.GET("/", s.handleHome)
	e.GET("/c/:slug", s.handleClinic)
	e.GET("/c/:slug/events", s.handleClinicEvents)
	e.GET("/c/:slug/request", s.handleRequestForm)
	e.POST("/c/:slug/request", s.handleRequestCreate, s.limitCreate, s.honeypot, s.pausable)
	e.GET("/r/:token", s.handleStatus, s.pausable)
	e.GET("/r/:token/appointment.ics", s.handleAppointmentICS, s.pausable)
	e.GET("/r/:token/events", s.handleStatusEvents, s.pausable)
	e.GET("/r/:token/cancel", s.handleCancelForm, s.pausable)
	e.POST("/r/:token/cancel", s.handleCancel, s.pausable)
	e.GET("/r/:token/reschedule", s.handleRescheduleForm, s.pausable)
	e.POST("/r/:token/reschedule", s.handleReschedule, s.limitCreate, s.pausable) // holds a slot as a creation does
	e.GET("/c/:slug/portal", s.handlePortal, s.pausable)
	e.POST("/c/:slug/portal/login", s.handlePortalLogin, s.pausable)
	e.POST("/c/:slug/portal/register", s.handlePortalRegister, s.pausable)
	e.POST("/c/:slug/portal/logout", s.handlePortalLogout, s.pausable)
	e.POST("/c/:slug/portal/password", s.handlePortalChangePassword, s.pausable)
	e.GET("/c/:slug/portal/link/:token", s.handlePortalLinkForm, s.pausable)
	e.POST("/c/:slug/portal/link/:token", s.handlePortalLink, s.pausable)
	// /healthz: the process answers (liveness). /readyz: it can take
	// requests too, NATS connected and JetStream writing (readiness).
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	e.GET("/readyz", s.handleReady)
	e.StaticFS("/static", echo.MustSubFS(assets, "static"))

	// Middleware per route: a group with middleware would answer 404 for a
	// wrong method instead of 405.
	api := e.Group("/api/v1")
	api.GET("/clinics", s.handleAPIClinicList, noStore)
	api.GET("/clinics/:slug/slots", s.handleAPISlotList, noStore)
	api.POST("/clinics/:slug/requests", s.handleAPIRequestCreate, noStore, s.limitCreate, s.honeypot, s.pausable)
	api.GET("/requests/:token", s.handleAPIRequestGet, noStore, s.pausable)
	api.GET("/requests/:token/appointment.ics", s.handleAppointmentICS, noStore, s.pausable)
	api.POST("/requests/:token/cancel", s.handleAPIRequestCancel, noStore, s.pausable)
	api.POST("/requests/:token/reschedule", s.handleAPIRequestReschedule, noStore, s.limitCreate, s.pausable)
	api.POST("/clinics/:slug/portal/register", s.handleAPIPortalRegister, noStore, s.pausable)
	api.POST("/clinics/:slug/portal/login", s.handleAPIPortalLogin, noStore, s.pausable)
	api.POST("/clinics/:slug/portal/password", s.handleAPIPortalSetPassword, noStore, s.pausable)
	api.POST("/clinics/:slug/portal/password/change", s.handleAPIPortalChangePassword, noStore, s.pausable)
	api.POST("/clinics/:slug/portal/logout", s.handleAPIPortalLogout, noStore, s.pausable)
	api.GET("/clinics/:slug/portal/appointments", s.handleAPIPortalAppointments, noStore, s.pausable)
}

// headAsGet answers HEAD like GET; net/http drops the body because the
// server still holds the original HEAD request.
func headAsGet(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if r := c.Request(); r.Method == http.MethodHead {
			g := r.Clone(r.Context())
			g.Method = http.MethodGet
			c.SetRequest(g)
		}
		return next(c)
	}
}

// noStoreButStatic keeps every answer but static files out of caches: a
// form re-rendered with its errors carries the patient's details, and no
// page is worth a shared cache holding it.
func noStoreButStatic(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !strings.HasPrefix(c.Request().URL.Path, "/static/") {
			c.Response().Header().Set("Cache-Control", "no-store")
		}
		return next(c)
	}
}

func noStore(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "no-store")
		return next(c)
	}
}

// Handler is the HTTP handler, for tests.
func (s *Server) Handler() http.Handler { return s.e }

// Serve serves on ln until ctx ends, then shuts down within 10s.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.e, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}
	srv.RegisterOnShutdown(s.endStreams) // live status streams end at once
	return httpserve.Serve(ctx, srv, ln, 10*time.Second)
}

// audit records an access by the patient at the other end of c.
func (s *Server) audit(c echo.Context, clinic, action, requestID string) {
	if s.cfg.Audit != nil {
		s.cfg.Audit.Audit(c.Request().Context(), services.AuditEvent{At: s.cfg.Now().UTC(), Clinic: clinic,
			Action: action, Actor: "patient", RequestID: requestID, IP: c.RealIP()})
	}
}

// handleReady is GET /readyz: 200 "ready", or 503 with what stops the relay.
func (s *Server) handleReady(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			return c.String(http.StatusServiceUnavailable, "not ready: "+err.Error())
		}
	}
	return c.String(http.StatusOK, "ready")
}

package console

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/clinicrelay/clinicrelay/internal/httperr"
	"github.com/clinicrelay/clinicrelay/internal/httpserve"
	"github.com/clinicrelay/clinicrelay/services"
)

// BodyLimit is the largest request body the console reads.
const BodyLimit = "64KiB"

// csp allows the page its own stylesheet, script (the live list) and
// forms, and nothing else.
const csp = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

// shutdownTimeout bounds the graceful shutdown of Run.
const shutdownTimeout = 5 * time.Second

func (c *Console) newEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Logger.SetOutput(io.Discard)
	e.HTTPErrorHandler = c.handleError
	e.Use(
		middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true}),
		middleware.BodyLimit(BodyLimit),
		middleware.SecureWithConfig(middleware.SecureConfig{
			XSSProtection:         "0",
			ContentTypeNosniff:    "nosniff",
			XFrameOptions:         "DENY",
			ContentSecurityPolicy: csp,
			ReferrerPolicy:        "no-referrer",
		}),
		noStore,
		c.hostGuard,
	)
	c.routes(e)
	return e
}

// routes lists every route. Middleware is given per route: an Echo group
// with middleware would catch every unknown path as well.
func (c *Console) routes(e *echo.Echo) {
	in := c.signedIn // every route but signing in needs a session
	e.POST("/api/session", c.handleSessionCreate, requireJSON)
	e.GET("/api/session", c.handleSessionShow, in)
	e.DELETE("/api/session", c.handleSessionDelete, in)
	e.POST("/api/password", c.handlePasswordSet, requireJSON, in)
	e.GET("/api/requests", c.handleRequestList, in)
	e.GET("/api/requests/:id", c.handleRequestShow, in)
	e.GET("/api/audit", c.handleAuditList, in, adminOnly)
	e.GET("/api/events", c.handleEvents, in)
	e.GET("/api/users", c.handleUserList, in, adminOnly)
	e.POST("/api/users", c.handleUserCreate, requireJSON, in, adminOnly)
	e.POST("/api/users/:name/:action", c.handleUserAction, requireJSON, in, adminOnly)
	e.POST("/api/requests/:id/confirm", c.handleRequestConfirm, requireJSON, in)
	e.POST("/api/requests/:id/decline", c.handleRequestDecline, requireJSON, in)
	e.POST("/api/requests/:id/propose", c.handleRequestPropose, requireJSON, in)
	e.POST("/api/requests/:id/portal", c.handleRequestPortal, requireJSON, in)
	e.GET("/api/providers", c.handleProviderList, in)
	e.PUT("/api/providers", c.handleProviderSet, requireJSON, in, adminOnly)

	csrf := middleware.CSRFWithConfig(middleware.CSRFConfig{
		TokenLookup:    "form:" + csrfField,
		CookieName:     csrfField,
		CookiePath:     "/",
		CookieHTTPOnly: true,
		CookieSameSite: http.SameSiteStrictMode,
		// A form from another port of this host or a sibling host (same
		// site, not same origin) could set the CSRF cookie itself: such a
		// post is refused rather than checked against the cookie.
		AllowSecFetchSiteFunc: func(echo.Context) (bool, error) {
			return false, echo.NewHTTPError(http.StatusForbidden, "request from another site refused")
		},
	})
	e.GET("/signin", c.handleSigninPage, csrf)
	e.POST("/signin", c.handleSigninForm, csrf)
	e.GET("/password", c.handlePasswordPage, csrf, in)
	e.POST("/password", c.handlePasswordForm, csrf, in)
	e.POST("/signout", c.handleSignoutForm, csrf, in)
	e.GET("/", c.handlePage, csrf, in)
	e.GET("/requests/:id", c.handleRequestPage, csrf, in)
	e.POST("/requests/:id/confirm", c.handlePageConfirm, csrf, in)
	e.POST("/requests/:id/decline", c.handlePageDecline, csrf, in)
	e.POST("/requests/:id/propose", c.handlePagePropose, csrf, in)
	e.POST("/requests/:id/portal", c.handlePagePortal, csrf, in)
	e.POST("/providers", c.handlePageProviders, csrf, in, adminOnly)
	e.GET("/users", c.handleUsersPage, csrf, in, adminOnly)
	e.POST("/users", c.handleUsersForm, csrf, in, adminOnly)
	e.POST("/users/:name/:action", c.handleUserActionForm, csrf, in, adminOnly)
	e.GET("/console.css", handleCSS)
	e.GET("/console.js", handleJS)
}

// Handler is the console's HTTP handler: the JSON API under /api and the
// front-desk page at /.
func (c *Console) Handler() http.Handler { return c.echo }

// Run serves the console on Config.Addr until ctx ends, then shuts the server
// down gracefully. It returns nil after a shutdown that ctx asked for.
func (c *Console) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("console: listen: %w", err)
	}
	return c.Serve(ctx, ln)
}

// Serve serves the console on ln, as Run does.
func (c *Console) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           c.echo,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if c.tls != nil {
		ln, scheme = tls.NewListener(ln, c.tls), "https"
	} else if !loopback(ln.Addr()) {
		c.log.Warn("the console serves the LAN over plain HTTP: staff passwords and patients' details cross it in clear; " +
			"give it a certificate (clinic-agent run --console-cert FILE --console-cert-key FILE)")
	}
	c.log.Info("console listening", "addr", ln.Addr().String(), "scheme", scheme)
	if err := httpserve.Serve(ctx, srv, ln, shutdownTimeout); err != nil {
		return fmt.Errorf("console: serve: %w", err)
	}
	c.log.Info("console stopped")
	return nil
}

// loopback reports whether addr is on this computer only.
func loopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// hostGuard answers only requests addressed to an IP literal, localhost or
// a configured host name. A page on another site that rebinds its own DNS
// name to the clinic's address (DNS rebinding) cannot read patient data.
func (c *Console) hostGuard(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ctx echo.Context) error {
		host := ctx.Request().Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.ToLower(strings.Trim(host, "[]"))
		if net.ParseIP(host) == nil && host != "localhost" && !c.allowedHosts[host] {
			return echo.NewHTTPError(http.StatusMisdirectedRequest, "unknown host: add it to the console's allowed hosts")
		}
		return next(ctx)
	}
}

// requireJSON refuses a state-changing API call whose body is not declared
// application/json. A cross-site HTML form cannot send that content type, so
// this is the JSON API's defence against cross-site requests.
func requireJSON(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ctx echo.Context) error {
		mt, _, err := mime.ParseMediaType(ctx.Request().Header.Get(echo.HeaderContentType))
		if err != nil || mt != echo.MIMEApplicationJSON {
			return echo.NewHTTPError(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		}
		return next(ctx)
	}
}

// noStore keeps PHI out of browser and proxy caches.
func noStore(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ctx echo.Context) error {
		ctx.Response().Header().Set(echo.HeaderCacheControl, "no-store")
		return next(ctx)
	}
}

// errorBody is the JSON body of every API error.
type errorBody struct {
	Error  string            `json:"error"`
	Fields map[string]string `json:"fields,omitempty"`
}

// errorResponse maps err to a status and a body safe to show: a services
// Error by its code, an Echo error by its status, anything else as 500
// with a generic message, logged (errors carry IDs, never PHI).
func (c *Console) errorResponse(err error) (int, errorBody) {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch m := he.Message.(type) {
		case errorBody:
			return he.Code, m
		case string:
			return he.Code, errorBody{Error: m}
		}
		return he.Code, errorBody{Error: http.StatusText(he.Code)}
	}
	var e *services.Error
	if errors.As(err, &e) {
		if status, show := httperr.Status(e.Code); show {
			return status, errorBody{Error: e.Message, Fields: e.Fields}
		}
	}
	c.log.Error("console request failed", "err", err)
	return http.StatusInternalServerError, errorBody{Error: "internal error"}
}

// handleError is Echo's HTTPErrorHandler: JSON under /api, plain text elsewhere.
func (c *Console) handleError(err error, ctx echo.Context) {
	if ctx.Response().Committed {
		return
	}
	status, body := c.errorResponse(err)
	if strings.HasPrefix(ctx.Request().URL.Path, "/api/") {
		err = ctx.JSON(status, body)
	} else {
		err = ctx.String(status, body.Error)
	}
	if err != nil {
		c.log.Warn("console write error response", "err", err)
	}
}

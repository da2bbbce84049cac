package web

import (
	"io"
	"net/http"
	"net/netip"

	"github.com/labstack/echo/v4"
)

// HandleMetrics serves write's output (Prometheus' text format) at
// /metrics, to clients on the relay's own host only: counters carry no PHI,
// but they are the operator's, not the public's.
func (s *Server) HandleMetrics(write func(io.Writer)) {
	s.e.GET("/metrics", func(c echo.Context) error {
		if !s.metricsAllowed(c.Request()) {
			return echo.ErrNotFound
		}
		h := c.Response().Header()
		h.Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		c.Response().WriteHeader(http.StatusOK)
		write(c.Response())
		return nil
	})
}

// metricsAllowed reports whether r comes straight from the relay's host: the
// peer is loopback, is not a trusted proxy, and the request names no client
// behind a proxy. A reverse proxy on the same host connects from loopback
// too, and would otherwise make /metrics public.
func (s *Server) metricsAllowed(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	peer := ap.Addr().Unmap()
	if !peer.IsLoopback() {
		return false
	}
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(peer) {
			return false
		}
	}
	for _, h := range []string{echo.HeaderXForwardedFor, "Forwarded", echo.HeaderXRealIP} {
		if len(r.Header.Values(h)) > 0 {
			return false
		}
	}
	return true
}

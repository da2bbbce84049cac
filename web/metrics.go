package web

import (
	"io"
	"net"
	"net/http"

	"github.com/labstack/echo/v4"
)

// HandleMetrics serves write's output (Prometheus' text format) at
// /metrics, to clients on the relay's own host only: counters carry no PHI,
// but they are the operator's, not the public's.
func (s *Server) HandleMetrics(write func(io.Writer)) {
	s.e.GET("/metrics", func(c echo.Context) error {
		host, _, _ := net.SplitHostPort(c.Request().RemoteAddr)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
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

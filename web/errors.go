package web

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/internal/httperr"
	"github.com/clinicrelay/clinicrelay/services"
)

// apiError is the JSON body of every API error.
type apiError struct {
	Error string `json:"error"`
	// Code names the error for programs, where one is defined
	// (codePaused); the message may change, the code does not.
	Code     string            `json:"code,omitempty"`
	Fields   map[string]string `json:"fields,omitempty"`
	NextFree []apiSlot         `json:"next_free,omitempty"`
}

// classify turns any error into a status, a message safe to show, and fields.
func classify(err error) (int, string, map[string]string) {
	var de *services.Error
	var he *echo.HTTPError
	switch {
	case errors.As(err, &de):
		code, show := httperr.Status(de.Code)
		if !show {
			return code, "something went wrong on our side", nil
		}
		return code, de.Message, de.Fields
	case errors.As(err, &he):
		msg := http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok && he.Code < 500 {
			msg = m
		}
		return he.Code, msg, nil
	default:
		return http.StatusInternalServerError, "something went wrong on our side", nil
	}
}

// messageKey is the catalogue code of an error's message, "" if it has
// none; an error whose message is never shown (internal) has none.
func messageKey(err error) string {
	var de *services.Error
	if errors.As(err, &de) {
		if _, show := httperr.Status(de.Code); show {
			return de.Key
		}
	}
	return ""
}

// messageArgs are the arguments of an error's message in the catalogue.
func messageArgs(err error) []any {
	var de *services.Error
	if errors.As(err, &de) {
		return de.KeyArgs
	}
	return nil
}

// fieldArgs are the arguments of each field's message in the catalogue.
func fieldArgs(err error) map[string][]any {
	var de *services.Error
	if errors.As(err, &de) {
		return de.FieldArgs
	}
	return nil
}

// fieldKeys is the catalogue code of each field's message of an error.
func fieldKeys(err error) map[string]string {
	var de *services.Error
	if errors.As(err, &de) {
		return de.FieldKeys
	}
	return nil
}

// handleError is Echo's HTTPErrorHandler: JSON under /api, a page elsewhere.
// Server-side failures are logged with the path only, never the body.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	if rl := (*rateLimited)(nil); errors.As(err, &rl) {
		s.tooMany(c, rl.wait, rl.who)
		return
	}
	code, msg, fields := classify(err)
	if code >= 500 {
		s.log.Error("request failed", "method", c.Request().Method, "route", c.Path(), "status", code, "err", err.Error())
	}
	if code == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", retryAfter)
	}
	if strings.HasPrefix(c.Request().URL.Path, "/api/") {
		body := apiError{Error: msg, Fields: fields}
		switch services.ErrorCode(err) {
		case services.ELimit:
			body.Code = codePendingLimit
		case services.ECodeNeeded:
			body.Code = codeEmailCode
		}
		var de *services.Error
		if errors.As(err, &de) && de.Code == services.EConflict {
			body.NextFree = s.nextFree(c.Param("slug"))
		}
		c.JSON(code, body)
		return
	}
	c.Render(code, "error.html", s.pageData(c, map[string]any{"Status": code,
		"Title": errorTitle(lang(c), code), "Message": errorText(lang(c), messageKey(err), msg, messageArgs(err)...)}))
}

// retryAfter is the Retry-After, in seconds, of every 503.
const retryAfter = "5"

// codePendingLimit is the API error code of a request refused because the
// patient's email or phone has services.DefaultMaxPending requests waiting.
const codePendingLimit = "pending_limit"

// codePaused is the API error code of a request refused while NATS is down.
const codePaused = "requests_paused"

// pausable answers 503 at once while cfg.NATS says NATS is unreachable, and
// cuts short a request in flight when NATS goes, so a patient is told to
// retry instead of waiting on publish timeouts.
func (s *Server) pausable(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.cfg.NATS == nil {
			return next(c)
		}
		link := s.cfg.NATS()
		if link.Err() != nil {
			return s.paused(c)
		}
		req := c.Request()
		ctx, cancel := context.WithCancel(req.Context())
		defer cancel()
		defer context.AfterFunc(link, cancel)()
		c.SetRequest(req.WithContext(ctx))
		err := next(c)
		// Only an answer NATS was to give becomes "paused"; a 409 or a 422
		// stays what it is.
		if err != nil && link.Err() != nil && !c.Response().Committed &&
			(services.ErrorCode(err) == services.EUnavailable || errors.Is(err, context.Canceled)) {
			return s.paused(c)
		}
		return err
	}
}

// paused answers 503 with Retry-After: JSON under /api/, a page elsewhere.
func (s *Server) paused(c echo.Context) error {
	h := c.Response().Header()
	h.Set("Retry-After", retryAfter)
	h.Set("Cache-Control", "no-store")
	if strings.HasPrefix(c.Request().URL.Path, "/api/") {
		return c.JSON(http.StatusServiceUnavailable, apiError{Code: codePaused,
			Error: "requests are paused while the relay reconnects to its queue; please retry in a few seconds"})
	}
	return c.Render(http.StatusServiceUnavailable, "paused.html", s.pageData(c, map[string]any{"RetryAfter": retryAfter}))
}

package console

import (
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/services"
)

// The front desk's page follows GET /api/events (server-sent events): the
// number of pending requests the signed-in user sees, at once and after
// every change, and "signedout" once the session has ended. The stream
// carries no patient data; the page fetches the list again itself.

// liveHeader marks what the page's script asks by itself: such a request
// does not renew the session (staff.Directory.Peek), so a page left open
// still signs its user out when idle.
const liveHeader = "X-Console-Live"

// Live stream timing: the session is checked this often (Config.LiveCheck),
// and a stream lasts at most this long (the browser opens another).
const (
	defaultLiveCheck = 20 * time.Second
	liveMaxAge       = 30 * time.Minute
)

// handleEvents is GET /api/events.
func (c *Console) handleEvents(ctx echo.Context) error {
	ck, err := ctx.Cookie(sessionCookie)
	if err != nil {
		return services.Errorf(services.EUnauthorized, "sign in first")
	}
	u := user(ctx)
	w := ctx.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	write := func(ev string) error {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write([]byte(ev)); err != nil {
			return err
		}
		return rc.Flush()
	}
	send := func() error {
		list, err := c.Requests(ctx.Request().Context(), StatusPending)
		if err != nil {
			return err
		}
		return write(fmt.Sprintf("event: requests\ndata: {\"pending\":%d}\n\n", len(visibleTo(u, list))))
	}
	check := time.NewTicker(c.liveCheck)
	defer check.Stop()
	end := time.NewTimer(liveMaxAge)
	defer end.Stop()
	for {
		next := c.nextChange() // before reading: a change meanwhile wakes us
		if err := send(); err != nil {
			return nil
		}
		for waiting := true; waiting; {
			select {
			case <-ctx.Request().Context().Done():
				return nil
			case <-end.C:
				return nil
			case <-next:
				waiting = false
			case <-check.C:
				if _, err := c.staff.Peek(ck.Value); err != nil {
					write("event: signedout\ndata: {}\n\n")
					return nil
				}
				if write(": still here\n\n") != nil {
					return nil
				}
			}
		}
	}
}

package console

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/agent/connector"
	"github.com/clinicrelay/clinicrelay/agent/console/staff"
	"github.com/clinicrelay/clinicrelay/internal/httperr"
	"github.com/clinicrelay/clinicrelay/internal/password"
	"github.com/clinicrelay/clinicrelay/services"
)

// The patient portal's second way in (docs/portal.md): from a request's
// page, the front desk gives its patient portal access with a temporary
// password, shown once. Only its argon2id hash leaves the clinic, with the
// request's email; the patient must replace it at first sign-in, and it
// dies after services.PortalTempLife unused.

// SetPortalAccess is how the console reaches the relay for grants
// (connector.PortalGiver); the agent sets it once connected.
func (c *Console) SetPortalAccess(p connector.PortalAccess) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.portal = p
}

// granted is a temporary password just given, to show once.
type granted struct {
	Password string    `json:"temporary_password"`
	Until    time.Time `json:"expires_at"`
	// Refused is why access was not given (the page shows it; Exists
	// offers the reset).
	Refused error `json:"-"`
}

// Why is the refusal's message, for the page.
func (g granted) Why() string {
	var e *services.Error
	if errors.As(g.Refused, &e) {
		if _, show := httperr.Status(e.Code); show {
			return e.Message
		}
	}
	return "the patient portal cannot be reached now; try again in a minute"
}

// Exists reports whether access was refused for an account with the
// patient's own password.
func (g granted) Exists() bool { return services.ErrorCode(g.Refused) == services.EConflict }

// grantAs gives the patient of request id portal access, as u (who must
// see the request's provider); reset replaces a password the patient
// chose. Recorded under u's name ("reset" in its detail).
func (c *Console) grantAs(ctx context.Context, u staff.User, id string, reset bool) (granted, error) {
	e, err := c.entryFor(ctx, u, id)
	if err != nil {
		return granted{}, err
	}
	c.mu.Lock()
	p := c.portal
	c.mu.Unlock()
	if p == nil {
		return granted{}, services.Errorf(services.EUnavailable, "the patient portal cannot be reached: the agent is not connected to the relay")
	}
	temp := password.OneTime()
	hash, err := staff.Hash(temp)
	if err != nil {
		return granted{}, err
	}
	if err := p.Grant(ctx, e.Email, hash, reset); err != nil {
		return granted{}, err
	}
	detail := ""
	if reset {
		detail = "reset"
	}
	c.record(ctx, u.Name, services.AuditPortalGranted, id, detail)
	return granted{Password: temp, Until: c.now().Add(services.PortalTempLife)}, nil
}

// handleRequestPortal is POST /api/requests/:id/portal: the temporary
// password, once.
func (c *Console) handleRequestPortal(ctx echo.Context) error {
	var in struct {
		Reset bool `json:"reset"`
	}
	if ctx.Request().ContentLength != 0 {
		if err := decodeJSON(ctx, &in); err != nil {
			return err
		}
	}
	g, err := c.grantAs(ctx.Request().Context(), user(ctx), ctx.Param("id"), in.Reset)
	if err != nil {
		return err
	}
	return ctx.JSON(http.StatusOK, g)
}

// handlePagePortal is POST /requests/:id/portal from the request's page
// (reset=yes to replace the patient's own password): the page again, with
// the temporary password, or why not.
func (c *Console) handlePagePortal(ctx echo.Context) error {
	g, err := c.grantAs(ctx.Request().Context(), user(ctx), ctx.Param("id"), ctx.FormValue("reset") == "yes")
	if err != nil {
		if services.ErrorCode(err) == services.ENotFound {
			return err
		}
		return c.requestPage(ctx, &granted{Refused: err})
	}
	return c.requestPage(ctx, &g)
}

package console

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/agent/connector"
	"github.com/clinicrelay/clinicrelay/agent/console/staff"
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
}

// grantAs gives the patient of request id portal access, as u (who must
// see the request's provider); recorded under u's name.
func (c *Console) grantAs(ctx context.Context, u staff.User, id string) (granted, error) {
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
	if err := p.Grant(ctx, e.Email, hash); err != nil {
		return granted{}, err
	}
	c.record(ctx, u.Name, services.AuditPortalGranted, id, "")
	return granted{Password: temp, Until: c.now().Add(services.PortalTempLife)}, nil
}

// handleRequestPortal is POST /api/requests/:id/portal: the temporary
// password, once.
func (c *Console) handleRequestPortal(ctx echo.Context) error {
	g, err := c.grantAs(ctx.Request().Context(), user(ctx), ctx.Param("id"))
	if err != nil {
		return err
	}
	return ctx.JSON(http.StatusOK, g)
}

// handlePagePortal is POST /requests/:id/portal from the request's page:
// the page again, with the temporary password.
func (c *Console) handlePagePortal(ctx echo.Context) error {
	g, err := c.grantAs(ctx.Request().Context(), user(ctx), ctx.Param("id"))
	if err != nil {
		return c.render(ctx, err, nil)
	}
	return c.requestPage(ctx, &g)
}

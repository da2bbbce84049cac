package console

import (
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/agent/console/staff"
)

// Admins manage the staff accounts at the console too (the same as
// `clinic-agent user`): add, reset, disable, enable, unlock. Each is
// recorded, with the admin's name and the user's.

// Local audit actions of user management; Detail names the user.
const (
	AuditUserAdded    = "user-added"
	AuditUserReset    = "user-reset"
	AuditUserDisabled = "user-disabled"
	AuditUserEnabled  = "user-enabled"
	AuditUserUnlocked = "user-unlocked"
)

// userView is a user as the users page and API show them.
type userView struct {
	staff.User
	Locked bool `json:"locked"`
}

func (c *Console) userViews() ([]userView, error) {
	users, err := c.staff.List()
	now := c.now()
	out := make([]userView, 0, len(users))
	for _, u := range users {
		out = append(out, userView{User: u, Locked: now.Before(c.staff.LockedUntil(u))})
	}
	return out, err
}

// userAction applies one of the actions on the user name by admin.
func (c *Console) userAction(ctx echo.Context, action, name string) (oneTime string, err error) {
	switch action {
	case "reset":
		oneTime, err = c.staff.Reset(name)
		action = AuditUserReset
	case "disable":
		if name == user(ctx).Name {
			return "", fieldError("name", "you cannot disable yourself")
		}
		err, action = c.staff.Disable(name), AuditUserDisabled
	case "enable":
		err, action = c.staff.Enable(name), AuditUserEnabled
	case "unlock":
		err, action = c.staff.Unlock(name), AuditUserUnlocked
	default:
		return "", echo.ErrNotFound
	}
	if err == nil {
		c.record(ctx.Request().Context(), user(ctx).Name, action, "", name)
	}
	return oneTime, err
}

// addUser makes a user from the admin's input.
func (c *Console) addUser(ctx echo.Context, name string, role staff.Role, providers []string) (string, error) {
	pw, err := c.staff.Add(name, role, providers)
	if err == nil {
		c.record(ctx.Request().Context(), user(ctx).Name, AuditUserAdded, "", name)
	}
	return pw, err
}

// handleUserList is GET /api/users (admins).
func (c *Console) handleUserList(ctx echo.Context) error {
	list, err := c.userViews()
	if err != nil {
		return err
	}
	return ctx.JSON(http.StatusOK, list)
}

// handleUserCreate is POST /api/users {"name","role","providers"} (admins):
// 201 with the one-time password, shown this once.
func (c *Console) handleUserCreate(ctx echo.Context) error {
	var in struct {
		Name      string     `json:"name"`
		Role      staff.Role `json:"role"`
		Providers []string   `json:"providers"`
	}
	if err := decodeJSON(ctx, &in); err != nil {
		return err
	}
	pw, err := c.addUser(ctx, in.Name, in.Role, in.Providers)
	if err != nil {
		return err
	}
	return ctx.JSON(http.StatusCreated, map[string]string{"name": in.Name, "one_time_password": pw})
}

// handleUserAction is POST /api/users/:name/reset|disable|enable|unlock
// (admins); reset answers the new one-time password.
func (c *Console) handleUserAction(ctx echo.Context) error {
	pw, err := c.userAction(ctx, ctx.Param("action"), ctx.Param("name"))
	if err != nil {
		return err
	}
	if pw != "" {
		return ctx.JSON(http.StatusOK, map[string]string{"name": ctx.Param("name"), "one_time_password": pw})
	}
	return ctx.NoContent(http.StatusNoContent)
}

// usersData is what templates/users.html renders: no patient data.
type usersData struct {
	Clinic, CSRF, Error string
	Fields              map[string]string
	Me                  staff.User
	Users               []userView
	Providers           []providerOption
	// Told is a one-time password just made, shown this once, for User.
	Told, ToldUser string
	Now            time.Time
}

type providerOption struct{ ID, Name string }

// renderUsers writes the users page, with flash and a one-time password to
// show once.
func (c *Console) renderUsers(ctx echo.Context, flash error, toldUser, told string) error {
	cl, _ := c.clinicInfo()
	d := usersData{Clinic: cl.Name, Me: user(ctx), Told: told, ToldUser: toldUser, Now: c.now()}
	d.CSRF, _ = ctx.Get("csrf").(string)
	var err error
	if d.Users, err = c.userViews(); err != nil {
		return err
	}
	list, err := c.Providers(ctx.Request().Context())
	if err != nil {
		return err
	}
	for _, p := range list {
		d.Providers = append(d.Providers, providerOption{p.ID, p.Name})
	}
	status, body := c.flashed(flash)
	d.Error, d.Fields = body.Error, body.Fields
	return writeHTML(ctx, usersTemplate, status, d)
}

// handleUsersPage is GET /users (admins).
func (c *Console) handleUsersPage(ctx echo.Context) error { return c.renderUsers(ctx, nil, "", "") }

// handleUsersForm is POST /users: add a user (admins).
func (c *Console) handleUsersForm(ctx echo.Context) error {
	form, _ := ctx.FormParams()
	providers := slices.DeleteFunc(form["providers"], func(p string) bool { return p == "" })
	name := ctx.FormValue("name")
	pw, err := c.addUser(ctx, name, staff.Role(ctx.FormValue("role")), providers)
	if err != nil {
		return c.renderUsers(ctx, err, "", "")
	}
	return c.renderUsers(ctx, nil, name, pw)
}

// handleUserActionForm is POST /users/:name/:action from the page (admins).
func (c *Console) handleUserActionForm(ctx echo.Context) error {
	pw, err := c.userAction(ctx, ctx.Param("action"), ctx.Param("name"))
	if err != nil {
		return c.renderUsers(ctx, err, "", "")
	}
	if pw != "" {
		return c.renderUsers(ctx, nil, ctx.Param("name"), pw)
	}
	return ctx.Redirect(http.StatusSeeOther, "/users")
}

package console

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/agent/console/staff"
	"github.com/clinicrelay/clinicrelay/services"
)

// sessionCookie holds the staff session token.
const sessionCookie = "console_session"

// userKey is where signedIn keeps the signed-in staff.User on the Echo context.
const userKey = "staff_user"

// user is the staff user signedIn found for this request.
func user(ctx echo.Context) staff.User {
	u, _ := ctx.Get(userKey).(staff.User)
	return u
}

func isAPI(ctx echo.Context) bool { return strings.HasPrefix(ctx.Request().URL.Path, "/api/") }

// signedIn serves only a signed-in user: without a session, the API answers
// 401 and pages go to the sign-in page. A user whose password is one-time
// reaches nothing but the password change and sign-out.
func (c *Console) signedIn(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ctx echo.Context) error {
		var u staff.User
		var err error = services.Errorf(services.EUnauthorized, "sign in first: POST /api/session")
		if ck, cerr := ctx.Cookie(sessionCookie); cerr == nil && isLive(ctx.Request()) {
			u, err = c.staff.Peek(ck.Value) // the page's script, not the user: no renewal
		} else if cerr == nil {
			u, err = c.staff.Session(ck.Value)
		}
		switch {
		case err != nil && services.ErrorCode(err) != services.EUnauthorized:
			return err // the accounts' file cannot be read: 500, logged
		case err != nil && isAPI(ctx):
			return err
		case err != nil:
			return ctx.Redirect(http.StatusSeeOther, "/signin")
		}
		ctx.Set(userKey, u)
		if u.MustChange && !passwordRoute(ctx.Request()) {
			if isAPI(ctx) {
				return services.Errorf(services.EForbidden, "replace your one-time password first: POST /api/password")
			}
			return ctx.Redirect(http.StatusSeeOther, "/password")
		}
		return next(ctx)
	}
}

// isLive reports whether the page's script, not the user, asks: its
// fetches carry liveHeader, and EventSource (which sends no header of ours)
// only ever opens the live stream.
func isLive(r *http.Request) bool {
	return r.Header.Get(liveHeader) != "" || r.URL.Path == "/api/events"
}

// passwordRoute is what a user with a one-time password may reach.
func passwordRoute(r *http.Request) bool {
	switch r.URL.Path {
	case "/password", "/api/password", "/signout", "/api/session":
		return true
	}
	return false
}

// adminOnly serves admins only (after signedIn).
func adminOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ctx echo.Context) error {
		if !user(ctx).Admin() {
			return services.Errorf(services.EForbidden, "only an admin may do this")
		}
		return next(ctx)
	}
}

// clientAddr is the client's IP address, for the per-address limits: the
// console is served directly on the clinic LAN, never behind a proxy.
func clientAddr(ctx echo.Context) string {
	host, _, err := net.SplitHostPort(ctx.Request().RemoteAddr)
	if err != nil {
		return ctx.Request().RemoteAddr
	}
	return host
}

// setSession sets the session cookie to token ("" clears it).
func setSession(ctx echo.Context, token string) {
	ck := &http.Cookie{Name: sessionCookie, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: ctx.Request().TLS != nil}
	if token == "" {
		ck.MaxAge = -1
	}
	ctx.SetCookie(ck)
}

// signIn checks name and password and sets the session cookie; a refusal
// for too many tries says when to come back.
func (c *Console) signIn(ctx echo.Context, name, password string) (staff.User, error) {
	name = strings.TrimSpace(name)
	token, u, known, err := c.staff.SignIn(name, password, clientAddr(ctx))
	if d := services.RetryAfter(err); d > 0 {
		ctx.Response().Header().Set("Retry-After", strconv.Itoa(int(d.Seconds())))
	}
	if err != nil {
		// The name only when a user has it: whatever else was typed there
		// may be a password.
		shown := "(unknown)"
		if known {
			shown = name
		}
		c.log.Info("sign-in refused", "user", shown, "addr", clientAddr(ctx), "code", services.ErrorCode(err))
		// A refusal before any password check (too many tries, too busy)
		// costs an attacker nothing: not recorded, or a flood would fill
		// the record.
		if services.ErrorCode(err) == services.EUnauthorized {
			c.recordRefusal(ctx.Request().Context(), shownUser(name, known), "from "+clientAddr(ctx))
		}
		return staff.User{}, err
	}
	c.log.Info("signed in", "user", u.Name)
	c.record(ctx.Request().Context(), u.Name, AuditSignedIn, "", "from "+clientAddr(ctx))
	setSession(ctx, token)
	return u, nil
}

// shownUser is name for the record when a user has it, else "".
func shownUser(name string, known bool) string {
	if known {
		return name
	}
	return ""
}

// changePassword replaces the signed-in user's password and renews the
// session cookie.
func (c *Console) changePassword(ctx echo.Context, current, next string) error {
	ck, err := ctx.Cookie(sessionCookie)
	if err != nil {
		return services.Errorf(services.EUnauthorized, "sign in first")
	}
	token, err := c.staff.ChangePassword(ck.Value, current, next, clientAddr(ctx))
	if d := services.RetryAfter(err); d > 0 {
		ctx.Response().Header().Set("Retry-After", strconv.Itoa(int(d.Seconds())))
	}
	if err != nil {
		return err
	}
	c.log.Info("password changed", "user", user(ctx).Name)
	c.record(ctx.Request().Context(), user(ctx).Name, AuditPasswordChanged, "", "from "+clientAddr(ctx))
	setSession(ctx, token)
	return nil
}

// signOut ends this browser's session.
func (c *Console) signOut(ctx echo.Context) {
	if ck, err := ctx.Cookie(sessionCookie); err == nil {
		c.staff.SignOut(ck.Value)
		c.record(ctx.Request().Context(), user(ctx).Name, AuditSignedOut, "", "from "+clientAddr(ctx))
	}
	setSession(ctx, "")
}

// handleSessionCreate is POST /api/session {"name","password"}: 200 with
// the user and a session cookie, 401, or 429 with Retry-After.
func (c *Console) handleSessionCreate(ctx echo.Context) error {
	var in struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	if err := decodeJSON(ctx, &in); err != nil {
		return err
	}
	u, err := c.signIn(ctx, in.Name, in.Password)
	if err != nil {
		return err
	}
	return ctx.JSON(http.StatusOK, u)
}

// handleSessionShow is GET /api/session: who is signed in.
func (c *Console) handleSessionShow(ctx echo.Context) error {
	return ctx.JSON(http.StatusOK, user(ctx))
}

// handleSessionDelete is DELETE /api/session: sign out.
func (c *Console) handleSessionDelete(ctx echo.Context) error {
	c.signOut(ctx)
	return ctx.NoContent(http.StatusNoContent)
}

// handlePasswordSet is POST /api/password {"current","new"}.
func (c *Console) handlePasswordSet(ctx echo.Context) error {
	var in struct {
		Current string `json:"current"`
		New     string `json:"new"`
	}
	if err := decodeJSON(ctx, &in); err != nil {
		return err
	}
	if err := c.changePassword(ctx, in.Current, in.New); err != nil {
		return err
	}
	return ctx.NoContent(http.StatusNoContent)
}

// signinData is what templates/signin.html renders: no patient data.
type signinData struct {
	Clinic, CSRF, Error, Name string
	Fields                    map[string]string
	// Setup: no user exists yet; the page says how to add the first admin.
	Setup bool
	// Change: the signed-in user sets a new password.
	Change  bool
	OneTime bool
	MinLen  int
}

// renderSignin writes the sign-in, setup or password page, with flash.
func (c *Console) renderSignin(ctx echo.Context, d signinData, flash error) error {
	cl, _ := c.clinicInfo()
	d.Clinic, d.MinLen = cl.Name, staff.MinPasswordLen
	d.CSRF, _ = ctx.Get("csrf").(string)
	status, body := c.flashed(flash)
	d.Error, d.Fields = body.Error, body.Fields
	return writeHTML(ctx, signinTemplate, status, d)
}

// handleSigninPage is GET /signin.
func (c *Console) handleSigninPage(ctx echo.Context) error {
	any, err := c.staff.Any()
	if err != nil {
		return err
	}
	return c.renderSignin(ctx, signinData{Setup: !any}, nil)
}

// handleSigninForm is POST /signin from the page.
func (c *Console) handleSigninForm(ctx echo.Context) error {
	name := ctx.FormValue("name")
	u, err := c.signIn(ctx, name, ctx.FormValue("password"))
	if err != nil {
		return c.renderSignin(ctx, signinData{Name: name}, err)
	}
	if u.MustChange {
		return ctx.Redirect(http.StatusSeeOther, "/password")
	}
	return ctx.Redirect(http.StatusSeeOther, "/")
}

// handlePasswordPage is GET /password.
func (c *Console) handlePasswordPage(ctx echo.Context) error {
	return c.renderSignin(ctx, signinData{Change: true, OneTime: user(ctx).MustChange, Name: user(ctx).Name}, nil)
}

// handlePasswordForm is POST /password from the page.
func (c *Console) handlePasswordForm(ctx echo.Context) error {
	if ctx.FormValue("new") != ctx.FormValue("confirm") {
		return c.renderSignin(ctx, signinData{Change: true, OneTime: user(ctx).MustChange, Name: user(ctx).Name},
			fieldError("confirm", "the two new passwords differ"))
	}
	if err := c.changePassword(ctx, ctx.FormValue("current"), ctx.FormValue("new")); err != nil {
		return c.renderSignin(ctx, signinData{Change: true, OneTime: user(ctx).MustChange, Name: user(ctx).Name}, err)
	}
	return ctx.Redirect(http.StatusSeeOther, "/")
}

// handleSignoutForm is POST /signout from the page.
func (c *Console) handleSignoutForm(ctx echo.Context) error {
	c.signOut(ctx)
	return ctx.Redirect(http.StatusSeeOther, "/signin")
}

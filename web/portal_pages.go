package web

import (
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/services"
)

// The portal's pages, which work without JavaScript: /c/:slug/portal signs
// in or registers, and, signed in, lists the patient's requests with their
// status pages; /c/:slug/portal/link/:token sets a password from the
// emailed link.

// portalView is what portal.html shows.
type portalView struct {
	Clinic services.Clinic
	// SignedIn: the list and the account's forms; else sign-in and register.
	SignedIn   bool
	MustChange bool
	// Upcoming are the requests whose time is still to come, soonest
	// first; Past the others, newest first.
	Upcoming, Past []portalItem
	// Email is what was typed in the sign-in or register form.
	Email string
	// Notice is a success, Message a problem, both for the whole page.
	Notice, Message string
	Errors          map[string]string // by field
	// Form names the form the Errors and Message are about.
	Form string
	// CanRegister: the relay emails links (else only the clinic's
	// temporary passwords let patients in).
	CanRegister bool
}

// portalItem is one request in the list.
type portalItem struct {
	apiPortalAppointment
	State string // its state, in the patient's language
	Slot  pageSlot
}

func (s *Server) renderPortal(c echo.Context, code int, v portalView) error {
	v.CanRegister = s.cfg.Portal != nil && s.cfg.Portal.CanRegister()
	return c.Render(code, "portal.html", s.pageData(c, map[string]any{"Portal": v}))
}

// portalRefused shows the page again after err about form: the fields at
// fault, or the message of a 401, 403 or 429. Other errors go to the
// error page.
func (s *Server) portalRefused(c echo.Context, v portalView, form string, err error) error {
	code, msg, fields := classify(err)
	switch services.ErrorCode(err) {
	case services.EInvalid, services.EUnauthorized, services.ETooManyTries, services.EForbidden:
	default:
		return err
	}
	portalAnswer(c, err)
	v.Form, v.Errors = form, map[string]string{}
	keys := fieldKeys(err)
	for f, m := range fields {
		v.Errors[f] = errorText(lang(c), keys[f], m, fieldArgs(err)[f]...)
	}
	if len(fields) == 0 {
		v.Message = errorText(lang(c), messageKey(err), msg, messageArgs(err)...)
	}
	return s.renderPortal(c, code, v)
}

// handlePortal is GET /c/:slug/portal.
func (s *Server) handlePortal(c echo.Context) error {
	cl, p, err := s.portalOf(c, nil)
	if err != nil {
		return err
	}
	var v portalView
	switch c.QueryParam("done") {
	case "password":
		v.Notice = t(c, "portal.password_changed")
	case "signedout":
		v.Notice = t(c, "portal.signed_out_now")
	}
	return s.portalHome(c, cl, p, v)
}

// portalHome renders the page for whoever the cookie says is signed in.
func (s *Server) portalHome(c echo.Context, cl services.Clinic, p *services.Portal, v portalView) error {
	v.Clinic = cl
	token := portalToken(c, cl.ID)
	sess, err := p.Session(c.Request().Context(), cl.ID, token)
	switch {
	case services.ErrorCode(err) == services.EUnauthorized:
		if token != "" {
			s.setPortalCookie(c, cl.ID, "")
		}
		return s.renderPortal(c, http.StatusOK, v)
	case err != nil:
		return err
	}
	v.SignedIn, v.MustChange = true, sess.MustChange()
	if !v.MustChange {
		list, err := s.appointments(c.Request().Context(), cl, sess)
		if err != nil {
			return err
		}
		now := s.cfg.Now()
		for _, a := range list {
			it := portalItem{apiPortalAppointment: a, State: t(c, "state."+a.Status)}
			if pid, start, err := services.ParseSlotID(a.SlotID); err == nil {
				it.Slot = s.pageSlot(c, cl, services.Slot{ID: a.SlotID, ProviderID: pid, Start: start})
			}
			if a.Start.After(now) {
				v.Upcoming = append(v.Upcoming, it)
			} else {
				v.Past = append(v.Past, it)
			}
		}
		slices.SortStableFunc(v.Upcoming, func(x, y portalItem) int { return x.Start.Compare(y.Start) })
	}
	return s.renderPortal(c, http.StatusOK, v)
}

// handlePortalLogin is POST /c/:slug/portal/login.
func (s *Server) handlePortalLogin(c echo.Context) error {
	cl, p, err := s.portalOf(c, nil)
	if err != nil {
		return err
	}
	v := portalView{Clinic: cl, Email: c.FormValue("email")}
	if err := s.portalLimit(c, cl.ID, ""); err != nil {
		return err
	}
	token, err := p.SignIn(c.Request().Context(), cl.ID, v.Email, c.FormValue("password"), c.RealIP())
	if err != nil {
		return s.portalRefused(c, v, "login", err)
	}
	s.setPortalCookie(c, cl.ID, token)
	return c.Redirect(http.StatusSeeOther, "/c/"+cl.ID+"/portal")
}

// handlePortalRegister is POST /c/:slug/portal/register.
func (s *Server) handlePortalRegister(c echo.Context) error {
	cl, p, err := s.portalOf(c, nil)
	if err != nil {
		return err
	}
	v := portalView{Clinic: cl, Email: c.FormValue("email")}
	if err := s.portalLimit(c, cl.ID, v.Email); err != nil {
		return err
	}
	if err := p.Register(c.Request().Context(), cl, v.Email, lang(c), c.RealIP()); err != nil {
		return s.portalRefused(c, v, "register", err)
	}
	v.Notice, v.Email = t(c, "portal.registered"), ""
	return s.renderPortal(c, http.StatusAccepted, v)
}

// handlePortalLogout is POST /c/:slug/portal/logout (everywhere=yes: every session).
func (s *Server) handlePortalLogout(c echo.Context) error {
	cl, p, err := s.portalOf(c, nil)
	if err != nil {
		return err
	}
	err = p.SignOut(c.Request().Context(), cl.ID, portalToken(c, cl.ID), c.FormValue("everywhere") == "yes", c.RealIP())
	if err != nil && services.ErrorCode(err) != services.EUnauthorized {
		return err
	}
	s.setPortalCookie(c, cl.ID, "")
	return c.Redirect(http.StatusSeeOther, "/c/"+cl.ID+"/portal?done=signedout")
}

// handlePortalChangePassword is POST /c/:slug/portal/password.
func (s *Server) handlePortalChangePassword(c echo.Context) error {
	cl, p, err := s.portalOf(c, nil)
	if err != nil {
		return err
	}
	if err := s.portalLimit(c, cl.ID, ""); err != nil {
		return err
	}
	token, err := p.ChangePassword(c.Request().Context(), cl.ID, portalToken(c, cl.ID), c.FormValue("current_password"),
		c.FormValue("new_password"), c.RealIP())
	switch services.ErrorCode(err) {
	case services.EInvalid, services.ETooManyTries: // still signed in
		v := portalView{Clinic: cl, SignedIn: true, MustChange: portalMustChange(c, p, cl.ID)}
		return s.portalRefused(c, v, "password", err)
	}
	if err != nil {
		return s.portalRefused(c, portalView{Clinic: cl}, "login", err)
	}
	s.setPortalCookie(c, cl.ID, token)
	return c.Redirect(http.StatusSeeOther, "/c/"+cl.ID+"/portal?done=password")
}

// portalMustChange reports whether the signed-in patient must still
// replace a temporary password.
func portalMustChange(c echo.Context, p *services.Portal, clinic string) bool {
	sess, err := p.Session(c.Request().Context(), clinic, portalToken(c, clinic))
	return err == nil && sess.MustChange()
}

// linkView is what portal_link.html shows.
type linkView struct {
	Clinic  services.Clinic
	Token   string
	Message string
	Error   string // the password field's
}

// handlePortalLinkForm is GET /c/:slug/portal/link/:token.
func (s *Server) handlePortalLinkForm(c echo.Context) error {
	cl, p, err := s.portalOf(c, nil)
	if err != nil {
		return err
	}
	v, code := linkView{Clinic: cl, Token: c.Param("token")}, http.StatusOK
	if !p.LinkAlive(c.Request().Context(), cl.ID, v.Token) {
		v.Message, code = t(c, "portal.link_dead"), http.StatusGone
	}
	return c.Render(code, "portal_link.html", s.pageData(c, map[string]any{"Link": v}))
}

// handlePortalLink is POST /c/:slug/portal/link/:token: the new password.
func (s *Server) handlePortalLink(c echo.Context) error {
	cl, p, err := s.portalOf(c, nil)
	if err != nil {
		return err
	}
	token, err := p.SetPassword(c.Request().Context(), cl.ID, c.Param("token"), c.FormValue("password"), c.RealIP())
	if err == nil {
		s.setPortalCookie(c, cl.ID, token)
		return c.Redirect(http.StatusSeeOther, "/c/"+cl.ID+"/portal")
	}
	v := linkView{Clinic: cl, Token: c.Param("token")}
	code, msg, fields := classify(err)
	switch services.ErrorCode(err) {
	case services.EInvalid:
		v.Error = errorText(lang(c), fieldKeys(err)["password"], fields["password"])
	case services.EUnauthorized:
		v.Message = errorText(lang(c), messageKey(err), msg)
	default:
		return err
	}
	return c.Render(code, "portal_link.html", s.pageData(c, map[string]any{"Link": v}))
}

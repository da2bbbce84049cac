package web

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/services"
)

// The patient portal (services.Portal): per clinic, a session cookie
// "portal_<clinic>" (HttpOnly, SameSite=Strict, Secure behind HTTPS) holds
// the session's secret token. The JSON API is under
// /api/v1/clinics/:slug/portal, the pages under /c/:slug/portal
// (portal_pages.go).

// portalCookie is the name of clinic's session cookie.
func portalCookie(clinic string) string { return "portal_" + clinic }

// byPortal is whose budget a 429 of registrations or sign-ins is about.
const byPortal = "too many portal sign-ins or registrations from your network or for this email"

// portal is the configured portal, or a 503 when the relay has none.
func (s *Server) portal() (*services.Portal, error) {
	if s.cfg.Portal == nil {
		return nil, services.Errorf(services.EUnavailable, "the patient portal is not available on this relay")
	}
	return s.cfg.Portal, nil
}

// portalLimit spends the client's (and, with an email, that mailbox's)
// portal budget: a 429 past it.
func (s *Server) portalLimit(c echo.Context, clinic, email string) error {
	if s.rates == nil {
		return nil
	}
	pairs := []any{s.rates.portalIP, clientKey(c.RealIP())}
	if email != "" {
		pairs = append(pairs, s.rates.codeSend, mailboxKey(clinic, email))
	}
	if wait := s.take(s.cfg.Now(), pairs...); wait > 0 {
		return &rateLimited{wait, byPortal}
	}
	return nil
}

// setPortalCookie starts (token) or ends ("") clinic's session cookie.
func (s *Server) setPortalCookie(c echo.Context, clinic, token string) {
	ck := &http.Cookie{Name: portalCookie(clinic), Value: token, Path: "/", HttpOnly: true, Secure: s.cfg.SecureCookies,
		SameSite: http.SameSiteStrictMode, MaxAge: int(services.PortalSessionMax.Seconds())}
	if token == "" {
		ck.MaxAge = -1
	}
	c.SetCookie(ck)
}

// portalToken is the session token clinic's cookie carries, or "".
func portalToken(c echo.Context, clinic string) string {
	ck, err := c.Cookie(portalCookie(clinic))
	if err != nil {
		return ""
	}
	return ck.Value
}

// portalAnswer turns a sign-in refused for now into a 429 with Retry-After.
func portalAnswer(c echo.Context, err error) error {
	if d := services.RetryAfter(err); d > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(d.Seconds())))
	}
	return err
}

type apiPortalRegister struct {
	Email string `json:"email"`
}

type apiPortalLogin struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type apiPortalSetPassword struct {
	Token    string `json:"token"`
	Password string `json:"password"`
}

type apiPortalChange struct {
	Current string `json:"current_password"`
	New     string `json:"new_password"`
}

type apiPortalLogout struct {
	Everywhere bool `json:"everywhere"`
}

// apiPortalAppointment is one of the signed-in patient's requests.
type apiPortalAppointment struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	SlotID    string    `json:"slot_id,omitempty"` // the proposed one while proposed
	Start     time.Time `json:"start,omitzero"`
	Provider  string    `json:"provider,omitempty"`
	StatusURL string    `json:"status_url"`
	APIURL    string    `json:"api_url"`
	SentAt    time.Time `json:"sent_at"`
}

// registered is the one answer to a registration, whatever the clinic's.
const registered = "if the clinic has this address in its records, an email with a link to set your password is on its way"

// bindPortal reads a portal JSON body into v: 415 unless JSON, 400 unless it parses.
func bindPortal(c echo.Context, v any) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	return decodeJSON(c.Request().Body, v)
}

// portalOf is the clinic of the route and the portal, with the JSON body
// read into body unless it is nil.
func (s *Server) portalOf(c echo.Context, body any) (services.Clinic, *services.Portal, error) {
	cl, err := s.clinic(c)
	if err != nil {
		return cl, nil, err
	}
	p, err := s.portal()
	if err != nil {
		return cl, nil, err
	}
	if body != nil {
		if err := bindPortal(c, body); err != nil {
			return cl, nil, err
		}
	}
	return cl, p, nil
}

// handleAPIPortalRegister is POST /api/v1/clinics/:slug/portal/register:
// 202 for any well-formed email, whatever the clinic's records hold.
func (s *Server) handleAPIPortalRegister(c echo.Context) error {
	var in apiPortalRegister
	cl, p, err := s.portalOf(c, &in)
	if err != nil {
		return err
	}
	if err := s.portalLimit(c, cl.ID, in.Email); err != nil {
		return err
	}
	if err := p.Register(c.Request().Context(), cl, in.Email, lang(c), c.RealIP()); err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]string{"message": registered})
}

// handleAPIPortalLogin is POST /api/v1/clinics/:slug/portal/login: 200 and
// the session cookie, 401 on a wrong email or password, 429 once locked.
func (s *Server) handleAPIPortalLogin(c echo.Context) error {
	var in apiPortalLogin
	cl, p, err := s.portalOf(c, &in)
	if err != nil {
		return err
	}
	if err := s.portalLimit(c, cl.ID, ""); err != nil {
		return err
	}
	token, err := p.SignIn(c.Request().Context(), cl.ID, in.Email, in.Password, c.RealIP())
	if err != nil {
		return portalAnswer(c, err)
	}
	return s.signedIn(c, cl, p, token)
}

// signedIn sets the session cookie and answers with the session.
func (s *Server) signedIn(c echo.Context, cl services.Clinic, p *services.Portal, token string) error {
	s.setPortalCookie(c, cl.ID, token)
	sess, err := p.Session(c.Request().Context(), cl.ID, token)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"must_change_password": sess.MustChange(),
		"idle_timeout_seconds": int(services.PortalIdle.Seconds())})
}

// handleAPIPortalSetPassword is POST /api/v1/clinics/:slug/portal/password:
// the emailed link's token and a new password; 200 and a session.
func (s *Server) handleAPIPortalSetPassword(c echo.Context) error {
	var in apiPortalSetPassword
	cl, p, err := s.portalOf(c, &in)
	if err != nil {
		return err
	}
	token, err := p.SetPassword(c.Request().Context(), cl.ID, in.Token, in.Password, c.RealIP())
	if err != nil {
		return err
	}
	return s.signedIn(c, cl, p, token)
}

// handleAPIPortalChangePassword is POST .../portal/password/change.
func (s *Server) handleAPIPortalChangePassword(c echo.Context) error {
	var in apiPortalChange
	cl, p, err := s.portalOf(c, &in)
	if err != nil {
		return err
	}
	if err := s.portalLimit(c, cl.ID, ""); err != nil {
		return err
	}
	token, err := p.ChangePassword(c.Request().Context(), cl.ID, portalToken(c, cl.ID), in.Current, in.New, c.RealIP())
	if err != nil {
		return portalAnswer(c, err)
	}
	return s.signedIn(c, cl, p, token)
}

// handleAPIPortalLogout is POST .../portal/logout: 204, the cookie gone;
// {"everywhere": true} ends every session of the account. The body may be
// empty, its Content-Type must be JSON.
func (s *Server) handleAPIPortalLogout(c echo.Context) error {
	var in apiPortalLogout
	cl, p, err := s.portalOf(c, nil)
	if err != nil {
		return err
	}
	// JSON even when empty: no form of another site, nor of a sibling
	// host, can sign a patient out.
	if err := requireJSON(c); err != nil {
		return err
	}
	if c.Request().ContentLength != 0 {
		if err := bindPortal(c, &in); err != nil {
			return err
		}
	}
	if err := p.SignOut(c.Request().Context(), cl.ID, portalToken(c, cl.ID), in.Everywhere, c.RealIP()); err != nil {
		return err
	}
	s.setPortalCookie(c, cl.ID, "")
	return c.NoContent(http.StatusNoContent)
}

// handleAPIPortalAppointments is GET .../portal/appointments: the signed-in
// patient's requests at the clinic, newest first; 401 without a session.
func (s *Server) handleAPIPortalAppointments(c echo.Context) error {
	cl, p, err := s.portalOf(c, nil)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	sess, err := p.Ready(ctx, cl.ID, portalToken(c, cl.ID))
	if err != nil {
		return err
	}
	list, err := s.appointments(ctx, cl, sess)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"appointments": list})
}

// appointments lists the requests of the signed-in patient, with their
// status now (a status gone with its lifetime reads "expired").
func (s *Server) appointments(ctx context.Context, cl services.Clinic, sess services.Signed) ([]apiPortalAppointment, error) {
	out := []apiPortalAppointment{}
	for _, r := range sess.Account.Requests {
		a := apiPortalAppointment{ID: r.ID, Status: string(services.StateExpired), StatusURL: "/r/" + r.Token,
			APIURL: "/api/v1/requests/" + r.Token, SentAt: r.At}
		st, err := s.cfg.Booker.Statuses.GetStatus(ctx, cl.ID, r.ID)
		switch {
		case err == nil:
			a.Status = string(st.State)
			slot := st.SlotID
			if st.State == services.StateProposed && st.ProposedSlot != "" {
				slot = st.ProposedSlot
			}
			if pid, start, err := services.ParseSlotID(slot); err == nil {
				v := s.slotViews(cl, []services.Slot{{ID: slot, ProviderID: pid, Start: start}})[0]
				a.SlotID, a.Start, a.Provider = slot, start, v.ProviderName
			}
		case services.ErrorCode(err) != services.ENotFound:
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// portalRequest is what a request sent with clinic's session cookie
// carries: the session's token, and whether the session's account has the
// request's email, so the clinic sees a verified portal patient.
func (s *Server) portalRequest(c echo.Context, clinic string, req *services.Request) string {
	token := portalToken(c, clinic)
	if s.cfg.Portal == nil || token == "" {
		return ""
	}
	sess, err := s.cfg.Portal.Ready(c.Request().Context(), clinic, token)
	if err == nil && sess.EmailKey == s.cfg.Portal.Store.EmailKey(clinic, strings.TrimSpace(req.Email)) {
		req.PortalVerified = true
		return token
	}
	return ""
}

// portalAdd lists a request sent by a verified portal patient on their
// account; a failure costs the request nothing (its status link stays).
func (s *Server) portalAdd(c echo.Context, clinic, token string, req services.Request, booked services.Booked) {
	if token == "" {
		return
	}
	if err := s.cfg.Portal.AddRequest(c.Request().Context(), clinic, token, req.Email, booked.Status.RequestID, booked.Token); err != nil {
		s.log.Warn("request not listed on the portal account", "clinic_id", clinic, "request_id", booked.Status.RequestID,
			"err", err.Error())
	}
}

// portalDetails are the details the clinic has of the patient signed in to
// clinic's portal, for their booking form (ok); signedIn says whether a
// patient is signed in at all, whether or not the clinic had details.
func (s *Server) portalDetails(c echo.Context, clinic string) (d services.PatientDetails, signedIn, ok bool) {
	cookie := portalToken(c, clinic)
	if s.cfg.Portal == nil || cookie == "" {
		return services.PatientDetails{}, false, false
	}
	return s.cfg.Portal.Details(c.Request().Context(), clinic, cookie)
}

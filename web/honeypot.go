package web

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/services"
)

// honeypotField is a field people never see (request.html hides it with
// CSS and from screen readers, and tells anyone who meets it to leave it
// empty) and API clients never send; form-filling bots fill it.
const honeypotField = "website"

// honeypot answers a request whose honeypot is filled as if it had been
// accepted, and queues and holds nothing. Bots learn from errors: a refusal
// would tell the bot's author which field gave it away, while a person never
// fills the field. The fields are still checked, so the answer to bad input
// is the same 422 as without the honeypot.
func (s *Server) honeypot(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		api := strings.HasPrefix(c.Request().URL.Path, "/api/")
		var req services.Request
		if api {
			body, trapped := peekAPIRequest(c)
			if !trapped {
				return next(c)
			}
			req = body
		} else {
			if c.FormValue(honeypotField) == "" {
				return next(c)
			}
			req = services.Request{SlotID: c.FormValue("slot_id"), Name: c.FormValue("name"), BirthDate: c.FormValue("birth_date"),
				Phone: c.FormValue("phone"), Email: c.FormValue("email"), Reason: c.FormValue("reason"),
				Consent: c.FormValue("consent") == "yes"}
		}
		cl, err := s.clinic(c)
		if err != nil {
			return err
		}
		trimmed := req
		trimmed.Name, trimmed.Email, trimmed.Phone = strings.TrimSpace(req.Name), strings.TrimSpace(req.Email), strings.TrimSpace(req.Phone)
		if err := trimmed.Validate(s.cfg.Now().UTC()); err != nil {
			if api {
				return err
			}
			return s.formRefused(c, cl, req, err) // the very page the handler gives

		}
		s.log.Info("honeypot filled: answered as accepted, nothing queued", "clinic_id", cl.ID, "route", c.Path())
		token := services.StatusToken(cl.ID, services.NewToken())
		if !api {
			return c.Redirect(http.StatusSeeOther, "/r/"+token)
		}
		_, secret, _ := strings.Cut(token, "_")
		return c.JSON(http.StatusCreated, map[string]string{
			"id": services.RequestIDFor(secret), "token": token, "status": string(services.StateReceived),
			"status_url": "/r/" + token, "api_url": "/api/v1/requests/" + token,
		})
	}
}

// peekAPIRequest reads the API body, puts it back for the handler, and
// reports whether its honeypot is filled. A body it cannot read or decode
// goes on to the handler, which answers it.
func peekAPIRequest(c echo.Context) (services.Request, bool) {
	r := c.Request()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), errReader{err}))
		return services.Request{}, false
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	var in apiRequest
	if json.NewDecoder(bytes.NewReader(b)).Decode(&in) != nil || in.Website == "" {
		return services.Request{}, false
	}
	return services.Request{SlotID: in.SlotID, Name: in.Name, BirthDate: in.BirthDate, Phone: in.Phone,
		Email: in.Email, Reason: in.Reason, Consent: in.Consent == nil || *in.Consent}, true
}

// errReader fails every read with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

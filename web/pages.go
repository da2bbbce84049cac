package web

import (
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/services"
)

// pages renders the embedded templates, each page parsed with the layout.
type pages struct{ t map[string]*template.Template }

func loadPages() (*pages, error) {
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{t: map[string]*template.Template{}}
	for _, n := range names {
		base := n[len("templates/"):]
		if base == "layout.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(template.FuncMap{"dict": dict}).
			ParseFS(assets, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", n, err)
		}
		p.t[base] = t
	}
	return p, nil
}

// Render implements echo.Renderer.
func (p *pages) Render(w io.Writer, name string, data any, _ echo.Context) error {
	t, ok := p.t[name]
	if !ok {
		return fmt.Errorf("no template %s", name)
	}
	return t.ExecuteTemplate(w, "layout.html", data)
}

// dict builds a map from key, value pairs, for passing several values to a sub-template.
func dict(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		if k, ok := kv[i].(string); ok {
			m[k] = kv[i+1]
		}
	}
	return m
}

// staleAfter is how long without a heartbeat before the site warns that the
// clinic is not syncing (the agent beats every 15s).
const staleAfter = 2 * time.Minute

// ago says how long before now t was, for "last synced".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%d days ago", int(d.Hours()/24))
	}
}

func (s *Server) pageData(c echo.Context, m map[string]any) map[string]any {
	if m == nil {
		m = map[string]any{}
	}
	if tok, ok := c.Get("csrf").(string); ok {
		m["CSRF"] = tok
	}
	return m
}

func (s *Server) handleHome(c echo.Context) error {
	var cs []apiClinic
	for _, cl := range s.cfg.Catalog.Clinics() {
		cs = append(cs, s.clinicView(cl))
	}
	return c.Render(http.StatusOK, "home.html", s.pageData(c, map[string]any{"Clinics": cs}))
}

type dayLink struct {
	Date, Label string
	Count       int
	Selected    bool
}

// handleClinic shows a clinic with a slot picker by date and provider.
func (s *Server) handleClinic(c echo.Context) error {
	cl, err := s.clinic(c)
	if err != nil {
		return err
	}
	loc := cl.Location()
	today := services.Today(s.cfg.Now(), loc)
	provider := c.QueryParam("provider")
	var days []dayLink
	selected := c.QueryParam("date")
	if selected != "" {
		if _, err := services.ParseDate("date", selected); err != nil {
			return err
		}
	}
	byDay := map[string][]apiSlot{}
	for _, v := range s.slotViews(cl, s.cfg.Catalog.Slots(cl.ID, today, today.AddDate(0, 0, 13))) {
		if provider != "" && v.ProviderID != provider {
			continue
		}
		d := services.Date(v.Start, loc)
		byDay[d] = append(byDay[d], v)
	}
	for d := today; d.Before(today.AddDate(0, 0, 14)); d = d.AddDate(0, 0, 1) {
		date := d.Format(time.DateOnly)
		if selected == "" && len(byDay[date]) > 0 {
			selected = date
		}
		days = append(days, dayLink{Date: date, Label: d.Format("Mon 2 Jan"), Count: len(byDay[date])})
	}
	for i := range days {
		days[i].Selected = days[i].Date == selected
	}
	view := s.clinicView(cl)
	seen := s.cfg.Catalog.LastSeen(cl.ID).At
	return c.Render(http.StatusOK, "clinic.html", s.pageData(c, map[string]any{
		"Clinic": view, "Days": days, "Date": selected, "Slots": byDay[selected], "Provider": provider,
		"Synced": ago(s.cfg.Now(), seen), "Stale": s.cfg.Now().Sub(seen) > staleAfter,
	}))
}

type formView struct {
	Clinic   apiClinic
	Slot     apiSlot
	Values   services.Request
	Errors   map[string]string
	Message  string
	NextFree []apiSlot
}

func (s *Server) renderForm(c echo.Context, code int, cl services.Clinic, v formView) error {
	v.Clinic = s.clinicView(cl)
	return c.Render(code, "request.html", s.pageData(c, map[string]any{"Form": v}))
}

func (s *Server) handleRequestForm(c echo.Context) error {
	cl, err := s.clinic(c)
	if err != nil {
		return err
	}
	sl, ok := s.cfg.Catalog.FreeSlot(cl.ID, c.QueryParam("slot"))
	if !ok {
		return s.renderForm(c, http.StatusConflict, cl, formView{Message: "That time is no longer free. Please pick another.",
			NextFree: s.nextFree(cl.ID)})
	}
	return s.renderForm(c, http.StatusOK, cl, formView{Slot: s.slotView(cl, sl)})
}

// handleRequestCreate takes the form: hold, publish, then 303 to the status page.
func (s *Server) handleRequestCreate(c echo.Context) error {
	cl, err := s.clinic(c)
	if err != nil {
		return err
	}
	req := services.Request{SlotID: c.FormValue("slot_id"), Name: c.FormValue("name"), BirthDate: c.FormValue("birth_date"),
		Phone: c.FormValue("phone"), Email: c.FormValue("email"), Reason: c.FormValue("reason"),
		Consent: c.FormValue("consent") == "yes"}
	booked, err := s.cfg.Booker.Request(c.Request().Context(), cl.ID, req)
	if err == nil {
		s.log.Info("request accepted", "clinic_id", cl.ID, "request_id", booked.Status.RequestID)
		s.audit(c, cl.ID, services.AuditRequestCreated, booked.Status.RequestID)
		return c.Redirect(http.StatusSeeOther, "/r/"+booked.Token)
	}
	v := formView{Values: req}
	if sl, ok := s.cfg.Catalog.FreeSlot(cl.ID, req.SlotID); ok {
		v.Slot = s.slotView(cl, sl)
	}
	switch services.ErrorCode(err) {
	case services.EInvalid, services.ELimit:
		var code int
		code, v.Message, v.Errors = classify(err)
		return s.renderForm(c, code, cl, v)
	case services.EConflict:
		v.Message, v.NextFree, v.Slot = "Sorry, that time was just taken. Please pick another.", s.nextFree(cl.ID), apiSlot{}
		return s.renderForm(c, http.StatusConflict, cl, v)
	}
	return err
}

var stateText = map[string]string{
	services.StateReceived:  "Received: we are passing your request to the clinic.",
	services.StateDelivered: "Delivered: the clinic has your request and will answer soon.",
	services.StateBooked:    "Booked: the clinic confirmed your appointment.",
	services.StateDeclined:  "Declined: the clinic could not take this appointment.",
	services.StateProposed:  "The clinic proposed another time.",
	services.StateExpired:   "Expired: the clinic did not receive your request in time.",
	services.StateCancelled: "Cancelled: you cancelled this request, and the clinic is told.",
}

package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/services"
)

// pages renders the embedded templates, each page parsed with the layout,
// once per language: the template function t translates into that language.
type pages struct {
	t map[string]map[string]*template.Template // lang -> page -> template
}

func loadPages() (*pages, error) {
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{t: map[string]map[string]*template.Template{}}
	for _, l := range languages {
		p.t[l] = map[string]*template.Template{}
		for _, n := range names {
			base := n[len("templates/"):]
			if base == "layout.html" {
				continue
			}
			t, err := template.New("layout.html").Funcs(templateFuncs(l)).ParseFS(assets, "templates/layout.html", n)
			if err != nil {
				return nil, fmt.Errorf("template %s: %w", n, err)
			}
			p.t[l][base] = t
		}
	}
	return p, nil
}

// templateFuncs are the functions templates call, translating into l.
func templateFuncs(l string) template.FuncMap {
	return template.FuncMap{
		"dict": dict,
		"lang": func() string { return l },
		"t":    func(key string, args ...any) string { return tr(l, key, args...) },
		"tn":   func(key string, n int, args ...any) string { return trn(l, key, n, args...) },
	}
}

// Render implements echo.Renderer, in the language of c.
func (p *pages) Render(w io.Writer, name string, data any, c echo.Context) error {
	t, ok := p.t[lang(c)][name]
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

func (s *Server) pageData(c echo.Context, m map[string]any) map[string]any {
	if m == nil {
		m = map[string]any{}
	}
	if tok, ok := c.Get("csrf").(string); ok {
		m["CSRF"] = tok
	}
	if _, ok := m["LangLinks"]; !ok {
		m["LangLinks"] = langLinks(lang(c), c.Request().URL)
	}
	return m
}

// pageSlot is a slot as the pages show it: in clinic time, in the page's language.
type pageSlot struct {
	ID, ProviderID, ProviderName string
	Start                        time.Time // the instant
	DateTime                     string    // RFC 3339 with the clinic's offset, for <time datetime>
	Zone                         string    // the clinic's IANA zone, for static/time.js
	Label                        string    // date and time: "lun. 2 mars 2026 09:00 EST"
	Time                         string    // time only: "09:00 EST"
}

// pageSlots renders slots of clinic cl for a page in the language of c.
func (s *Server) pageSlots(c echo.Context, cl services.Clinic, slots []services.Slot) []pageSlot {
	loc, l := cl.Location(), lang(c)
	out := make([]pageSlot, len(slots))
	for i, v := range s.slotViews(cl, slots) {
		local := v.Start.In(loc)
		out[i] = pageSlot{ID: v.ID, ProviderID: v.ProviderID, ProviderName: v.ProviderName, Start: v.Start,
			DateTime: local.Format(time.RFC3339), Zone: loc.String(), Label: formatSlot(l, v.Start, loc),
			Time: local.Format("15:04 MST")}
	}
	return out
}

func (s *Server) pageSlot(c echo.Context, cl services.Clinic, sl services.Slot) pageSlot {
	return s.pageSlots(c, cl, []services.Slot{sl})[0]
}

func (s *Server) nextFreePage(c echo.Context, cl services.Clinic) []pageSlot {
	return s.pageSlots(c, cl, s.cfg.Catalog.NextFree(cl.ID, 5))
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
	data, err := s.clinicData(c, cl)
	if err != nil {
		return err
	}
	return c.Render(http.StatusOK, "clinic.html", s.pageData(c, data))
}

// clinicData is what clinic.html and its live block render, in the language
// of c, for the date and provider c asks for.
func (s *Server) clinicData(c echo.Context, cl services.Clinic) (map[string]any, error) {
	loc := cl.Location()
	today := services.Today(s.cfg.Now(), loc)
	provider := c.QueryParam("provider")
	var days []dayLink
	l := lang(c)
	selected := c.QueryParam("date")
	if selected != "" {
		if _, err := services.ParseDate("date", selected); err != nil {
			return nil, err
		}
	}
	byDay := map[string][]pageSlot{}
	for _, v := range s.pageSlots(c, cl, s.cfg.Catalog.Slots(cl.ID, today, today.AddDate(0, 0, 13))) {
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
		days = append(days, dayLink{Date: date, Label: formatDay(l, d), Count: len(byDay[date])})
	}
	var day string
	for i := range days {
		if days[i].Selected = days[i].Date == selected; days[i].Selected {
			day = days[i].Label
		}
	}
	view := s.clinicView(cl)
	hb := s.cfg.Catalog.LastSeen(cl.ID)
	// A clinic whose agent beats but whose own system does not answer (a
	// PMS down) is not syncing either: its times may be out of date.
	unhealthy := !hb.At.IsZero() && !hb.Healthy
	return map[string]any{
		"Clinic": view, "Days": days, "Date": selected, "Day": day, "Slots": byDay[selected], "Provider": provider,
		"Synced": ago(l, s.cfg.Now(), hb.At), "Stale": s.cfg.Now().Sub(hb.At) > staleAfter || unhealthy,
		"Unhealthy": unhealthy,
	}, nil
}

// clinicLiveEvery is how often a live clinic page looks at its clinic's
// version: a slot taken or freed shows within it.
const clinicLiveEvery = 250 * time.Millisecond

// handleClinicEvents streams the clinic page's free times as server-sent
// events: the rendered block at once, then again whenever anything of the
// clinic changes (a slot taken or freed, a day republished, a heartbeat),
// and every liveRecheck so "last synced" stays true. It reads from memory
// only, so it serves while NATS is away.
func (s *Server) handleClinicEvents(c echo.Context) error {
	cl, err := s.clinic(c)
	if err != nil {
		return err
	}
	version := s.cfg.Catalog.Version(cl.ID) // before the first data: a change in between is sent
	data, err := s.clinicData(c, cl)
	if err != nil {
		return err // a bad date: 400 before the stream opens
	}
	release, ok := s.openStream(c)
	if !ok {
		return s.tooMany(c, streamRetry, byNetwork)
	}
	defer release()
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var last string
	send := func(data map[string]any) error {
		var html bytes.Buffer
		if err := s.pages.renderBlock(&html, c, "clinic.html", "clinic-live", s.pageData(c, data)); err != nil {
			return err
		}
		if html.String() == last {
			return s.writeEvent(rc, w, ": still here\n\n")
		}
		last = html.String()
		b, _ := json.Marshal(map[string]string{"html": last})
		return s.writeEvent(rc, w, fmt.Sprintf("event: slots\ndata: %s\n\n", b))
	}
	if err := send(data); err != nil {
		return nil
	}
	look := time.NewTicker(clinicLiveEvery)
	defer look.Stop()
	live(s, c.Request().Context(), look.C, func(forced bool) bool {
		v := s.cfg.Catalog.Version(cl.ID)
		if v == version && !forced {
			return true
		}
		version = v
		data, err := s.clinicData(c, cl)
		return err == nil && send(data) == nil
	})
	return nil
}

type formView struct {
	Clinic   apiClinic
	Slot     pageSlot
	Values   services.Request
	Errors   map[string]string // field -> message in the page's language
	Summary  []formError       // the same, in the order of the form
	Message  string
	NextFree []pageSlot
	// NeedCode shows the email code's field: the clinic's budget is spent
	// and a code was, or is to be, emailed (web/emailcode.go).
	NeedCode bool
	// FromPortal: the details are the clinic's, for a patient signed in to
	// its portal; SignedIn: signed in, the clinic has no details to give.
	FromPortal, SignedIn bool
}

// Newness is the new_patient radio's value: "new", "existing" or "".
func (v formView) Newness() string {
	switch {
	case v.Values.NewPatient == nil:
		return ""
	case *v.Values.NewPatient:
		return "new"
	}
	return "existing"
}

// formError is one line of the form's error summary; Field is the id of
// the input it links to, "" when there is none.
type formError struct{ Field, Text string }

// formFields are the request form's fields in page order.
var formFields = []string{"name", "birth_date", "phone", "email", "email_code", "reason", "consent", "slot_id"}

// setErrors translates the services field errors into language l, by
// their codes (keys).
func (v *formView) setErrors(l string, fields, keys map[string]string, args map[string][]any) {
	v.Errors = map[string]string{}
	for _, f := range formFields {
		if _, ok := fields[f]; !ok {
			continue
		}
		v.Errors[f] = fieldError(l, keys[f], args[f]...)
		e := formError{Field: f, Text: v.Errors[f]}
		if f == "slot_id" {
			e.Field = ""
		}
		v.Summary = append(v.Summary, e)
	}
}

func (s *Server) renderForm(c echo.Context, code int, cl services.Clinic, v formView) error {
	v.Clinic = s.clinicView(cl)
	m := map[string]any{"Form": v}
	if v.Slot.ID != "" && c.Request().Method == http.MethodPost {
		// The language switch of a form page that answered a POST opens the
		// form again for the same slot.
		u := *c.Request().URL
		u.RawQuery = url.Values{"slot": {v.Slot.ID}}.Encode()
		m["LangLinks"] = langLinks(lang(c), &u)
	}
	return c.Render(code, "request.html", s.pageData(c, m))
}

func (s *Server) handleRequestForm(c echo.Context) error {
	cl, err := s.clinic(c)
	if err != nil {
		return err
	}
	sl, ok := s.cfg.Catalog.FreeSlot(cl.ID, c.QueryParam("slot"))
	if !ok {
		return s.renderForm(c, http.StatusConflict, cl, formView{Message: t(c, "form.gone"),
			NextFree: s.nextFreePage(c, cl)})
	}
	// A link to a time the provider's rules no longer let anyone request
	// (a page left open): say why, and offer the times that can be.
	if err := s.cfg.Catalog.Policy(cl.ID, sl.ProviderID).Bookable(s.cfg.Now().UTC(), sl.Start); err != nil {
		return s.renderForm(c, http.StatusConflict, cl, formView{NextFree: s.nextFreePage(c, cl),
			Message: fieldError(lang(c), fieldKeys(err)["slot_id"], fieldArgs(err)["slot_id"]...)})
	}
	v := formView{Slot: s.pageSlot(c, cl, sl)}
	switch d, signedIn, ok := s.portalDetails(c, cl.ID); {
	case ok:
		known := false // the clinic has them on file: not a new patient
		v.Values = services.Request{Name: d.Name, BirthDate: d.BirthDate, Phone: d.Phone, Email: d.Email, NewPatient: &known}
		v.FromPortal = true
	case signedIn:
		v.SignedIn = true
	}
	return s.renderForm(c, http.StatusOK, cl, v)
}

// newPatient reads the form's new_patient radio: "new", "existing", or
// nothing said.
func newPatient(v string) *bool {
	switch v {
	case "new":
		b := true
		return &b
	case "existing":
		b := false
		return &b
	}
	return nil
}

// handleRequestCreate takes the form: hold, publish, then 303 to the status page.
func (s *Server) handleRequestCreate(c echo.Context) error {
	cl, err := s.clinic(c)
	if err != nil {
		return err
	}
	req := services.Request{SlotID: c.FormValue("slot_id"), Name: c.FormValue("name"), BirthDate: c.FormValue("birth_date"),
		Phone: c.FormValue("phone"), Email: c.FormValue("email"), Reason: c.FormValue("reason"),
		Consent: c.FormValue("consent") == "yes", NewPatient: newPatient(c.FormValue("new_patient"))}
	req.Lang = lang(c) // for the email notices
	err = s.checkEmailCode(c, cl.ID, req, strings.TrimSpace(c.FormValue("email_code")))
	var booked services.Booked
	var ptoken string
	if err == nil {
		ptoken = s.portalRequest(c, cl.ID, &req)
		booked, err = s.cfg.Booker.Request(c.Request().Context(), cl.ID, req)
	}
	if err == nil {
		s.portalAdd(c, cl.ID, ptoken, req, booked)
		s.log.Info("request accepted", "clinic_id", cl.ID, "request_id", booked.Status.RequestID)
		s.audit(c, cl.ID, services.AuditRequestCreated, booked.Status.RequestID)
		return c.Redirect(http.StatusSeeOther, "/r/"+booked.Token)
	}
	return s.formRefused(c, cl, req, err)
}

// formRefused shows the request form again after err: the fields at fault
// (422), the pending-requests cap (409), or the next free times when the
// slot was taken (409). Other errors go to the error page.
func (s *Server) formRefused(c echo.Context, cl services.Clinic, req services.Request, err error) error {
	v := formView{Values: req}
	if sl, ok := s.cfg.Catalog.FreeSlot(cl.ID, req.SlotID); ok {
		v.Slot = s.pageSlot(c, cl, sl)
	}
	v.NeedCode = needsCode(c)
	switch services.ErrorCode(err) {
	case services.ECodeNeeded:
		v.Message = t(c, "form.code_sent", strings.TrimSpace(req.Email))
		return s.renderForm(c, http.StatusConflict, cl, v)
	case services.EInvalid, services.ELimit:
		code, msg, fields := classify(err)
		if v.setErrors(lang(c), fields, fieldKeys(err), fieldArgs(err)); services.ErrorCode(err) == services.ELimit || len(v.Summary) == 0 {
			v.Message = errorText(lang(c), messageKey(err), msg, messageArgs(err)...)
		}
		return s.renderForm(c, code, cl, v)
	case services.EConflict:
		v.Message, v.NextFree, v.Slot = t(c, "form.taken"), s.nextFreePage(c, cl), pageSlot{}
		return s.renderForm(c, http.StatusConflict, cl, v)
	}
	return err
}

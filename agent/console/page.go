package console

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"html/template"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/agent/console/staff"
	"github.com/clinicrelay/clinicrelay/services"
)

// csrfField is the CSRF cookie's name and the forms' hidden field.
const csrfField = "_csrf"

// Page limits: how far ahead the Propose list looks, how many times it offers
// per request, and how many decided requests the page shows.
const (
	proposeDays    = 28
	proposeOptions = 12
	recentDecided  = 20
)

//go:embed templates/page.html templates/request.html templates/parts.html templates/signin.html templates/users.html templates/console.css templates/console.js
var assets embed.FS

var (
	pageTemplate    = template.Must(template.ParseFS(assets, "templates/page.html", "templates/parts.html"))
	requestTemplate = template.Must(template.ParseFS(assets, "templates/request.html", "templates/parts.html"))
	signinTemplate  = template.Must(template.ParseFS(assets, "templates/signin.html", "templates/parts.html"))
	usersTemplate   = template.Must(template.ParseFS(assets, "templates/users.html", "templates/parts.html"))
	stylesheet      = mustRead("templates/console.css")
	script          = mustRead("templates/console.js")
)

func mustRead(name string) []byte {
	b, err := assets.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

// pageData is what templates/page.html renders. It holds PHI.
type pageData struct {
	User   staff.User // who is signed in
	Clinic string
	Zone   string
	// Fingerprint is the seal key's, when the console was given it.
	Fingerprint string
	CSRF        string
	Error       string
	Fields      map[string]string
	// Refused is what the relay refuses of the clinic's updates.
	Refused   []string
	Pending   []pendingItem
	Decided   []Entry
	Providers []providerForm
	New       providerForm
	// Open is the one request GET /requests/:id shows, with its details.
	Open *pendingItem
	// Granted is a temporary portal password just given to Open's patient.
	Granted *granted

	loc   *time.Location
	names map[string]string
}

type pendingItem struct {
	Entry
	Options []slotOption // free slots of the same provider, to propose
}

type slotOption struct{ ID, Label string }

// providerView is a provider form with the page's CSRF token.
type providerView struct {
	CSRF string
	P    providerForm
}

// When formats t in the clinic's zone.
func (d *pageData) When(t time.Time) string { return t.In(d.loc).Format("Mon Jan 2 2006, 15:04") }

// SlotTime formats the start of slot id in the clinic's zone.
func (d *pageData) SlotTime(id string) string {
	if _, start, err := services.ParseSlotID(id); err == nil {
		return d.When(start)
	}
	return id
}

// ProviderName is the provider's name, or id when it is no longer listed.
func (d *pageData) ProviderName(id string) string { return cmp.Or(d.names[id], id) }

// decideView is a pending request with the page's CSRF token.
type decideView struct {
	CSRF string
	P    pendingItem
}

// Decide pairs a pending request with the CSRF token for the "decide" template.
func (d *pageData) Decide(p pendingItem) decideView { return decideView{CSRF: d.CSRF, P: p} }

// Form pairs a provider form with the CSRF token for the "provider" template.
func (d *pageData) Form(p providerForm) providerView { return providerView{CSRF: d.CSRF, P: p} }

// handlePage is GET /: the front-desk page.
func (c *Console) handlePage(ctx echo.Context) error { return c.render(ctx, nil, nil) }

// handleRequestPage is GET /requests/:id: one request with the patient's
// details, and its decision forms while it is pending; audited.
func (c *Console) handleRequestPage(ctx echo.Context) error { return c.requestPage(ctx, nil) }

// requestPage writes the page of the request of the route, with a
// temporary portal password just given, if any.
func (c *Console) requestPage(ctx echo.Context, g *granted) error {
	rctx := ctx.Request().Context()
	e, err := c.viewAs(rctx, user(ctx), ctx.Param("id"))
	if err != nil {
		return err
	}
	cl, loc := c.clinicInfo()
	token, _ := ctx.Get("csrf").(string)
	d := &pageData{User: user(ctx), Clinic: cl.Name, Zone: loc.String(), CSRF: token, loc: loc, Open: &pendingItem{Entry: e},
		Granted: g}
	list, err := c.Providers(rctx)
	if err != nil {
		return err
	}
	d.names = map[string]string{}
	for _, p := range list {
		d.names[p.ID] = p.Name
	}
	if e.Status == StatusPending {
		options, err := c.proposeOptions(rctx, loc)
		if err != nil {
			return err
		}
		d.Open.Options = options[e.ProviderID]
	}
	return writeHTML(ctx, requestTemplate, http.StatusOK, d)
}

// handleJS is GET /console.js: the live list.
func handleJS(ctx echo.Context) error {
	return ctx.Blob(http.StatusOK, "text/javascript; charset=utf-8", script)
}

// handleCSS is GET /console.css.
func handleCSS(ctx echo.Context) error {
	return ctx.Blob(http.StatusOK, "text/css; charset=utf-8", stylesheet)
}

// handlePageConfirm is POST /requests/:id/confirm from the page.
func (c *Console) handlePageConfirm(ctx echo.Context) error {
	_, err := c.confirmAs(ctx.Request().Context(), user(ctx), ctx.Param("id"))
	return c.afterForm(ctx, err, nil)
}

// handlePageDecline is POST /requests/:id/decline from the page.
func (c *Console) handlePageDecline(ctx echo.Context) error {
	_, err := c.declineAs(ctx.Request().Context(), user(ctx), ctx.Param("id"), ctx.FormValue("reason"))
	return c.afterForm(ctx, err, nil)
}

// handlePagePropose is POST /requests/:id/propose from the page.
func (c *Console) handlePagePropose(ctx echo.Context) error {
	_, err := c.proposeAs(ctx.Request().Context(), user(ctx), ctx.Param("id"), ctx.FormValue("slot_id"))
	return c.afterForm(ctx, err, nil)
}

// handlePageProviders is POST /providers: add or replace one provider.
func (c *Console) handlePageProviders(ctx echo.Context) error {
	form := providerFormFrom(ctx)
	p, err := form.schedule()
	if err == nil {
		err = c.putProvider(ctx.Request().Context(), p)
	}
	return c.afterForm(ctx, err, &form)
}

// afterForm redirects back to the page (303) after a successful form, or
// renders the page with the error, and the submitted provider form, if any.
func (c *Console) afterForm(ctx echo.Context, err error, draft *providerForm) error {
	if err != nil {
		return c.render(ctx, err, draft)
	}
	return ctx.Redirect(http.StatusSeeOther, "/")
}

// render writes the page: 200, or the status of flash with its message.
func (c *Console) render(ctx echo.Context, flash error, draft *providerForm) error {
	cl, loc := c.clinicInfo()
	token, _ := ctx.Get("csrf").(string)
	d := &pageData{User: user(ctx), Clinic: cl.Name, Zone: loc.String(), CSRF: token, loc: loc, New: newProviderForm(),
		Refused: c.refusals()}
	if c.sealKey != "" {
		d.Fingerprint = services.Fingerprint(c.sealKey)
	}
	status, body := c.flashed(flash)
	d.Error, d.Fields = body.Error, body.Fields
	if err := c.load(ctx.Request().Context(), d, draft); err != nil {
		return err
	}
	return writeHTML(ctx, pageTemplate, status, d)
}

// flashed is the status and the message of an error to show on a page
// (200 and none for nil).
func (c *Console) flashed(flash error) (int, errorBody) {
	if flash == nil {
		return http.StatusOK, errorBody{}
	}
	return c.errorResponse(flash)
}

// writeHTML renders t with d and writes it with status.
func writeHTML(ctx echo.Context, t *template.Template, status int, d any) error {
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return err
	}
	return ctx.HTMLBlob(status, buf.Bytes())
}

// load fills d with the requests, the providers and the times to propose.
func (c *Console) load(ctx context.Context, d *pageData, draft *providerForm) error {
	list, err := c.Providers(ctx)
	if err != nil {
		return err
	}
	d.names = map[string]string{}
	for _, p := range list {
		d.names[p.ID] = p.Name
		form := formOf(p)
		if draft != nil && draft.ID == p.ID {
			form, draft = *draft, nil
		}
		d.Providers = append(d.Providers, form)
	}
	if draft != nil {
		d.New = *draft
		d.New.New = true
	}
	entries, err := c.listAs(ctx, d.User, StatusAll)
	if err != nil {
		return err
	}
	options, err := c.proposeOptions(ctx, d.loc)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Status == StatusPending {
			d.Pending = append(d.Pending, pendingItem{Entry: e, Options: options[e.ProviderID]})
		} else {
			d.Decided = append(d.Decided, e)
		}
	}
	slices.SortFunc(d.Decided, func(a, b Entry) int { return b.DecidedAt.Compare(a.DecidedAt) })
	d.Decided = d.Decided[:min(len(d.Decided), recentDecided)]
	return nil
}

// proposeOptions lists, per provider, the next free slots to propose.
func (c *Console) proposeOptions(ctx context.Context, loc *time.Location) (map[string][]slotOption, error) {
	now := c.now().In(loc)
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, loc)
	_, free, err := c.FreeSlots(ctx, today, today.AddDate(0, 0, proposeDays), loc)
	if err != nil {
		return nil, err
	}
	out := map[string][]slotOption{}
	for _, s := range free {
		if len(out[s.ProviderID]) < proposeOptions {
			label := s.Start.In(loc).Format("Mon Jan 2, 15:04")
			out[s.ProviderID] = append(out[s.ProviderID], slotOption{ID: s.ID, Label: label})
		}
	}
	return out, nil
}

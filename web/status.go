package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// liveRecheck is how often a live status page re-reads its status even
// without news from the feed (it also keeps the connection alive).
const liveRecheck = 15 * time.Second

// maxStream is the longest one live status stream lasts.
const maxStream = 30 * time.Minute

// statusHub fans STATUS changes out to the live status pages open in this
// process, by status key.
type statusHub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

func (h *statusHub) subscribe(key string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[string]map[chan struct{}]struct{}{}
	}
	if h.subs[key] == nil {
		h.subs[key] = map[chan struct{}]struct{}{}
	}
	h.subs[key][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[key], ch)
		if len(h.subs[key]) == 0 {
			delete(h.subs, key)
		}
		h.mu.Unlock()
	}
}

func (h *statusHub) publish(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[key] {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// StatusChanged tells the live status pages showing the status under key
// (a STATUS key, subjects.StatusKey) that it changed. The relay calls it from
// its STATUS feed.
func (s *Server) StatusChanged(key string) { s.hub.publish(key) }

// renderBlock renders one block of page name (a fragment, without the layout)
// in the language of c.
func (p *pages) renderBlock(w *bytes.Buffer, c echo.Context, name, block string, data any) error {
	t, ok := p.t[lang(c)][name]
	if !ok {
		return fmt.Errorf("no template %s", name)
	}
	return t.ExecuteTemplate(w, block, data)
}

// statusData is what status.html and its live fragment render, in the
// language of c.
func (s *Server) statusData(c echo.Context, token string, st services.Status) map[string]any {
	steps := []services.State{services.StateReceived, services.StateDelivered}
	step := -1
	for i, v := range steps {
		if v == st.State {
			step = i
		}
	}
	cl, _ := s.cfg.Catalog.Clinic(st.ClinicID)
	m := map[string]any{
		"Clinic": st.ClinicID, "ClinicName": cl.Name, "State": st.State, "Reason": reasonText(lang(c), st.Reason),
		"Text": stateIn(lang(c), st.State), "Final": st.Final(), "Closed": st.Closed(), "Step": step, "Token": token,
		"Booked": st.State == services.StateBooked,
	}
	if p, start, err := services.ParseSlotID(st.SlotID); err == nil {
		m["Slot"] = s.pageSlot(c, cl, services.Slot{ID: st.SlotID, ProviderID: p, Start: start})
		// Past the provider's cancellation cutoff: no links that would
		// only be refused, and who to call instead.
		m["Locked"] = s.cfg.Catalog.Policy(st.ClinicID, p).Changeable(st, s.cfg.Now().UTC()) != nil
	}
	if p, start, err := services.ParseSlotID(st.ProposedSlot); err == nil && st.State == services.StateProposed {
		m["ProposedSlot"] = s.pageSlot(c, cl, services.Slot{ID: st.ProposedSlot, ProviderID: p, Start: start})
	}
	if st.State == services.StateDeclined && !cl.Revoked {
		m["NextFree"] = s.nextFreePage(c, cl) // the clinic's other times, to request one
	}
	return s.pageData(c, m)
}

func (s *Server) handleStatus(c echo.Context) error {
	token := c.Param("token")
	st, err := s.cfg.Booker.Status(c.Request().Context(), token)
	if err != nil {
		return err
	}
	s.audit(c, st.ClinicID, services.AuditStatusViewed, st.RequestID)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Render(http.StatusOK, "status.html", s.statusData(c, token, st))
}

// handleStatusEvents streams the status as server-sent events: the current
// one at once, then each change, as the rendered status panel. It ends when
// the request can no longer change, or when NATS is lost (the page then
// reconnects, and gets "paused" until NATS is back).
func (s *Server) handleStatusEvents(c echo.Context) error {
	token := c.Param("token")
	clinic, id, err := services.ParseStatusToken(token)
	if err != nil {
		return err
	}
	// Each stream holds a goroutine and a connection: capped per IP and in
	// all (web/ratelimit.go).
	release, ok := s.openStream(c)
	if !ok {
		return s.tooMany(c, streamRetry, byNetwork)
	}
	defer release()
	ctx := c.Request().Context()
	// Subscribe before the first read, so no change falls in between.
	wake, cancel := s.hub.subscribe(subjects.StatusKey(clinic, id))
	defer cancel()
	st, err := s.cfg.Booker.Status(ctx, token)
	if err != nil {
		return err
	}
	s.audit(c, st.ClinicID, services.AuditStatusViewed, st.RequestID)
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // no proxy buffering
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(st services.Status) error {
		var html bytes.Buffer
		if err := s.pages.renderBlock(&html, c, "status.html", "status-panel", s.statusData(c, token, st)); err != nil {
			return err
		}
		data, _ := json.Marshal(map[string]any{"state": st.State, "closed": st.Closed(), "html": html.String()})
		return s.writeEvent(rc, w, fmt.Sprintf("event: status\ndata: %s\n\n", data))
	}
	if err := send(st); err != nil || st.Closed() {
		return nil
	}
	live(s, ctx, wake, func(bool) bool {
		cur, err := s.cfg.Booker.Status(ctx, token)
		if err != nil {
			return false // NATS lost or the status gone: the page reconnects
		}
		if cur.Same(st) {
			return s.writeEvent(rc, w, ": still here\n\n") == nil
		}
		st = cur
		return send(st) == nil && !st.Closed()
	})
	return nil
}

// live runs a live stream: fn on each wake, and every liveRecheck (forced),
// until fn returns false, the client goes, the relay stops, or maxStream
// passes. A stream ends after maxStream so that the page reconnects (its
// first event is the current state), and a client that sits on a stream for
// days does not hold its slot forever.
func live[T any](s *Server, ctx context.Context, wake <-chan T, fn func(forced bool) bool) {
	tick := time.NewTicker(liveRecheck)
	defer tick.Stop()
	expire := time.NewTimer(maxStream)
	defer expire.Stop()
	stop := s.streams.Done()
	for {
		forced := false
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-expire.C:
			return
		case <-wake:
		case <-tick.C:
			forced = true
		}
		if !fn(forced) {
			return
		}
	}
}

// writeEvent writes one event with its own write deadline: the server's
// WriteTimeout would otherwise cut a long-lived stream.
func (s *Server) writeEvent(rc *http.ResponseController, w *echo.Response, ev string) error {
	_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := w.Write([]byte(ev)); err != nil {
		return err
	}
	w.Flush()
	return nil
}

// handleCancelForm asks the patient to confirm a cancellation.
func (s *Server) handleCancelForm(c echo.Context) error {
	token := c.Param("token")
	st, err := s.cfg.Booker.Status(c.Request().Context(), token)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Render(http.StatusOK, "cancel.html", s.statusData(c, token, st))
}

func (s *Server) handleCancel(c echo.Context) error {
	token := c.Param("token")
	st, err := s.cfg.Booker.Cancel(c.Request().Context(), token)
	if err != nil {
		return err
	}
	s.log.Info("request cancelled", "clinic_id", st.ClinicID, "request_id", st.RequestID)
	s.audit(c, st.ClinicID, services.AuditRequestCancelled, st.RequestID)
	return c.Redirect(http.StatusSeeOther, "/r/"+token)
}

// maxChoices is how many free times the reschedule page lists at once.
const maxChoices = 24

type dayChoices struct {
	Date, Label string
	Slots       []pageSlot
}

// handleRescheduleForm lists free times from ?from= (a clinic-local date,
// default today) for the patient to move the request to.
func (s *Server) handleRescheduleForm(c echo.Context) error {
	return s.renderReschedule(c, http.StatusOK, "")
}

func (s *Server) renderReschedule(c echo.Context, code int, message string) error {
	token := c.Param("token")
	st, err := s.cfg.Booker.Status(c.Request().Context(), token)
	if err != nil {
		return err
	}
	cl, ok := s.cfg.Catalog.Clinic(st.ClinicID)
	if !ok || cl.Revoked {
		return services.Keyed(services.ENotFound, "error.no_clinic", "no such clinic")
	}
	loc := cl.Location()
	from := services.Today(s.cfg.Now(), loc)
	if v := c.QueryParam("from"); v != "" {
		d, err := services.ParseDate("from", v)
		if err != nil {
			return err
		}
		if d.After(from) {
			from = d
		}
	}
	var days []dayChoices
	var next string
	for _, v := range s.pageSlots(c, cl, s.cfg.Catalog.Slots(cl.ID, from, from.AddDate(0, 0, maxSlotRange))) {
		if v.ID == st.SlotID || !v.Start.After(s.cfg.Now()) {
			continue
		}
		local := v.Start.In(loc)
		d := local.Format(time.DateOnly)
		if len(days) == 0 || days[len(days)-1].Date != d {
			if n := countChoices(days); n >= maxChoices {
				next = d
				break
			}
			day := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, loc)
			days = append(days, dayChoices{Date: d, Label: formatDay(lang(c), day)})
		}
		days[len(days)-1].Slots = append(days[len(days)-1].Slots, v)
	}
	data := s.statusData(c, token, st)
	data["Days"], data["Later"], data["Message"] = days, next, message
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Render(code, "reschedule.html", data)
}

func countChoices(days []dayChoices) int {
	n := 0
	for _, d := range days {
		n += len(d.Slots)
	}
	return n
}

func (s *Server) handleReschedule(c echo.Context) error {
	token := c.Param("token")
	st, err := s.cfg.Booker.Reschedule(c.Request().Context(), token, c.FormValue("slot_id"))
	if err == nil {
		s.log.Info("request moved", "clinic_id", st.ClinicID, "request_id", st.RequestID)
		s.audit(c, st.ClinicID, services.AuditRequestMoved, st.RequestID)
		return c.Redirect(http.StatusSeeOther, "/r/"+token)
	}
	switch services.ErrorCode(err) {
	case services.EConflict:
		if cur, serr := s.cfg.Booker.Status(c.Request().Context(), token); serr == nil && cur.Closed() {
			return s.renderReschedule(c, http.StatusConflict, t(c, "reschedule.closed"))
		}
		return s.renderReschedule(c, http.StatusConflict, t(c, "form.taken"))
	case services.EInvalid:
		msg := t(c, "field.slot_id")
		if k := fieldKeys(err)["slot_id"]; k != "" { // the booking rules say why
			msg = fieldError(lang(c), k, fieldArgs(err)["slot_id"]...)
		} else if k := messageKey(err); k != "" {
			msg = errorText(lang(c), k, "", messageArgs(err)...)
		}
		if cur, serr := s.cfg.Booker.Status(c.Request().Context(), token); serr == nil && cur.SlotID == c.FormValue("slot_id") {
			msg = t(c, "reschedule.same")
		}
		return s.renderReschedule(c, http.StatusUnprocessableEntity, msg)
	}
	return err
}

// handleAPIRequestCancel is POST /api/v1/requests/:token/cancel.
func (s *Server) handleAPIRequestCancel(c echo.Context) error {
	// JSON only, as the API says: a cross-site form cannot send it.
	if err := requireJSON(c); err != nil {
		return err
	}
	st, err := s.cfg.Booker.Cancel(c.Request().Context(), c.Param("token"))
	if err != nil {
		return err
	}
	s.audit(c, st.ClinicID, services.AuditRequestCancelled, st.RequestID)
	return c.JSON(http.StatusOK, s.statusView(st))
}

// handleAPIRequestReschedule is POST /api/v1/requests/:token/reschedule with
// {"slot_id": "..."}.
func (s *Server) handleAPIRequestReschedule(c echo.Context) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	var in struct {
		SlotID string `json:"slot_id"`
	}
	if err := decodeJSON(c.Request().Body, &in); err != nil {
		return err
	}
	st, err := s.cfg.Booker.Reschedule(c.Request().Context(), c.Param("token"), in.SlotID)
	if err != nil {
		return err
	}
	s.audit(c, st.ClinicID, services.AuditRequestMoved, st.RequestID)
	return c.JSON(http.StatusOK, s.statusView(st))
}

// systemReasons are the reasons the clinic's agent writes itself (not its
// staff), which the catalog translates; a reason staff wrote is shown as
// written.
var systemReasons = map[string]string{
	services.ReasonSlotTaken:   "reason.slot_taken",
	services.ReasonMoveRefused: "reason.move_refused",
}

func reasonText(l, reason string) string {
	if key, ok := systemReasons[reason]; ok {
		return tr(l, key)
	}
	return reason
}

package fhir_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/connector/connectortest"
	"github.com/clinicrelay/clinicrelay/agent/fhir"
	"github.com/clinicrelay/clinicrelay/agent/fhir/fhirtest"
	"github.com/clinicrelay/clinicrelay/services"
)

var toronto, _ = time.LoadLocation("America/Toronto")

// pms is a FHIR server with two providers, each with six free half-hour
// slots tomorrow from 09:00 Toronto time, and a connector to it.
type pms struct {
	*fhirtest.Server
	conn  *fhir.Connector
	slots map[string]string // services slot ID → FHIR Slot id
	start time.Time         // tomorrow 09:00 Toronto
}

func newPMS(t *testing.T) *pms {
	t.Helper()
	s := fhirtest.Start(t)
	now := time.Now().In(toronto)
	p := &pms{Server: s, slots: map[string]string{},
		start: time.Date(now.Year(), now.Month(), now.Day()+1, 9, 0, 0, 0, toronto)}
	for _, name := range []string{"Dr. Alex Lee", "Dr. Sam Kim"} {
		sched := s.Schedule(name)
		for i, id := range s.Slots(sched, p.start, 6, 30*time.Minute) {
			p.slots[sched+"/"+fmt.Sprint(i)] = id
		}
	}
	p.conn = newConnector(t, s.URL)
	return p
}

func newConnector(t *testing.T, u string) *fhir.Connector {
	t.Helper()
	c, err := fhir.New(fhir.Config{URL: u, PollEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c.SetClinic(services.Clinic{ID: "maple", Name: "Maple", TimeZone: "America/Toronto"})
	return c
}

func (p *pms) free(t *testing.T) []services.Slot {
	t.Helper()
	today := services.Today(time.Now(), toronto)
	_, slots, err := p.conn.FreeSlots(t.Context(), today, today.AddDate(0, 0, 60), toronto)
	if err != nil {
		t.Fatalf("FreeSlots: %v", err)
	}
	return slots
}

func request(n int, slot string) services.Request {
	return services.Request{ID: services.RequestIDFor(fmt.Sprint("token-", n)), ClinicID: "maple", SlotID: slot,
		Name: "Ada Marie Lovelace", BirthDate: "1980-04-02", Phone: "+1 416 555 0100", Email: "ada@example.org",
		Reason: "sore knee", Consent: true, CreatedAt: time.Now().UTC()}
}

func TestConnector_FreeSlots(t *testing.T) {
	p := newPMS(t)
	// A schedule whose actor reference has no display: the name comes from
	// the Practitioner.
	jo := p.Create(fhirtest.Resource{"resourceType": "Practitioner",
		"name": []any{map[string]any{"given": []any{"Jo"}, "family": "Park"}}})
	p.Create(fhirtest.Resource{"resourceType": "Schedule", "active": true,
		"actor": []any{map[string]any{"reference": "Practitioner/" + jo.ID()}}})
	ps, _, err := p.conn.FreeSlots(t.Context(), time.Now(), time.Now(), toronto)
	if err != nil || len(ps) != 3 {
		t.Fatalf("providers = %+v, %v; want 3", ps, err)
	}
	names := []string{ps[0].Name, ps[1].Name, ps[2].Name}
	slices.Sort(names)
	if names[0] != "Dr. Alex Lee" || names[1] != "Dr. Sam Kim" || names[2] != "Jo Park" {
		t.Errorf("provider names = %v", names)
	}
	free := p.free(t)
	if len(free) != 12 {
		t.Fatalf("free slots = %d, want 12", len(free))
	}
	if !free[0].Start.Equal(p.start) || free[0].End.Sub(free[0].Start) != 30*time.Minute {
		t.Errorf("first slot = %+v, want %s for 30 min", free[0], p.start)
	}
}

func TestConnector_Store(t *testing.T) {
	p := newPMS(t)
	free := p.free(t)
	req := request(1, free[0].ID)
	if err := p.conn.Store(t.Context(), req); err != nil {
		t.Fatalf("Store = %v", err)
	}
	a := p.Appointment(req.ID)
	if a["status"] != "proposed" {
		t.Errorf("appointment status = %v, want proposed", a["status"])
	}
	refs, _ := a["slot"].([]any)
	slotRef, _ := refs[0].(map[string]any)["reference"].(string)
	if got := p.Read("Slot", slotRef[len("Slot/"):]); got["status"] != "busy-tentative" {
		t.Errorf("slot status = %v, want busy-tentative", got["status"])
	}
	if slices.ContainsFunc(p.free(t), func(s services.Slot) bool { return s.ID == req.SlotID }) {
		t.Error("the stored request's slot is still offered")
	}

	// A redelivery stores nothing more; the same person's next request
	// finds their Patient.
	if err := p.conn.Store(t.Context(), req); err != nil {
		t.Fatalf("Store again = %v", err)
	}
	if err := p.conn.Store(t.Context(), request(2, free[1].ID)); err != nil {
		t.Fatalf("Store a second request = %v", err)
	}
	p.Appointment(req.ID) // exactly one
	if pats := p.Search("Patient", url.Values{"birthdate": {"1980-04-02"}}); len(pats) != 1 {
		t.Errorf("%d Patients for one person, want 1", len(pats))
	}
}

// TestConnector_Store_NewPatient: what the patient said of having been to
// the clinic is on the Appointment, as the new-patient extension; nothing
// when they did not say.
func TestConnector_Store_NewPatient(t *testing.T) {
	p := newPMS(t)
	free := p.free(t)
	said, silent := request(1, free[0].ID), request(2, free[1].ID)
	yes := true
	said.NewPatient = &yes
	for _, r := range []services.Request{said, silent} {
		if err := p.conn.Store(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	newPatient := func(a map[string]any) (any, bool) {
		exts, _ := a["extension"].([]any)
		for _, e := range exts {
			if m, _ := e.(map[string]any); m["url"] == "https://clinicrelay.org/fhir/new-patient" {
				return m["valueBoolean"], true
			}
		}
		return nil, false
	}
	if v, ok := newPatient(p.Appointment(said.ID)); !ok || v != true {
		t.Errorf("the new patient's appointment: %v %v, want the extension true", v, ok)
	}
	if v, ok := newPatient(p.Appointment(silent.ID)); ok {
		t.Errorf("the appointment of a patient who said nothing: %v, want no extension", v)
	}
}

// TestConnector_Store_SlotTaken: the PMS gave the slot away, before the
// request arrived or at the same moment (two agents racing on If-Match):
// exactly one request gets it, the other is EConflict.
func TestConnector_Store_SlotTaken(t *testing.T) {
	p := newPMS(t)
	free := p.free(t)
	// Taken at the front desk after the connector's cache was filled.
	// (Medplum's ids are UUIDs, which are valid provider IDs as they are.)
	taken := p.Search("Slot", url.Values{"schedule": {"Schedule/" + free[2].ProviderID},
		"start": {free[2].Start.Format(time.RFC3339)}})
	if len(taken) != 1 {
		t.Fatalf("%d slots at %s on %s, want 1", len(taken), free[2].Start, free[2].ProviderID)
	}
	taken[0]["status"] = "busy"
	if code := p.Update(taken[0]); code != 200 {
		t.Fatalf("book at the front desk: %d", code)
	}
	err := p.conn.Store(t.Context(), request(3, free[2].ID))
	if services.ErrorCode(err) != services.EConflict {
		t.Fatalf("Store on a slot the PMS booked = %v, want EConflict", err)
	}

	other := newConnector(t, p.URL)
	if _, _, err := other.FreeSlots(t.Context(), time.Now(), time.Now(), toronto); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []*fhir.Connector{p.conn, other} {
		wg.Go(func() { errs[i] = c.Store(context.Background(), request(10+i, free[3].ID)) })
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) || services.ErrorCode(errors.Join(errs...)) != services.EConflict {
		t.Fatalf("two stores for one slot: %v, %v; want one nil and one EConflict", errs[0], errs[1])
	}
}

// TestConnector_Outcomes: what the front desk does in the PMS becomes the
// patient's status: booked, declined with its reason, another time.
func TestConnector_Outcomes(t *testing.T) {
	p := newPMS(t)
	free := p.free(t)
	reqs := []services.Request{request(1, free[0].ID), request(2, free[1].ID), request(3, free[2].ID)}
	for _, r := range reqs {
		if err := p.conn.Store(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	a := p.Appointment(reqs[0].ID)
	a["status"] = "booked"
	b := p.Appointment(reqs[1].ID)
	b["status"], b["cancelationReason"] = "cancelled", map[string]any{"text": "Dr. Lee is away"}
	c := p.Appointment(reqs[2].ID)
	moved := free[2].Start.Add(2 * time.Hour)
	c["start"], c["end"] = moved.UTC().Format(time.RFC3339), moved.Add(30*time.Minute).UTC().Format(time.RFC3339)
	for _, r := range []fhirtest.Resource{a, b, c} {
		if code := p.Update(r); code != 200 {
			t.Fatalf("update in the PMS: %d", code)
		}
	}
	p.poll(t)
	want := map[string]services.Status{
		reqs[0].ID: {State: services.StateBooked},
		reqs[1].ID: {State: services.StateDeclined, Reason: "Dr. Lee is away"},
		reqs[2].ID: {State: services.StateProposed, ProposedSlot: services.SlotID(free[2].ProviderID, moved)},
	}
	for id, w := range want {
		got, ok := connectortest.Pending(t, p.conn, id)
		if !ok || got.State != w.State || got.Reason != w.Reason || got.ProposedSlot != w.ProposedSlot || got.ClinicID != "maple" {
			t.Errorf("outcome of %s = %+v, %v; want %+v", id, got, ok, w)
		}
		if err := p.conn.MarkPublished(t.Context(), got); err != nil {
			t.Fatal(err)
		}
	}
	// Accepting the other time books it.
	ch := services.Change{ID: services.RequestIDFor("c1"), RequestID: reqs[2].ID, ClinicID: "maple",
		Action: services.ActionReschedule, SlotID: want[reqs[2].ID].ProposedSlot, At: time.Now()}
	if err := p.conn.Apply(t.Context(), ch); err != nil {
		t.Fatalf("Apply(accept) = %v", err)
	}
	if got, ok := connectortest.Pending(t, p.conn, reqs[2].ID); !ok || got.State != services.StateBooked || got.Change != ch.ID {
		t.Errorf("after accepting: %+v, %v; want booked naming the change", got, ok)
	}
	if st := p.Appointment(reqs[2].ID)["status"]; st != "booked" {
		t.Errorf("appointment status %v, want booked", st)
	}
}

// poll makes the connector read what changed in the PMS now.
func (p *pms) poll(t *testing.T) {
	t.Helper()
	if err := p.conn.Poll(t.Context()); err != nil {
		t.Fatalf("poll: %v", err)
	}
}

// TestConnector_Cancel: the patient cancels; the Appointment is cancelled
// and its Slot free again.
func TestConnector_Cancel(t *testing.T) {
	p := newPMS(t)
	free := p.free(t)
	req := request(1, free[0].ID)
	if err := p.conn.Store(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	ch := services.Change{ID: services.RequestIDFor("c"), RequestID: req.ID, ClinicID: "maple", Action: services.ActionCancel, At: time.Now()}
	if err := p.conn.Apply(t.Context(), ch); err != nil {
		t.Fatalf("Apply(cancel) = %v", err)
	}
	a := p.Appointment(req.ID)
	if a["status"] != "cancelled" {
		t.Errorf("appointment %v, want cancelled", a["status"])
	}
	refs, _ := a["slot"].([]any)
	slotRef, _ := refs[0].(map[string]any)["reference"].(string)
	if s := p.Read("Slot", slotRef[len("Slot/"):]); s["status"] != "free" {
		t.Errorf("slot %v, want free again", s["status"])
	}
	if got, ok := connectortest.Pending(t, p.conn, req.ID); !ok || got.State != services.StateCancelled {
		t.Errorf("outcome %+v, %v; want cancelled", got, ok)
	}
	unknown := ch
	unknown.RequestID = services.RequestIDFor("nobody")
	if err := p.conn.Apply(t.Context(), unknown); services.ErrorCode(err) != services.ENotFound {
		t.Errorf("Apply for an unknown request = %v, want ENotFound", err)
	}
}

// TestConnector_Unreachable: a PMS that does not answer is an error the
// agent retries (never a decline), and Health says so.
func TestConnector_Unreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := newConnector(t, "http://"+addr+"/fhir/R4")
	err = c.Store(t.Context(), request(1, "dr-lee_20300101T1400Z"))
	if err == nil || !errors.Is(err, fhir.ErrUnreachable) || services.ErrorCode(err) == services.EConflict {
		t.Fatalf("Store with the PMS down = %v, want ErrUnreachable", err)
	}
	if h := c.Health(); !errors.Is(h, fhir.ErrUnreachable) {
		t.Errorf("Health = %v, want ErrUnreachable", h)
	}
}

// TestConnector_Reschedule: the patient moves to another free time: the
// Appointment points at the new Slot, proposed again, the new Slot is
// busy-tentative and the old one free. A time the PMS gave away meanwhile
// leaves the Appointment where it was, with a note.
func TestConnector_Reschedule(t *testing.T) {
	p := newPMS(t)
	free := p.free(t)
	req := request(1, free[0].ID)
	if err := p.conn.Store(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	oldSlot := slotOf(p.Appointment(req.ID))
	move := services.Change{ID: services.RequestIDFor("m1"), RequestID: req.ID, ClinicID: "maple",
		Action: services.ActionReschedule, SlotID: free[4].ID, At: time.Now()}
	if err := p.conn.Apply(t.Context(), move); err != nil {
		t.Fatalf("Apply(move) = %v", err)
	}
	a := p.Appointment(req.ID)
	newSlot := slotOf(a)
	if a["status"] != "proposed" || newSlot == oldSlot || a["start"] != free[4].Start.UTC().Format(time.RFC3339) &&
		a["start"] != free[4].Start.UTC().Format("2006-01-02T15:04:05.000Z") {
		t.Errorf("appointment after the move: status %v, slot %s (was %s), start %v; want proposed on %s",
			a["status"], newSlot, oldSlot, a["start"], free[4].Start)
	}
	if s := p.Read("Slot", oldSlot); s["status"] != "free" {
		t.Errorf("old slot %v, want free", s["status"])
	}
	if s := p.Read("Slot", newSlot); s["status"] != "busy-tentative" {
		t.Errorf("new slot %v, want busy-tentative", s["status"])
	}
	if got, ok := connectortest.Pending(t, p.conn, req.ID); !ok || got.State != services.StateDelivered || got.SlotID != free[4].ID || got.Change != move.ID {
		t.Errorf("outcome %+v, %v; want delivered on the new slot naming the change", got, ok)
	}

	// The PMS gives the next slot away; a move there keeps the request's time.
	taken := p.Search("Slot", url.Values{"schedule": {"Schedule/" + free[6].ProviderID},
		"start": {free[6].Start.Format(time.RFC3339)}})
	taken[0]["status"] = "busy"
	if code := p.Update(taken[0]); code != 200 {
		t.Fatalf("book at the front desk: %d", code)
	}
	refused := move
	refused.ID, refused.SlotID, refused.At = services.RequestIDFor("m2"), free[6].ID, time.Now()
	if err := p.conn.Apply(t.Context(), refused); err != nil {
		t.Fatalf("Apply(move to a taken slot) = %v", err)
	}
	if got := slotOf(p.Appointment(req.ID)); got != newSlot {
		t.Errorf("appointment moved to %s, want it kept on %s", got, newSlot)
	}
	if got, _ := connectortest.Pending(t, p.conn, req.ID); got.SlotID != free[4].ID || got.Reason != fhir.ReasonMoveRefused || got.Change != refused.ID {
		t.Errorf("outcome %+v; want the kept slot with the note, naming the change", got)
	}
	// An older change arriving late is ignored.
	if err := p.conn.Apply(t.Context(), move); err != nil || slotOf(p.Appointment(req.ID)) != newSlot {
		t.Errorf("a late, older change: %v", err)
	}
}

func slotOf(a fhirtest.Resource) string {
	refs, _ := a["slot"].([]any)
	if len(refs) == 0 {
		return ""
	}
	ref, _ := refs[0].(map[string]any)["reference"].(string)
	return strings.TrimPrefix(ref, "Slot/")
}

// TestConnector_FreshAgent: an agent drains before its connector's first
// poll has ended, and its first poll may run before it knows its clinic. A
// request is stored all the same (not declined as taken), and an outcome
// decided while the agent was away is published for the clinic.
func TestConnector_FreshAgent(t *testing.T) {
	p := newPMS(t)
	free := p.free(t)
	booked := request(1, free[0].ID)
	if err := p.conn.Store(t.Context(), booked); err != nil {
		t.Fatal(err)
	}
	a := p.Appointment(booked.ID)
	a["status"] = "booked"
	if code := p.Update(a); code != 200 {
		t.Fatalf("book in the PMS: %d", code)
	}

	fresh, err := fhir.New(fhir.Config{URL: p.URL, PollEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Poll(t.Context()); err != nil { // before SetClinic
		t.Fatal(err)
	}
	fresh.SetClinic(services.Clinic{ID: "maple", TimeZone: "America/Toronto"})
	if got, ok := connectortest.Pending(t, fresh, booked.ID); !ok || got.ClinicID != "maple" || got.State != services.StateBooked {
		t.Errorf("outcome decided while away: %+v, %v; want booked for maple", got, ok)
	}

	cold, _ := fhir.New(fhir.Config{URL: p.URL, PollEvery: time.Hour})
	cold.SetClinic(services.Clinic{ID: "maple", TimeZone: "America/Toronto"})
	if err := cold.Store(t.Context(), request(2, free[1].ID)); err != nil {
		t.Fatalf("Store before any poll = %v, want it stored", err)
	}
	p.Appointment(request(2, free[1].ID).ID)
}

// TestConnector_ClinicChanges: the clinic declines in the PMS (the slot the
// connector claimed is free again and offered) and retires a schedule (its
// provider and slots leave the site).
func TestConnector_ClinicChanges(t *testing.T) {
	p := newPMS(t)
	free := p.free(t)
	req := request(1, free[0].ID)
	if err := p.conn.Store(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	a := p.Appointment(req.ID)
	a["status"], a["cancelationReason"] = "cancelled", map[string]any{"text": "Dr. Lee is away"}
	if code := p.Update(a); code != 200 {
		t.Fatalf("decline in the PMS: %d", code)
	}
	if err := p.conn.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := p.Read("Slot", slotOf(a)); s["status"] != "free" {
		t.Errorf("the declined request's slot is %v, want free again", s["status"])
	}
	if err := p.conn.Poll(t.Context()); err != nil { // the freed slot is seen changed
		t.Fatal(err)
	}
	if !slices.ContainsFunc(p.free(t), func(s services.Slot) bool { return s.ID == req.SlotID }) {
		t.Error("the freed slot is not offered again")
	}

	sched := p.Read("Schedule", free[0].ProviderID)
	sched["active"] = false
	if code := p.Update(sched); code != 200 {
		t.Fatalf("retire the schedule: %d", code)
	}
	if err := p.conn.Poll(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, s := range p.free(t) {
		if s.ProviderID == free[0].ProviderID {
			t.Fatalf("a retired schedule's slot %s is still offered", s.ID)
		}
	}
}

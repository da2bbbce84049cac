// Package connectortest is the conformance suite of agent/connector: what
// the agent relies on from every connector, run against each of them.
package connectortest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/connector"
	"github.com/clinicrelay/clinicrelay/services"
)

// Fixture is a connector under test, for clinic "maple", with one free slot.
type Fixture struct {
	Conn connector.Connector
	Loc  *time.Location // the clinic's zone, given to the connector with SetClinic
	Slot services.Slot  // free, between now and the days FreeSlots is asked for
	// Book books a stored request in the clinic's system, as its staff would
	// (the console's Confirm, a PMS's Appointment set to booked).
	Book func(ctx context.Context, requestID string) error
}

// Days is how far ahead the suite asks for free slots.
const Days = 7

// Request is a valid request of clinic "maple" for slot; n makes its ID.
func Request(n int, slot string) services.Request {
	return services.Request{ID: services.RequestIDFor(fmt.Sprint("conformance-", n)), ClinicID: "maple", SlotID: slot,
		Name: "Ada Patient", BirthDate: "1980-04-02", Phone: "+1 416 555 0100", Email: "ada@example.org",
		Reason: "sore knee", Consent: true, CreatedAt: time.Now().UTC()}
}

// Run runs the suite, each case on a fixture of its own.
func Run(t *testing.T, fixture func(t *testing.T) Fixture) {
	t.Run("FreeSlotsOffersTheSlot", func(t *testing.T) {
		f := fixture(t)
		if !f.offers(t, f.Slot.ID) {
			t.Errorf("FreeSlots does not offer the fixture's free slot %s", f.Slot.ID)
		}
	})
	t.Run("StoreTakesTheSlotOnce", func(t *testing.T) {
		f := fixture(t)
		req := Request(1, f.Slot.ID)
		for i := range 2 { // a redelivery is stored once, with no error
			if err := f.Conn.Store(t.Context(), req); err != nil {
				t.Fatalf("Store #%d: %v", i+1, err)
			}
		}
		if f.offers(t, f.Slot.ID) {
			t.Errorf("the slot of a stored request is still offered")
		}
	})
	t.Run("ChangedAfterStore", func(t *testing.T) {
		f := fixture(t)
		drain(f.Conn.Changed())
		if err := f.Conn.Store(t.Context(), Request(2, f.Slot.ID)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-f.Conn.Changed():
		case <-time.After(5 * time.Second):
			t.Error("Changed gave nothing after a store took a slot")
		}
	})
	t.Run("ApplyToUnknownIsNotFound", func(t *testing.T) {
		f := fixture(t)
		ch := services.Change{ID: services.RequestIDFor("change-1"), RequestID: Request(9, f.Slot.ID).ID, ClinicID: "maple",
			Action: services.ActionCancel, At: time.Now().UTC()}
		if err := f.Conn.Apply(t.Context(), ch); services.ErrorCode(err) != services.ENotFound {
			t.Errorf("Apply to a request never stored = %v, want ENotFound (the agent retries it later)", err)
		}
	})
	t.Run("CancelFreesTheSlot", func(t *testing.T) {
		f := fixture(t)
		req := Request(4, f.Slot.ID)
		if err := f.Conn.Store(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		ch := services.Change{ID: services.RequestIDFor("change-4"), RequestID: req.ID, ClinicID: "maple",
			Action: services.ActionCancel, At: time.Now().UTC()}
		for i := range 2 { // a change delivered again is applied once, with no error
			if err := f.Conn.Apply(t.Context(), ch); err != nil {
				t.Fatalf("Apply #%d: %v", i+1, err)
			}
		}
		if !f.offers(t, f.Slot.ID) {
			t.Error("the slot of a cancelled request is not offered again")
		}
		if st, ok := f.pending(t, req.ID); !ok || st.State != services.StateCancelled || st.Change != ch.ID {
			t.Errorf("PendingOutcomes has %+v (%v), want cancelled, naming the change", st, ok)
		}
	})
	t.Run("KnowsTheEmailOfAStoredRequest", func(t *testing.T) {
		f := fixture(t)
		dir, ok := f.Conn.(connector.PatientDirectory)
		if !ok {
			t.Fatal("the connector is no connector.PatientDirectory: the patient portal cannot ask it")
		}
		if known, err := dir.KnowsEmail(t.Context(), "ada@example.org"); err != nil || known {
			t.Fatalf("before any request: %v %v, want no", known, err)
		}
		if err := f.Conn.Store(t.Context(), Request(5, f.Slot.ID)); err != nil {
			t.Fatal(err)
		}
		for email, want := range map[string]bool{" Ada@Example.org ": true, "ada@example.org": true,
			"bob@example.org": false, "": false, "ada+x@example.org": false, "a.da@example.org": false} {
			if known, err := dir.KnowsEmail(t.Context(), email); err != nil || known != want {
				t.Errorf("KnowsEmail(%q) = %v %v, want %v", email, known, err, want)
			}
		}
	})
	t.Run("GivesTheDetailsOfAStoredRequest", func(t *testing.T) {
		f := fixture(t)
		recs, ok := f.Conn.(connector.PatientRecords)
		if !ok {
			t.Fatal("the connector is no connector.PatientRecords: a signed-in patient's form cannot be filled")
		}
		if _, found, err := recs.PatientDetails(t.Context(), "ada@example.org"); err != nil || found {
			t.Fatalf("before any request: %v %v, want none", found, err)
		}
		req := Request(6, f.Slot.ID)
		if err := f.Conn.Store(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		if err := f.Book(t.Context(), req.ID); err != nil {
			t.Fatal(err)
		}
		d, found, err := recs.PatientDetails(t.Context(), " ADA@example.org ")
		if err != nil || !found || d.Name != req.Name || d.BirthDate != req.BirthDate || d.Phone == "" ||
			services.PortalEmail(d.Email) != "ada@example.org" {
			t.Fatalf("details: %+v %v %v, want those of %+v", d, found, err, req)
		}
		if _, found, _ := recs.PatientDetails(t.Context(), "ada+x@example.org"); found {
			t.Error("another address (a +tag) gives the patient's details")
		}
	})
	t.Run("BookedOutcomeUntilPublished", func(t *testing.T) {
		f := fixture(t)
		req := Request(3, f.Slot.ID)
		if err := f.Conn.Store(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		if err := f.Book(t.Context(), req.ID); err != nil {
			t.Fatal(err)
		}
		st, ok := f.pending(t, req.ID)
		if !ok || st.State != services.StateBooked || st.ClinicID != "maple" || st.SlotID != f.Slot.ID {
			t.Fatalf("PendingOutcomes has %+v (%v), want booked on %s", st, ok, f.Slot.ID)
		}
		if err := f.Conn.MarkPublished(t.Context(), st); err != nil {
			t.Fatal(err)
		}
		if st, ok := f.pending(t, req.ID); ok {
			t.Errorf("still pending after MarkPublished: %+v", st)
		}
	})
}

func (f Fixture) offers(t *testing.T, slot string) bool {
	t.Helper()
	today := services.Today(time.Now(), f.Loc)
	_, slots, err := f.Conn.FreeSlots(t.Context(), today, today.AddDate(0, 0, Days), f.Loc)
	if err != nil {
		t.Fatalf("FreeSlots: %v", err)
	}
	return slices.ContainsFunc(slots, func(s services.Slot) bool { return s.ID == slot })
}

func (f Fixture) pending(t *testing.T, id string) (services.Status, bool) {
	t.Helper()
	return Pending(t, f.Conn, id)
}

// Pending is the outcome of request id that c has not published yet, if any.
func Pending(t *testing.T, c connector.RequestSink, id string) (services.Status, bool) {
	t.Helper()
	outs, err := c.PendingOutcomes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(outs, func(s services.Status) bool { return s.RequestID == id })
	if i < 0 {
		return services.Status{}, false
	}
	return outs[i], true
}

func drain(c <-chan struct{}) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

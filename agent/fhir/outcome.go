package fhir

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// extChangeAt keeps on an Appointment when the patient's last change applied
// to it was made: an older change arriving late is ignored.
const extChangeAt = "https://clinicrelay.org/fhir/change-at"

// followAppointments reads the Appointments updated since since and queues
// the outcomes of those the connector made.
func (c *Connector) followAppointments(ctx context.Context, since time.Time) error {
	q := url.Values{"_lastUpdated": {"gt" + fhirTime(since)}, "_count": {pageSize}}
	return c.c.search(ctx, "Appointment", q, func(raw json.RawMessage) error {
		var a appointment
		if json.Unmarshal(raw, &a) != nil {
			return nil
		}
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		st, ok := c.outcome(a, m)
		if !ok {
			return nil
		}
		// A delivered status is the agent's own write, except after a
		// patient's change, whose answer it is.
		if st.State != services.StateDelivered || st.Change != "" {
			c.queue(st)
		}
		if st.State == services.StateDeclined || st.State == services.StateCancelled {
			// The clinic closed it: the Slot this connector claimed is free
			// again (release leaves a slot the clinic reused alone).
			for _, s := range a.Slot {
				if id := s.id("Slot"); id != "" {
					if err := c.release(ctx, id, st.RequestID); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
}

// outcome is the patient's status an Appointment the connector made stands
// for:
//   - proposed, pending, waitlist: delivered (the front desk has not decided);
//   - booked, arrived, checked-in, fulfilled: booked;
//   - cancelled, noshow, entered-in-error: cancelled if the patient cancelled,
//     else declined with the cancelation reason's text;
//   - a start other than the requested slot's: another time proposed, the
//     Appointment's start on the same provider.
func (c *Connector) outcome(a appointment, raw map[string]any) (services.Status, bool) {
	id := a.value(SystemRequest)
	requested := extensionString(raw, extRequestedSlot)
	provider, start, err := services.ParseSlotID(requested)
	if subjects.ValidRequestID(id) != nil || err != nil {
		return services.Status{}, false
	}
	c.mu.Lock()
	clinic := c.clinic.ID
	c.mu.Unlock()
	st := services.Status{RequestID: id, ClinicID: clinic, SlotID: requested, Change: a.value(SystemChange)}
	if a.Meta != nil {
		st.UpdatedAt = a.Meta.LastUpdated.UTC()
	}
	moved := a.Start != nil && !a.Start.Truncate(time.Minute).Equal(start.Truncate(time.Minute))
	switch a.Status {
	case "booked", "arrived", "checked-in", "fulfilled":
		st.State = services.StateBooked
	case "cancelled", "noshow", "entered-in-error":
		st.State = services.StateDeclined
		if a.CancelationReason != nil {
			st.Reason = a.CancelationReason.Text
		}
		if st.Reason == ReasonPatientCancelled {
			st.State, st.Reason = services.StateCancelled, ""
		}
		moved = false
	default:
		st.State = services.StateDelivered
	}
	if moved {
		st.State, st.ProposedSlot = services.StateProposed, services.SlotID(provider, *a.Start)
	}
	if st.State == services.StateDelivered {
		st.Reason = extensionString(raw, extRefusedNote) // a new time the PMS did not have free
	}
	return st, true
}

// extRefusedNote keeps on an Appointment the note of a patient's new time
// the PMS did not have free.
const extRefusedNote = "https://clinicrelay.org/fhir/note"

func extensionString(raw map[string]any, u string) string {
	exts, _ := raw["extension"].([]any)
	for _, e := range exts {
		if m, ok := e.(map[string]any); ok && m["url"] == u {
			if s, ok := m["valueString"].(string); ok {
				return s
			}
			if s, ok := m["valueDateTime"].(string); ok {
				return s
			}
		}
	}
	return ""
}

func setExtension(raw map[string]any, u, kind, v string) {
	exts, _ := raw["extension"].([]any)
	out := exts[:0:0]
	for _, e := range exts {
		if m, ok := e.(map[string]any); !ok || m["url"] != u {
			out = append(out, e)
		}
	}
	if v != "" {
		out = append(out, map[string]any{"url": u, kind: v})
	}
	raw["extension"] = out
}

// Apply implements connector.Connector: a cancellation cancels the Appointment
// and frees its Slot; a new time claims the new Slot, moves the Appointment
// (proposed again) and frees the old one; accepting the time the clinic
// moved the Appointment to books it. The outcome names the change.
func (c *Connector) Apply(ctx context.Context, ch services.Change) error {
	err := c.apply(ctx, ch)
	c.track(err)
	return err
}

func (c *Connector) apply(ctx context.Context, ch services.Change) error {
	a, raw, err := c.findAppointment(ctx, ch.RequestID)
	if errors.Is(err, ErrNotFound) {
		return services.Errorf(services.ENotFound, "no such request")
	}
	if err != nil {
		return err
	}
	if at, perr := time.Parse(time.RFC3339, extensionString(raw, extChangeAt)); perr == nil && !ch.At.After(at) {
		// Applied already (its answer may not have been published: the
		// agent stopped, or the PUT's answer was lost), or older than the
		// last applied: the current outcome answers it.
		if st, ok := c.outcome(a, raw); ok {
			c.queue(st)
		}
		return nil
	}
	cur, _ := c.outcome(a, raw)
	old := ""
	if len(a.Slot) > 0 {
		old = a.Slot[0].id("Slot")
	}
	setExtension(raw, extRefusedNote, "valueString", "")
	switch services.ChangeEffect(cur.State, cur.SlotID, cur.ProposedSlot, ch) {
	case services.EffectNone:
		// Closed, or there already: nothing to change, but the change is
		// answered.
	case services.EffectCancel:
		raw["status"] = "cancelled"
		raw["cancelationReason"] = map[string]any{"text": ReasonPatientCancelled}
	case services.EffectAccept:
		raw["status"] = "booked" // the patient accepts the clinic's time
		setExtension(raw, extRequestedSlot, "valueString", ch.SlotID)
		old = ""
	case services.EffectMove:
		if err := c.move(ctx, raw, ch); err != nil {
			return err
		}
	}
	setExtension(raw, extChangeAt, "valueDateTime", ch.At.UTC().Format(time.RFC3339Nano))
	setIdentifier(raw, SystemChange, ch.ID)
	if err := c.c.update(ctx, "Appointment", a.ID, raw, version(raw, nil)); err != nil {
		return err // a 412: the clinic changed it meanwhile; the change comes again
	}
	if raw["status"] == "cancelled" || (old != "" && !refers(raw, old)) {
		if err := c.release(ctx, old, ch.RequestID); err != nil {
			c.log.Warn("free the old slot", "request_id", ch.RequestID, "err", err.Error())
		}
	}
	b, _ := json.Marshal(raw)
	var updated appointment
	_ = json.Unmarshal(b, &updated)
	if st, ok := c.outcome(updated, raw); ok {
		st.UpdatedAt = c.cfg.Now().UTC()
		c.queue(st)
	}
	c.log.Info("change applied to the Appointment", "request_id", ch.RequestID, "action", ch.Action)
	return nil
}

// move claims the new slot of a reschedule and points the Appointment at it;
// a slot the PMS no longer has free leaves the Appointment as it was, with a
// note for the patient.
func (c *Connector) move(ctx context.Context, raw map[string]any, ch services.Change) error {
	_, fs, err := c.findSlot(ctx, ch.SlotID, ch.RequestID)
	if err == nil {
		err = c.claim(ctx, fs.ID, ch.SlotID, ch.RequestID)
	}
	if services.ErrorCode(err) == services.EConflict {
		setExtension(raw, extRefusedNote, "valueString", ReasonMoveRefused)
		return nil
	}
	if err != nil {
		return err
	}
	raw["status"] = "proposed"
	raw["start"], raw["end"] = fhirTime(fs.Start), fhirTime(fs.End)
	raw["slot"] = []any{map[string]any{"reference": "Slot/" + fs.ID}}
	setExtension(raw, extRequestedSlot, "valueString", ch.SlotID)
	return nil
}

// refers reports whether the Appointment still points at Slot slotID.
func refers(raw map[string]any, slotID string) bool {
	refs, _ := raw["slot"].([]any)
	for _, r := range refs {
		if m, ok := r.(map[string]any); ok && m["reference"] == "Slot/"+slotID {
			return true
		}
	}
	return false
}

func setIdentifier(raw map[string]any, system, value string) {
	ids, _ := raw["identifier"].([]any)
	out := ids[:0:0]
	for _, v := range ids {
		if m, ok := v.(map[string]any); !ok || m["system"] != system {
			out = append(out, v)
		}
	}
	raw["identifier"] = append(out, map[string]any{"system": system, "value": value})
}

package fhir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

// extRequestedSlot is the extension on an Appointment that keeps the slot
// the patient asked for (a services slot ID): when the clinic moves the
// Appointment, the patient is offered the new time against it.
const extRequestedSlot = "https://clinicrelay.org/fhir/requested-slot"

// extNewPatient is the extension that says whether the patient said they
// have never been to the clinic (true) or have (false); absent when not said.
const extNewPatient = "https://clinicrelay.org/fhir/new-patient"

// ReasonPatientCancelled is the cancelation reason the connector writes when
// the patient cancels; any other cancellation is the clinic's decline.
const ReasonPatientCancelled = "cancelled by the patient (clinicrelay)"

// ReasonSlotTaken is the decline reason of a request whose slot the PMS no
// longer has free.
const ReasonSlotTaken = services.ReasonSlotTaken

// ReasonMoveRefused is the note on a request whose new time the PMS no
// longer had free: it keeps its time.
const ReasonMoveRefused = services.ReasonMoveRefused

// Store implements connector.Connector: the request becomes a proposed
// Appointment on its Slot, for the Patient found or made for it, and the
// Slot becomes busy-tentative. A request whose Appointment exists is stored
// already. A slot the PMS no longer has free is EConflict (the agent
// declines the request); a PMS that does not answer is an error the agent
// retries.
func (c *Connector) Store(ctx context.Context, req services.Request) error {
	err := c.store(ctx, req)
	c.track(err)
	return err
}

func (c *Connector) store(ctx context.Context, req services.Request) error {
	if _, _, err := c.findAppointment(ctx, req.ID); err == nil {
		return nil // stored already: a redelivery
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	p, fs, err := c.findSlot(ctx, req.SlotID, req.ID)
	if err != nil {
		return err
	}
	if err := c.claim(ctx, fs.ID, req.SlotID, req.ID); err != nil {
		return err
	}
	pid, err := c.patient(ctx, req)
	if err != nil {
		return err
	}
	start, end := fs.Start, fs.End
	a := appointment{ResourceType: "Appointment", Status: "proposed",
		Identifier:  []identifier{{System: SystemRequest, Value: req.ID}},
		Description: "Requested online (clinicrelay)", Comment: req.Reason,
		Start: &start, End: &end, Slot: []reference{{Reference: "Slot/" + fs.ID}},
		Created:     req.CreatedAt.UTC().Format(time.RFC3339),
		Participant: []participant{{Actor: reference{Reference: "Patient/" + pid}, Status: "accepted"}}}
	if p.actor.Reference != "" {
		a.Participant = append(a.Participant, participant{Actor: p.actor, Status: "needs-action"})
	}
	body := withExtension(a, req.SlotID)
	if req.NewPatient != nil {
		body["extension"] = append(body["extension"].([]any), map[string]any{"url": extNewPatient, "valueBoolean": *req.NewPatient})
	}
	if _, err := c.c.createIfNone(ctx, "Appointment", body, url.Values{"identifier": {SystemRequest + "|" + req.ID}}); err != nil {
		return err
	}
	c.mu.Lock()
	if _, ok := c.free[req.SlotID]; ok {
		delete(c.free, req.SlotID)
		c.changes = append(c.changes, req.SlotID)
	}
	c.mu.Unlock()
	c.signal()
	c.log.Info("request stored as a proposed Appointment", "request_id", req.ID, "slot_id", req.SlotID)
	return nil
}

// withExtension is a as a generic object with the requested-slot extension.
func withExtension(a appointment, requested string) map[string]any {
	b, _ := json.Marshal(a)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	m["extension"] = []any{map[string]any{"url": extRequestedSlot, "valueString": requested}}
	return m
}

// findSlot finds the FHIR Slot of a services slot ID: from the cache, or by
// a search on its schedule and start. EConflict when the PMS has no such
// slot free.
func (c *Connector) findSlot(ctx context.Context, slotID, requestID string) (provider, slot, error) {
	pid, start, err := services.ParseSlotID(slotID)
	if err != nil {
		return provider{}, slot{}, services.Errorf(services.EInvalid, "slot_id is not a slot")
	}
	c.mu.Lock()
	p, ok := c.providers[pid]
	fs, cached := c.free[slotID]
	loaded := c.loadedDay != ""
	c.mu.Unlock()
	if !ok {
		// Not loaded yet (the agent drains before the first poll ends), or
		// a schedule newer than the last poll: ask the PMS before saying no.
		if err := c.poll(ctx); err != nil {
			return provider{}, slot{}, err
		}
		c.mu.Lock()
		p, ok = c.providers[pid]
		fs, cached = c.free[slotID]
		loaded = c.loadedDay != ""
		c.mu.Unlock()
		if !ok && loaded {
			return provider{}, slot{}, services.Errorf(services.EConflict, "%s", ReasonSlotTaken)
		}
		if !ok {
			return provider{}, slot{}, fmt.Errorf("slot %s: the PMS's schedules are not loaded yet", slotID)
		}
	}
	if cached {
		return p, fs, nil
	}
	q := url.Values{"schedule": {"Schedule/" + p.schedule}, "start": {"ge" + fhirTime(start), "lt" + fhirTime(start.Add(time.Minute))}}
	var found []slot
	err = c.c.search(ctx, "Slot", q, func(raw json.RawMessage) error {
		var s slot
		if json.Unmarshal(raw, &s) == nil {
			found = append(found, s)
		}
		return nil
	})
	if err != nil {
		return provider{}, slot{}, err
	}
	for _, s := range found {
		// Free, or claimed by this very request before a store was cut short.
		if s.Status == "free" || s.Status == "busy-tentative" && slices.Contains(s.Identifier, identifier{System: SystemRequest, Value: requestID}) {
			return p, s, nil
		}
	}
	return provider{}, slot{}, services.Errorf(services.EConflict, "%s", ReasonSlotTaken)
}

// forget drops a slot from the cache: the PMS says it is not free.
func (c *Connector) forget(slotID string) {
	c.mu.Lock()
	if _, ok := c.free[slotID]; ok {
		delete(c.free, slotID)
		c.changes = append(c.changes, slotID)
	}
	c.mu.Unlock()
	c.signal()
}

// claim marks the FHIR Slot fhirID busy-tentative for request id, over its
// version: a 412 means someone took it meanwhile (EConflict). A slot this
// request claimed already (a store cut short, then redelivered) is claimed.
// A slot gone, moved to another time or schedule, or not free is EConflict,
// and leaves the cache.
func (c *Connector) claim(ctx context.Context, fhirID, slotID, requestID string) error {
	res, ver, err := c.c.read(ctx, "Slot", fhirID)
	if errors.Is(err, ErrNotFound) {
		c.forget(slotID)
		return services.Errorf(services.EConflict, "%s", ReasonSlotTaken)
	}
	if err != nil {
		return err
	}
	b, _ := json.Marshal(res)
	var s slot
	_ = json.Unmarshal(b, &s)
	c.mu.Lock()
	id, known := c.slotID(s)
	c.mu.Unlock()
	if !known || id != slotID {
		c.forget(slotID) // the clinic moved it since the cache was filled
		return services.Errorf(services.EConflict, "%s", ReasonSlotTaken)
	}
	if res["status"] == "busy-tentative" && claimedBy(res) == requestID {
		return nil
	}
	if res["status"] != "free" {
		c.forget(slotID)
		return services.Errorf(services.EConflict, "%s", ReasonSlotTaken)
	}
	res["status"] = "busy-tentative"
	setIdentifier(res, SystemRequest, requestID) // replaces an earlier request's
	if err := c.c.update(ctx, "Slot", fhirID, res, ver); errors.Is(err, ErrPrecondition) {
		c.forget(slotID)
		return services.Errorf(services.EConflict, "%s", ReasonSlotTaken)
	} else if err != nil {
		return err
	}
	return nil
}

// release makes a Slot this request claimed free again.
func (c *Connector) release(ctx context.Context, slotID, requestID string) error {
	res, ver, err := c.c.read(ctx, "Slot", slotID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if claimedBy(res) != requestID {
		return nil // the clinic has done something else with it
	}
	res["status"] = "free"
	ids, _ := res["identifier"].([]any)
	res["identifier"] = slices.DeleteFunc(ids, func(v any) bool {
		m, _ := v.(map[string]any)
		return m["system"] == SystemRequest
	})
	if err := c.c.update(ctx, "Slot", slotID, res, ver); err != nil {
		return err
	}
	// Offered again at once, not at the next poll of the PMS.
	var sl slot
	if b, err := json.Marshal(res); err == nil && json.Unmarshal(b, &sl) == nil {
		c.remember(sl)
	}
	return nil
}

// remember puts a free Slot back in the cache, as a poll would find it.
func (c *Connector) remember(sl slot) {
	c.mu.Lock()
	id, ok := c.slotID(sl)
	if ok = ok && sl.Start.After(c.cfg.Now()); ok {
		c.free[id] = sl
		c.changes = append(c.changes, id)
	}
	c.mu.Unlock()
	if ok {
		c.signal()
	}
}

// claimedBy is the request ID a Slot was claimed for, or "".
func claimedBy(res map[string]any) string {
	ids, _ := res["identifier"].([]any)
	for _, v := range ids {
		if m, ok := v.(map[string]any); ok && m["system"] == SystemRequest {
			s, _ := m["value"].(string)
			return s
		}
	}
	return ""
}

// patient finds the PMS's Patient for the request (same name, birth date and
// phone), or creates one, conditionally on a key derived from those: two
// deliveries of one request, or two requests of one person, make one Patient.
func (c *Connector) patient(ctx context.Context, req services.Request) (string, error) {
	given, family := splitName(req.Name)
	digits := onlyDigits(req.Phone)
	q := url.Values{"family": {family}, "birthdate": {req.BirthDate}, "_count": {pageSize}}
	var match []string
	err := c.c.search(ctx, "Patient", q, func(raw json.RawMessage) error {
		var p patient
		if json.Unmarshal(raw, &p) != nil {
			return nil
		}
		if p.BirthDate == req.BirthDate && hasName(p, given, family) && hasPhone(p, digits) {
			match = append(match, p.ID)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if len(match) > 0 {
		slices.Sort(match)
		return match[0], nil
	}
	sum := sha256.Sum256([]byte(strings.ToLower(strings.Join(strings.Fields(req.Name), " ")) + "|" + req.BirthDate + "|" + digits))
	key := hex.EncodeToString(sum[:16])
	p := patient{ResourceType: "Patient", Identifier: []identifier{{System: SystemPatientKey, Value: key}},
		Name: []humanName{{Use: "official", Text: req.Name, Family: family, Given: given}}, BirthDate: req.BirthDate,
		Telecom: []contactPoint{{System: "phone", Value: req.Phone}, {System: "email", Value: req.Email}}}
	return c.c.createIfNone(ctx, "Patient", p, url.Values{"identifier": {SystemPatientKey + "|" + key}})
}

func hasName(p patient, given []string, family string) bool {
	for _, n := range p.Name {
		if strings.EqualFold(n.Family, family) && strings.EqualFold(strings.Join(n.Given, " "), strings.Join(given, " ")) {
			return true
		}
	}
	return false
}

func hasPhone(p patient, digits string) bool {
	for _, t := range p.Telecom {
		if t.System == "phone" && onlyDigits(t.Value) == digits {
			return true
		}
	}
	return false
}

func onlyDigits(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

// findAppointment finds the Appointment made for request id, as a typed
// value and as the generic object to update; ErrNotFound if none.
func (c *Connector) findAppointment(ctx context.Context, id string) (appointment, map[string]any, error) {
	var a appointment
	var raw json.RawMessage
	err := c.c.search(ctx, "Appointment", url.Values{"identifier": {SystemRequest + "|" + id}}, func(r json.RawMessage) error {
		var x appointment
		if json.Unmarshal(r, &x) == nil && x.value(SystemRequest) == id {
			a, raw = x, r
		}
		return nil
	})
	if err != nil {
		return a, nil, err
	}
	if raw == nil {
		return a, nil, fmt.Errorf("appointment for request %s: %w", id, ErrNotFound)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return a, nil, err
	}
	return a, m, nil
}

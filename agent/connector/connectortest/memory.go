package connectortest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/connector"
	"github.com/clinicrelay/clinicrelay/services"
)

// Memory is a connector held in memory, for the agent's own tests: a fixed
// set of slots, the requests stored on them, and the staff's decisions
// (Book, Decline, Propose). It keeps the contract the suite checks, and
// applies a patient's changes as services.ChangeEffect says, like the
// console and the FHIR connector.
type Memory struct {
	mu        sync.Mutex
	clinic    services.Clinic
	providers []services.Provider
	slots     []services.Slot
	stored    map[string]*memRequest     // by request ID
	taken     map[string]string          // slot ID -> request ID
	outcomes  map[string]services.Status // decided, not yet published
	intakes   map[string]services.Intake // by intake ID
	changed   chan struct{}
	now       func() time.Time
}

// memRequest is a stored request and where it stands in the clinic.
type memRequest struct {
	req      services.Request
	state    services.State
	proposed string
}

var (
	_ connector.Connector        = (*Memory)(nil)
	_ connector.IntakeSink       = (*Memory)(nil)
	_ connector.PatientDirectory = (*Memory)(nil)
	_ connector.PatientRecords   = (*Memory)(nil)
)

// NewMemory is a Memory with these providers and free slots.
func NewMemory(providers []services.Provider, slots []services.Slot) *Memory {
	return &Memory{providers: providers, slots: slots, stored: map[string]*memRequest{},
		taken: map[string]string{}, outcomes: map[string]services.Status{}, intakes: map[string]services.Intake{}, changed: make(chan struct{}, 1),
		now: time.Now}
}

// Name is "memory".
func (m *Memory) Name() string { return "memory" }

// SetClinic records the clinic.
func (m *Memory) SetClinic(c services.Clinic) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clinic = c
}

// FreeSlots lists the slots not taken that start on the local dates
// [from, to) in loc.
func (m *Memory) FreeSlots(_ context.Context, from, to time.Time, loc *time.Location) ([]services.Provider, []services.Slot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	first, last := from.Format(time.DateOnly), to.Format(time.DateOnly)
	var free []services.Slot
	for _, s := range m.slots {
		if d := services.Date(s.Start, loc); d >= first && d < last && m.taken[s.ID] == "" {
			free = append(free, s)
		}
	}
	return slices.Clone(m.providers), free, nil
}

// Changed receives a value after a store or a decision.
func (m *Memory) Changed() <-chan struct{} { return m.changed }

func (m *Memory) signal() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// Store keeps req and takes its slot; a request stored already is a no-op,
// a slot taken by another request EConflict.
func (m *Memory) Store(_ context.Context, req services.Request) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.stored[req.ID]; ok {
		return nil
	}
	if by := m.taken[req.SlotID]; by != "" {
		return services.Errorf(services.EConflict, "slot %s is taken", req.SlotID)
	}
	m.stored[req.ID], m.taken[req.SlotID] = &memRequest{req: req, state: services.StateDelivered}, req.ID
	m.signal()
	return nil
}

// Stored lists the IDs of the requests stored, in no order.
func (m *Memory) Stored() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id := range m.stored {
		ids = append(ids, id)
	}
	return ids
}

// Book books a stored request, as the staff would.
func (m *Memory) Book(_ context.Context, requestID string) error {
	return m.decide(requestID, services.StateBooked, "", "")
}

// Decline declines a stored request with reason and frees its slot.
func (m *Memory) Decline(_ context.Context, requestID, reason string) error {
	return m.decide(requestID, services.StateDeclined, reason, "")
}

// Propose offers another free slot for a stored request, and holds it.
func (m *Memory) Propose(_ context.Context, requestID, slotID string) error {
	return m.decide(requestID, services.StateProposed, "", slotID)
}

func (m *Memory) decide(requestID string, state services.State, reason, proposed string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.stored[requestID]
	if !ok {
		return services.Errorf(services.ENotFound, "no request %s", requestID)
	}
	if r.state != services.StateDelivered {
		return services.Errorf(services.EConflict, "request is already %s", r.state)
	}
	if proposed != "" {
		if m.taken[proposed] != "" {
			return services.Errorf(services.EConflict, "slot %s is taken", proposed)
		}
		m.taken[proposed] = requestID
	}
	if state == services.StateDeclined {
		delete(m.taken, r.req.SlotID)
	}
	r.state, r.proposed = state, proposed
	m.queue(r, reason, "")
	return nil
}

// queue makes r's outcome pending, answering change (if any).
func (m *Memory) queue(r *memRequest, reason, change string) {
	m.outcomes[r.req.ID] = services.Status{RequestID: r.req.ID, ClinicID: r.req.ClinicID, SlotID: r.req.SlotID,
		State: r.state, Reason: reason, ProposedSlot: r.proposed, Change: change, UpdatedAt: m.now().UTC()}
	m.signal()
}

// Apply carries out a patient's change as services.ChangeEffect says: a
// cancellation frees the request's slots, an accepted proposal books it, a
// move goes to the new slot when free (and waits for a decision again),
// else stays where it was.
func (m *Memory) Apply(_ context.Context, ch services.Change) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.stored[ch.RequestID]
	if !ok {
		return services.Errorf(services.ENotFound, "no request %s", ch.RequestID)
	}
	reason := ""
	switch services.ChangeEffect(r.state, r.req.SlotID, r.proposed, ch) {
	case services.EffectCancel:
		m.release(r)
		r.state = services.StateCancelled
	case services.EffectAccept:
		delete(m.taken, r.req.SlotID)
		r.req.SlotID, r.proposed, r.state = ch.SlotID, "", services.StateBooked
	case services.EffectMove:
		if m.taken[ch.SlotID] != "" {
			reason = services.ReasonMoveRefused
			break
		}
		m.release(r)
		r.req.SlotID, r.proposed, r.state = ch.SlotID, "", services.StateDelivered
		m.taken[ch.SlotID] = r.req.ID
	}
	m.queue(r, reason, ch.ID)
	return nil
}

// StoreIntake keeps an intake form with its stored request.
func (m *Memory) StoreIntake(_ context.Context, in services.Intake) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.stored[in.RequestID]; !ok {
		return services.Errorf(services.ENotFound, "no request %s", in.RequestID)
	}
	m.intakes[in.ID] = in
	return nil
}

// Intakes lists the intake forms stored, in no order.
func (m *Memory) Intakes() []services.Intake {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []services.Intake
	for _, in := range m.intakes {
		out = append(out, in)
	}
	return out
}

// release frees the slots r holds: its own and the one proposed to it.
func (m *Memory) release(r *memRequest) {
	for _, s := range []string{r.req.SlotID, r.proposed} {
		if s != "" && m.taken[s] == r.req.ID {
			delete(m.taken, s)
		}
	}
}

// PendingOutcomes lists the decisions not yet published.
func (m *Memory) PendingOutcomes(context.Context) ([]services.Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []services.Status
	for _, st := range m.outcomes {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b services.Status) int { return a.UpdatedAt.Compare(b.UpdatedAt) })
	return out, nil
}

// MarkPublished forgets st once published, unless a later decision came.
func (m *Memory) MarkPublished(_ context.Context, st services.Status) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.outcomes[st.RequestID]; ok && cur.State == st.State && cur.UpdatedAt.Equal(st.UpdatedAt) {
		delete(m.outcomes, st.RequestID)
	}
	return nil
}

// PatientDetails are the details of the latest booked or portal-verified
// request with the email, none when such requests name two people
// (connector.PatientRecords).
func (m *Memory) PatientDetails(_ context.Context, email string) (services.PatientDetails, bool, error) {
	want := services.PortalEmail(email)
	m.mu.Lock()
	defer m.mu.Unlock()
	var latest *memRequest
	people := map[[2]string]bool{}
	for _, r := range m.stored {
		if want == "" || services.PortalEmail(r.req.Email) != want || r.state != services.StateBooked && !r.req.PortalVerified {
			continue
		}
		people[[2]string{r.req.Name, r.req.BirthDate}] = true
		if latest == nil || r.req.CreatedAt.After(latest.req.CreatedAt) {
			latest = r
		}
	}
	if latest == nil || len(people) > 1 {
		return services.PatientDetails{}, false, nil
	}
	q := latest.req
	return services.PatientDetails{Name: q.Name, BirthDate: q.BirthDate, Phone: q.Phone, Email: q.Email}, true, nil
}

// KnowsEmail reports whether a stored request has the email
// (connector.PatientDirectory).
func (m *Memory) KnowsEmail(_ context.Context, email string) (bool, error) {
	want := services.PortalEmail(email)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.stored {
		if want != "" && services.PortalEmail(r.req.Email) == want {
			return true, nil
		}
	}
	return false, nil
}

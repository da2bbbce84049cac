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
// (Book, Decline). It keeps the contract the suite checks.
type Memory struct {
	mu        sync.Mutex
	clinic    services.Clinic
	providers []services.Provider
	slots     []services.Slot
	stored    map[string]services.Request // by request ID
	taken     map[string]string           // slot ID -> request ID
	outcomes  map[string]services.Status  // decided, not yet published
	changed   chan struct{}
	now       func() time.Time
}

var _ connector.Connector = (*Memory)(nil)

// NewMemory is a Memory with these providers and free slots.
func NewMemory(providers []services.Provider, slots []services.Slot) *Memory {
	return &Memory{providers: providers, slots: slots, stored: map[string]services.Request{},
		taken: map[string]string{}, outcomes: map[string]services.Status{}, changed: make(chan struct{}, 1),
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
	m.stored[req.ID], m.taken[req.SlotID] = req, req.ID
	m.signal()
	return nil
}

// Book books a stored request, as the staff would.
func (m *Memory) Book(_ context.Context, requestID string) error {
	return m.decide(requestID, services.StateBooked, "")
}

// Decline declines a stored request with reason and frees its slot.
func (m *Memory) Decline(_ context.Context, requestID, reason string) error {
	return m.decide(requestID, services.StateDeclined, reason)
}

func (m *Memory) decide(requestID, state, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	req, ok := m.stored[requestID]
	if !ok {
		return services.Errorf(services.ENotFound, "no request %s", requestID)
	}
	if state != services.StateBooked {
		delete(m.taken, req.SlotID)
	}
	m.outcomes[requestID] = services.Status{RequestID: requestID, ClinicID: req.ClinicID, SlotID: req.SlotID,
		State: state, Reason: reason, UpdatedAt: m.now().UTC()}
	m.signal()
	return nil
}

// Apply carries out a patient's cancellation; a reschedule moves the request
// to its new slot when free, else it stays where it was.
func (m *Memory) Apply(_ context.Context, ch services.Change) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	req, ok := m.stored[ch.RequestID]
	if !ok {
		return services.Errorf(services.ENotFound, "no request %s", ch.RequestID)
	}
	st := services.Status{RequestID: req.ID, ClinicID: req.ClinicID, SlotID: req.SlotID, State: services.StateBooked,
		Change: ch.ID, UpdatedAt: m.now().UTC()}
	switch {
	case ch.Action == services.ActionCancel:
		delete(m.taken, req.SlotID)
		st.State = services.StateCancelled
	case m.taken[ch.SlotID] == "":
		delete(m.taken, req.SlotID)
		req.SlotID, st.SlotID = ch.SlotID, ch.SlotID
		m.stored[req.ID], m.taken[ch.SlotID] = req, req.ID
	default:
		st.Reason = services.ReasonMoveRefused
	}
	m.outcomes[req.ID] = st
	m.signal()
	return nil
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

package services

import (
	"context"
	"time"

	"github.com/clinicrelay/clinicrelay/internal/catalog"
)

// Notice kinds: what an email tells the patient.
const (
	NoticeReceived  = "received"  // the relay queued the request
	NoticeBooked    = "booked"    // with a calendar file; a reminder follows
	NoticeDeclined  = "declined"  // never with the clinic's reason
	NoticeProposed  = "proposed"  // the clinic proposed another time
	NoticeCancelled = "cancelled" // the request was cancelled
	NoticeReminder  = "reminder"  // 24 hours before a booked slot
)

// NoticeFor is the notice a request's new state calls for, or "" (a
// delivered or expired request sends none).
func NoticeFor(state State) string {
	switch state {
	case StateReceived:
		return NoticeReceived
	case StateBooked:
		return NoticeBooked
	case StateDeclined:
		return NoticeDeclined
	case StateProposed:
		return NoticeProposed
	case StateCancelled:
		return NoticeCancelled
	}
	return ""
}

// Contact is how the relay reaches a patient about one request. Email and
// Token are PHI and secret: the relay keeps a contact encrypted, and only
// for as long as notices about the request are due (ContactUntil).
type Contact struct {
	ClinicID  string `json:"clinic_id"`
	RequestID string `json:"request_id"`
	Email     string `json:"email"`
	Token     string `json:"token"` // the full status token, as in /r/<token>
	Lang      string `json:"lang"`  // "en" or "fr"
	// SlotID and SlotEnd are the slot requested and its end (a booked slot
	// leaves the catalog; its provider's slots have the same length).
	SlotID    string    `json:"slot_id"`
	SlotEnd   time.Time `json:"slot_end,omitzero"`
	CreatedAt time.Time `json:"created_at"`
	// Notified is, per notice kind, the slot of the last notice of that
	// kind queued for the request: an outcome the clinic publishes again
	// (after refusing the patient's new time) is not told twice.
	Notified map[string]string `json:"notified,omitempty"`
	// ToldLast lists the channels that have sent the request's last notice
	// (declined, cancelled): the contact is forgotten once every channel
	// that reaches the patient has.
	ToldLast []string `json:"told_last,omitempty"`
}

// ContactKeeper keeps contacts for the notifier.
type ContactKeeper interface {
	// KeepContact stores c until the time given (see ContactUntil).
	KeepContact(ctx context.Context, c Contact, until time.Time) error
	// Forget deletes a request's contact (none is not an error).
	Forget(ctx context.Context, clinic, requestID string) error
}

// ContactUntil is how long a contact kept at now is kept: a day past the
// appointment's start (for the notices about it), never more than
// StatusLifetime, which outlasts any slot within Horizon.
func ContactUntil(now, slotStart time.Time) time.Time {
	until := slotStart.Add(24 * time.Hour)
	if limit := now.Add(StatusLifetime); until.After(limit) {
		return limit
	}
	return until
}

// Notice is one message NOTIFY carries to the sender: IDs only, never PHI.
// The sender finds the address in CONTACTS and the rest in STATUS and the
// catalog when it sends.
type Notice struct {
	Kind      string    `json:"kind"`
	ClinicID  string    `json:"clinic_id"`
	RequestID string    `json:"request_id"`
	SlotID    string    `json:"slot_id,omitempty"` // the slot the notice is about
	At        time.Time `json:"at"`                // when the status changed
}

// ID is the notice's dedupe ID (Nats-Msg-Id) and the local part of its
// Message-ID: the same status change makes the same notice once.
func (n Notice) ID() string {
	id := n.RequestID + "." + n.Kind
	if n.SlotID != "" {
		id += "." + n.SlotID
	}
	return id
}

// StatusNotice is the notice st calls for, if any; its slot is the
// proposed one for NoticeProposed.
func StatusNotice(st Status) (Notice, bool) {
	kind := NoticeFor(st.State)
	if kind == "" {
		return Notice{}, false
	}
	n := Notice{Kind: kind, ClinicID: st.ClinicID, RequestID: st.RequestID, SlotID: st.SlotID, At: st.UpdatedAt}
	if kind == NoticeProposed && st.ProposedSlot != "" {
		n.SlotID = st.ProposedSlot
	}
	return n, true
}

// Due reports whether n still tells the truth about a request whose
// status is st now: the same kind of news about the same slot. A received
// notice stays due once the clinic has the request (delivered); a
// reminder, while the request is booked on its slot.
func (n Notice) Due(st Status) bool {
	switch {
	case n.Kind == NoticeReminder:
		return st.State == StateBooked && st.SlotID == n.SlotID
	case n.Kind == NoticeReceived && st.State == StateDelivered:
		st.State = StateReceived
	}
	cur, ok := StatusNotice(st)
	return ok && cur.Kind == n.Kind && cur.SlotID == n.SlotID
}

// Lang returns a supported language: "fr" or "en".
func Lang(s string) string { return catalog.Lang(s) }

// keepContact stores the patient's address for notices about req (token is
// the secret of its status link). A failure does not fail the request: the
// patient still has the status page; ContactFailed hears of it.
func (b *Booker) keepContact(ctx context.Context, req Request, token string, slot Slot) {
	if b.Contacts == nil {
		return
	}
	c := Contact{ClinicID: req.ClinicID, RequestID: req.ID, Email: req.Email, Token: StatusToken(req.ClinicID, token),
		Lang: Lang(req.Lang), SlotID: req.SlotID, SlotEnd: slot.End, CreatedAt: req.CreatedAt}
	if err := b.Contacts.KeepContact(ctx, c, ContactUntil(req.CreatedAt, slot.Start)); err != nil && b.ContactFailed != nil {
		b.ContactFailed(req.ClinicID, req.ID, err)
	}
}

package services

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clinicrelay/clinicrelay/subjects"
)

// Request is a patient's appointment request. Everything but the IDs is PHI:
// it travels only in the message body, never in a subject, key, header or log.
type Request struct {
	ID        string `json:"id"`
	ClinicID  string `json:"clinic_id"`
	SlotID    string `json:"slot_id"`
	Name      string `json:"name"`
	BirthDate string `json:"birth_date"`
	Phone     string `json:"phone"`
	Email     string `json:"email"`
	Reason    string `json:"reason"`
	Consent   bool   `json:"consent"`
	// NewPatient says whether the patient has never been to the clinic
	// (true) or has (false); nil when they did not say.
	NewPatient *bool     `json:"new_patient,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	// PortalVerified: sent by a patient signed in to the clinic's portal
	// whose account has this email (the clinic vouched for it when the
	// account was made); the web front sets it, never the patient.
	PortalVerified bool `json:"portal_verified,omitempty"`
	// Lang is the patient's language for email notices ("en", "fr"); the
	// relay keeps it with the contact, it does not go to the clinic.
	Lang string `json:"-"`
}

// Validate checks every patient field and names each one at fault.
func (r Request) Validate(now time.Time) error {
	f := FieldErrors{}
	if err := subjects.ValidSlotID(r.SlotID); err != nil {
		f.AddKey("slot_id", "field.slot_id", "slot_id is not a slot")
	}
	if k, m := nameProblem(r.Name); m != "" {
		f.AddKey("name", k, m)
	}
	if b, err := time.Parse(time.DateOnly, r.BirthDate); err != nil {
		f.AddKey("birth_date", "field.birth_date.format", "birth_date must be a date YYYY-MM-DD")
	} else if b.After(now) || b.Before(now.AddDate(-130, 0, 0)) {
		f.AddKey("birth_date", "field.birth_date.range", "birth_date must be in the past 130 years")
	}
	digits, bad := 0, false
	for _, c := range r.Phone {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case strings.ContainsRune("+-() .", c):
		default:
			bad = true
		}
	}
	if bad || digits < 7 || digits > 15 {
		f.AddKey("phone", "field.phone", "phone must have 7 to 15 digits")
	}
	if !ValidEmail(r.Email) {
		f.AddKey("email", "field.email", "email must be an address like name@example.org")
	}
	// The reason is a textarea: line breaks and tabs are its own; any other
	// control or bidi character, or text with nothing visible, is not.
	switch reason := strings.TrimSpace(r.Reason); {
	case !utf8.ValidString(reason) || strings.IndexFunc(reason, reasonHidden) >= 0:
		f.AddKey("reason", "field.reason.hidden", "reason must be plain text, without control or bidi characters")
	case reason != "" && strings.IndexFunc(reason, visible) < 0:
		f.AddKey("reason", "field.reason.invisible", "reason has no visible text: write one or leave it empty")
	case utf8.RuneCountInString(r.Reason) > 1000:
		f.AddKey("reason", "field.reason", "reason must be at most 1000 characters")
	}
	if !r.Consent {
		f.AddKey("consent", "field.consent", "consent is required to send your details to the clinic")
	}
	return f.Err()
}

// PortalEmail is an address as the patient portal compares it: in lower
// case, without the spaces around it, and otherwise as typed (unlike
// CanonicalEmail, a "+tag" or a dot makes another address).
func PortalEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// ValidEmail reports whether s is one bare address, like name@example.org.
func ValidEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && len(s) <= 254
}

// Trimmed is r with the spaces around its name, email and phone cut, as
// the Booker takes it.
func (r Request) Trimmed() Request {
	r.Name, r.Email, r.Phone = strings.TrimSpace(r.Name), strings.TrimSpace(r.Email), strings.TrimSpace(r.Phone)
	return r
}

// NewToken returns a status token: 128 random bits as 32 hex digits.
func NewToken() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b[:])
}

// RequestIDFor derives the request ID from the patient's status token. The ID
// travels to the clinic and into keys; the token stays with the patient and
// cannot be recovered from the ID, so knowing an ID opens no status page.
func RequestIDFor(token string) string {
	sum := sha256.Sum256([]byte("clinicrelay/request-id/" + token))
	return hex.EncodeToString(sum[:16])
}

// StatusToken is what the patient's status URL carries: "<clinic>_<token>".
// The clinic part routes the lookup; the token part is the secret.
func StatusToken(clinic, token string) string { return clinic + "_" + token }

// ParseStatusToken splits a status URL token into clinic and request ID.
func ParseStatusToken(s string) (clinic, requestID string, err error) {
	clinic, token, ok := strings.Cut(s, "_")
	if !ok || subjects.ValidClinicID(clinic) != nil || subjects.ValidRequestID(token) != nil {
		return "", "", Keyed(ENotFound, "error.no_request", "no such request")
	}
	return clinic, RequestIDFor(token), nil
}

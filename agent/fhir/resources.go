package fhir

import (
	"encoding/json"
	"strings"
	"time"
)

// The FHIR R4 resources the connector reads, with only the fields it uses.
// It writes changes to resources it did not create as generic objects read
// from the server (client.read), so nothing else in them is lost.

// Identifier systems the connector writes. A request's ID makes a resend
// find the Appointment it already created; the patient key (a digest of name,
// birth date and phone) makes a resend find the Patient it created.
const (
	SystemRequest    = "https://clinicrelay.org/fhir/request-id"
	SystemChange     = "https://clinicrelay.org/fhir/change-id"
	SystemPatientKey = "https://clinicrelay.org/fhir/patient-key"
)

type bundle struct {
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
	Link []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
}

type meta struct {
	VersionID   string    `json:"versionId,omitempty"`
	LastUpdated time.Time `json:"lastUpdated,omitzero"`
}

type reference struct {
	Reference string `json:"reference,omitempty"`
	Display   string `json:"display,omitempty"`
}

// id is the resource ID of a reference "Type/id" of type typ, or "".
func (r reference) id(typ string) string {
	id, ok := strings.CutPrefix(r.Reference, typ+"/")
	if !ok || strings.Contains(id, "/") {
		return ""
	}
	return id
}

type identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value,omitempty"`
}

type schedule struct {
	ID     string      `json:"id"`
	Meta   meta        `json:"meta"`
	Active *bool       `json:"active,omitempty"`
	Actor  []reference `json:"actor"`
}

// practitioner is the schedule's Practitioner actor, the provider patients
// see, or the first actor.
func (s schedule) practitioner() reference {
	for _, a := range s.Actor {
		if strings.HasPrefix(a.Reference, "Practitioner/") {
			return a
		}
	}
	if len(s.Actor) > 0 {
		return s.Actor[0]
	}
	return reference{}
}

type slot struct {
	ID         string       `json:"id"`
	Meta       meta         `json:"meta"`
	Identifier []identifier `json:"identifier,omitempty"`
	Schedule   reference    `json:"schedule"`
	Status     string       `json:"status"` // free, busy, busy-tentative, busy-unavailable, entered-in-error
	Start      time.Time    `json:"start"`
	End        time.Time    `json:"end"`
}

type participant struct {
	Actor  reference `json:"actor"`
	Status string    `json:"status,omitempty"`
}

type codeableConcept struct {
	Text string `json:"text,omitempty"`
}

type appointment struct {
	ResourceType      string           `json:"resourceType"`
	ID                string           `json:"id,omitempty"`
	Meta              *meta            `json:"meta,omitempty"`
	Identifier        []identifier     `json:"identifier,omitempty"`
	Status            string           `json:"status"`
	CancelationReason *codeableConcept `json:"cancelationReason,omitempty"`
	Description       string           `json:"description,omitempty"`
	Start             *time.Time       `json:"start,omitempty"`
	End               *time.Time       `json:"end,omitempty"`
	Slot              []reference      `json:"slot,omitempty"`
	Created           string           `json:"created,omitempty"`
	Comment           string           `json:"comment,omitempty"`
	Participant       []participant    `json:"participant"`
}

// value is the appointment's identifier of system, or "".
func (a appointment) value(system string) string {
	for _, i := range a.Identifier {
		if i.System == system {
			return i.Value
		}
	}
	return ""
}

type humanName struct {
	Use    string   `json:"use,omitempty"`
	Text   string   `json:"text,omitempty"`
	Family string   `json:"family,omitempty"`
	Given  []string `json:"given,omitempty"`
}

type contactPoint struct {
	System string `json:"system"`
	Value  string `json:"value"`
	Use    string `json:"use,omitempty"`
}

type patient struct {
	ResourceType string         `json:"resourceType"`
	ID           string         `json:"id,omitempty"`
	Identifier   []identifier   `json:"identifier,omitempty"`
	Name         []humanName    `json:"name,omitempty"`
	BirthDate    string         `json:"birthDate,omitempty"`
	Telecom      []contactPoint `json:"telecom,omitempty"`
}

// splitName splits a full name into FHIR's given names and family name: the
// last word is the family name.
func splitName(full string) (given []string, family string) {
	words := strings.Fields(full)
	if len(words) == 0 {
		return nil, ""
	}
	return words[:len(words)-1], words[len(words)-1]
}

package services

import (
	"github.com/clinicrelay/clinicrelay/subjects"
)

// MaxIntakeAnswers bounds the answers of one intake form.
const MaxIntakeAnswers = 100

// Intake is a patient's answers to a request's intake form. It travels to the
// clinic like the request, sealed on the clinic's queue (subjects.KindIntake),
// and leaves the relay once the clinic's system has it. Forms, their fields
// and the web front's side come with appointment types; the agent carries
// intakes already, so that kind is one table entry (agent/kinds.go) and one
// connector role (connector.IntakeSink).
type Intake struct {
	ID        string            `json:"id"` // unique per form sent: the queue's dedupe key
	RequestID string            `json:"request_id"`
	ClinicID  string            `json:"clinic_id"`
	Answers   map[string]string `json:"answers"` // by field name
}

// Validate checks an intake as the agent receives it.
func (in Intake) Validate() error {
	if subjects.ValidRequestID(in.ID) != nil || subjects.ValidRequestID(in.RequestID) != nil ||
		subjects.ValidClinicID(in.ClinicID) != nil {
		return Errorf(EInvalid, "intake: bad IDs")
	}
	if len(in.Answers) > MaxIntakeAnswers {
		return Errorf(EInvalid, "intake: more than %d answers", MaxIntakeAnswers)
	}
	return nil
}

// OpenIntake opens a sealed intake.
func (o *Opener) OpenIntake(s Sealed) (Intake, error) {
	var in Intake
	return in, o.open(s, &in)
}

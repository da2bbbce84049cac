package notify

import (
	"context"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

// Channel is one way of telling a patient about their request: email now,
// SMS next. A notice is the same whatever the channel (services.Notice); the
// notifier queues it once per channel that reaches the patient, on
// notify.<channel>.<clinic>, and each channel has its own sender: its own
// consumer, attempts, failures and "sent" only once its provider accepted
// the message. Texts come from the message catalogue (internal/catalog).
type Channel interface {
	// Name is the channel's subject token (subjects.ChannelEmail).
	Name() string
	// Reaches reports whether the patient left what this channel needs.
	Reaches(c services.Contact) bool
	// Send tells the patient; nil once the provider accepted the message.
	Send(ctx context.Context, out Outgoing) error
	// Permanent reports a refusal another attempt cannot change; Describe
	// says what went wrong without the provider's text, which may quote the
	// patient's address or number.
	Permanent(err error) bool
	Describe(err error) string
}

// Outgoing is a notice ready for a channel: what it is about, whom it
// reaches, and the times it names.
type Outgoing struct {
	Notice  services.Notice
	Contact services.Contact
	Clinic  services.Clinic
	// Start and End are the notice's slot; Proposed the time the clinic
	// proposed instead (services.NoticeProposed).
	Start, End, Proposed time.Time
	BaseURL              string // the web front's public URL, for the status link
	Now                  time.Time
}

// emailChannel sends notices as email through a Mailer (SMTP).
type emailChannel struct {
	mailer       Mailer
	from         string // the From header
	envelopeFrom string // its bare address, for MAIL FROM
	permanent    func(error) bool
	describe     func(error) string
}

func (e *emailChannel) Name() string { return "email" }

func (e *emailChannel) Reaches(c services.Contact) bool { return c.Email != "" }

func (e *emailChannel) Send(ctx context.Context, out Outgoing) error {
	m := services.NoticeEmail{Notice: out.Notice, Contact: out.Contact, Clinic: out.Clinic, Start: out.Start,
		End: out.End, Proposed: out.Proposed, BaseURL: out.BaseURL, From: e.from, Now: out.Now}
	msg, err := m.Compose().Bytes()
	if err != nil {
		return err
	}
	return e.mailer.Send(ctx, e.envelopeFrom, out.Contact.Email, msg)
}

func (e *emailChannel) Permanent(err error) bool  { return e.permanent(err) }
func (e *emailChannel) Describe(err error) string { return e.describe(err) }

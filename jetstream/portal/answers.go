package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// Answer is an agent's answer to a portal check (subjects.AgentPortalAnswer).
type Answer struct {
	Check string `json:"check"`
	Known bool   `json:"known"`
}

// reply is the relay's: empty when done, else why not.
type reply struct {
	// Code is "refused" (the answer breaks a rule: asking again changes
	// nothing) or "unavailable" (the link was not sent: answer again).
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// Answers is the relay's side of the clinics' answers: it sends the link
// when a clinic says yes to a check the relay asked. Relays sharing a
// cluster share the work (queue group "relay").
type Answers struct {
	Portal *services.Portal
	// Active says whether clinic is onboarded and not revoked.
	Active func(clinic string) bool
	Logger *slog.Logger
	// busy bounds the answers handled at once (each may wait on SMTP).
	busy chan struct{}
}

// answerTimeout bounds one answer's handling, the email's sending included.
const answerTimeout = 30 * time.Second

// Serve answers on nc until the subscription is drained.
func (a *Answers) Serve(nc *nats.Conn) error {
	if a.Logger == nil {
		a.Logger = slog.New(slog.DiscardHandler)
	}
	a.busy = make(chan struct{}, 16)
	if _, err := nc.QueueSubscribe(subjects.AllAgentPortalAnswers, "relay", a.handle); err != nil {
		return fmt.Errorf("serve portal answers: %w", err)
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("serve portal answers: %w", err)
	}
	return nil
}

func (a *Answers) handle(m *nats.Msg) {
	a.busy <- struct{}{}
	go func() {
		defer func() { <-a.busy }()
		r := a.answer(strings.Split(m.Subject, ".")[2], m.Data)
		b, _ := json.Marshal(r)
		_ = m.Respond(b)
	}()
}

func (a *Answers) answer(clinic string, body []byte) reply {
	if subjects.ValidClinicID(clinic) != nil || !a.Active(clinic) {
		return reply{Code: "refused", Error: "no active clinic " + clinic}
	}
	var ans Answer
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if len(body) > 200 || dec.Decode(&ans) != nil || subjects.ValidRequestID(ans.Check) != nil {
		return reply{Code: "refused", Error: `an answer is {"check": "<32 hex digits>", "known": true|false}`}
	}
	ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
	defer cancel()
	if err := a.Portal.Answer(ctx, clinic, ans.Check, ans.Known); err != nil {
		a.Logger.Warn("portal link not sent; the clinic's agent answers again", "clinic_id", clinic, "err", err.Error())
		return reply{Code: "unavailable", Error: "the relay could not send the link; answer again"}
	}
	return reply{}
}

// ErrRefused is an answer the relay refused: answering again cannot help.
var ErrRefused = errors.New("the relay refused the answer")

// SendAnswer is the agent's side: it answers check and waits for the
// relay. An error wrapping ErrRefused is final; any other, try again.
func SendAnswer(ctx context.Context, nc *nats.Conn, clinic string, ans Answer) error {
	b, _ := json.Marshal(ans)
	m, err := nc.RequestWithContext(ctx, subjects.AgentPortalAnswer(clinic), b)
	if err != nil {
		return fmt.Errorf("answer the portal: %w", err)
	}
	var r reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("answer the portal: the relay's reply: %w", err)
	}
	switch r.Code {
	case "":
		return nil
	case "refused":
		return fmt.Errorf("%w: %s", ErrRefused, r.Error)
	}
	return fmt.Errorf("answer the portal: %s", r.Error)
}

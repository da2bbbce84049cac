package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// Grant is an agent's grant of portal access (subjects.AgentPortalGrant):
// the patient's email and the argon2id hash of a temporary password.
type Grant struct {
	Email string `json:"email"`
	Hash  string `json:"hash"`
	// Reset replaces a password the patient chose (the front desk
	// confirmed it identified them).
	Reset bool `json:"reset,omitempty"`
}

// Answer is an agent's answer to a portal check (subjects.AgentPortalAnswer).
type Answer struct {
	Check string `json:"check"`
	Known bool   `json:"known"`
	// Details answer a question about a signed-in patient (a check with
	// reply_to): services.PatientDetails sealed to the session key.
	Details *services.Sealed `json:"details,omitempty"`
}

// maxAnswer bounds an answer's body: a check ID and sealed details.
const maxAnswer = 4096

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

	mu sync.Mutex
	// grants has a limiter per active clinic: each grant may make an
	// account, so a clinic's creds make GrantBurst of them at once and
	// then one every GrantEvery, never any number.
	grants map[string]*rate.Limiter
}

// GrantEvery and GrantBurst bound one clinic's grants.
const (
	GrantEvery = 10 * time.Second
	GrantBurst = 30
)

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
	if _, err := nc.QueueSubscribe(subjects.AllAgentPortalGrants, "relay", a.handleGrant); err != nil {
		return fmt.Errorf("serve portal grants: %w", err)
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
	if !decodeStrict(body, maxAnswer, &ans) || subjects.ValidRequestID(ans.Check) != nil ||
		ans.Details != nil && !ans.Known {
		return reply{Code: "refused", Error: `an answer is {"check": "<32 hex digits>", "known": true|false, "details": sealed, with known only}`}
	}
	ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
	defer cancel()
	if err := a.Portal.Answer(ctx, clinic, ans.Check, ans.Known, ans.Details); err != nil {
		a.Logger.Warn("portal link not sent; the clinic's agent answers again", "clinic_id", clinic, "err", err.Error())
		return reply{Code: "unavailable", Error: "the relay could not send the link; answer again"}
	}
	return reply{}
}

func (a *Answers) handleGrant(m *nats.Msg) {
	r := a.grant(strings.Split(m.Subject, ".")[2], m.Data)
	b, _ := json.Marshal(r)
	_ = m.Respond(b)
}

func (a *Answers) grant(clinic string, body []byte) reply {
	if subjects.ValidClinicID(clinic) != nil || !a.Active(clinic) {
		return reply{Code: "refused", Error: "no active clinic " + clinic}
	}
	var g Grant
	if !decodeStrict(body, 1000, &g) {
		return reply{Code: "refused", Error: `a grant is {"email": "...", "hash": "$argon2id$..."}`}
	}
	if !a.limiter(clinic).Allow() {
		return reply{Code: "unavailable", Error: fmt.Sprintf("more than %d grants from this clinic at once; try again in a minute", GrantBurst)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
	defer cancel()
	switch err := a.Portal.Grant(ctx, clinic, g.Email, g.Hash, g.Reset); services.ErrorCode(err) {
	case services.EInvalid:
		return reply{Code: "refused", Error: err.Error()}
	case services.EConflict:
		return reply{Code: "exists", Error: "this patient already has a portal account with a password of their own"}
	default:
		if err != nil {
			a.Logger.Warn("portal grant", "clinic_id", clinic, "err", err.Error())
			return reply{Code: "unavailable", Error: "the relay could not give access now; try again"}
		}
	}
	return reply{}
}

func (a *Answers) limiter(clinic string) *rate.Limiter {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.grants == nil {
		a.grants = map[string]*rate.Limiter{}
	}
	l, ok := a.grants[clinic]
	if !ok {
		l = rate.NewLimiter(rate.Every(GrantEvery), GrantBurst)
		a.grants[clinic] = l
	}
	return l
}

// SendGrant is the agent's side of a grant; an error wrapping ErrRefused
// is final, any other may pass on a second try.
func SendGrant(ctx context.Context, nc *nats.Conn, clinic string, g Grant) error {
	b, _ := json.Marshal(g)
	return ask(ctx, nc, subjects.AgentPortalGrant(clinic), b, "give portal access")
}

// decodeStrict reads body, of at most max bytes, into v: false unless it
// is one JSON object of v's fields only.
func decodeStrict(body []byte, max int, v any) bool {
	if len(body) > max {
		return false
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	return dec.Decode(v) == nil && !dec.More()
}

// ErrRefused is an answer the relay refused: answering again cannot help.
var ErrRefused = errors.New("the relay refused the answer")

// ErrExists is a grant for a patient who already has an account with a
// password of their own.
var ErrExists = errors.New("the patient already has a portal account")

// SendAnswer is the agent's side: it answers check and waits for the
// relay. An error wrapping ErrRefused is final; any other, try again.
func SendAnswer(ctx context.Context, nc *nats.Conn, clinic string, ans Answer) error {
	b, _ := json.Marshal(ans)
	return ask(ctx, nc, subjects.AgentPortalAnswer(clinic), b, "answer the portal")
}

// ask sends body to the relay on subject and reads its reply.
func ask(ctx context.Context, nc *nats.Conn, subject string, body []byte, what string) error {
	m, err := nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var r reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("%s: the relay's reply: %w", what, err)
	}
	switch r.Code {
	case "":
		return nil
	case "refused":
		return fmt.Errorf("%w: %s", ErrRefused, r.Error)
	case "exists":
		return ErrExists
	}
	return fmt.Errorf("%s: %s", what, r.Error)
}

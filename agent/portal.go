package agent

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/clinicrelay/clinicrelay/agent/connector"
	"github.com/clinicrelay/clinicrelay/jetstream/portal"
	"github.com/clinicrelay/clinicrelay/services"
)

// The portal's checks (subjects.KindPortal): the relay asks whether the
// clinic's records hold an email, and the agent answers yes or no; asked
// about a patient who has just signed in (ReplyTo), it gives their details
// sealed to that patient's session key, within detailsLimits. A connector
// that keeps no patients (connector.PatientDirectory) knows no email.

func openPortalCheck(a *Agent, env envelope) (any, error) {
	c, err := a.opener.OpenPortalCheck(env.sealed)
	if err == nil {
		err = c.Validate()
	}
	if err == nil && (c.ID != env.requestID || c.ClinicID != a.clinic) {
		err = services.Errorf(services.EInvalid, "portal check: routing IDs differ from the sealed ones")
	}
	return c, err
}

// portalRetry is how long an answer the relay could not act on waits
// before it is given again (the check lives services.PortalLinkLife).
const portalRetry = 20 * time.Second

func applyPortalCheck(ctx context.Context, a *Agent, env envelope, body any) verdict {
	c := body.(services.PortalCheck)
	ans, err := a.portalAnswer(ctx, c)
	if err != nil {
		if ctx.Err() == nil {
			env.log.Error("portal check: the clinic's records", "err", err.Error())
		}
		return again(portalRetry)
	}
	known := ans.Known
	action := services.AuditPortalChecked
	if ans.Details != nil {
		action = services.AuditPortalDetails
	}
	switch err := portal.SendAnswer(ctx, a.nc, a.clinic, ans); {
	case errors.Is(err, portal.ErrRefused):
		env.log.Error("portal check: the relay refused the answer", "err", err.Error())
		return verdict{term: true}
	case err != nil:
		env.log.Warn("portal check: answer again", "err", err.Error())
		return again(portalRetry)
	}
	detail := "unknown"
	if known {
		detail = "known"
	}
	return ack(func(ctx context.Context) { a.record(ctx, action, c.ID, detail) })
}

// portalAnswer is the clinic's answer to c: whether its records hold the
// email and, asked for them (ReplyTo), the patient's details sealed to the
// patient's session key. A connector that keeps no patients knows none.
func (a *Agent) portalAnswer(ctx context.Context, c services.PortalCheck) (portal.Answer, error) {
	ans := portal.Answer{Check: c.ID}
	if c.ReplyTo != "" && !a.details.allow(c.Email) {
		return ans, nil // asked too often: no details (the patient types them)
	}
	if recs, ok := a.conn.(connector.PatientRecords); ok && c.ReplyTo != "" {
		d, found, err := recs.PatientDetails(ctx, c.Email)
		if err != nil || !found {
			return ans, err
		}
		sealed, err := new(services.Sealer).Seal(d, c.ReplyTo)
		if err != nil {
			return ans, err
		}
		ans.Known, ans.Details = true, &sealed
		return ans, nil
	}
	if dir, ok := a.conn.(connector.PatientDirectory); ok {
		var err error
		ans.Known, err = dir.KnowsEmail(ctx, c.Email)
		return ans, err
	}
	return ans, nil
}

// portalAccess is the agent's connector.PortalAccess: grants go to the
// relay (subjects.AgentPortalGrant).
type portalAccess struct{ a *Agent }

func (p portalAccess) Grant(ctx context.Context, email, hash string, reset bool) error {
	err := portal.SendGrant(ctx, p.a.nc, p.a.clinic, portal.Grant{Email: email, Hash: hash, Reset: reset})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, portal.ErrRefused):
		return &services.Error{Code: services.EInvalid, Message: "the relay refused to give portal access", Err: err}
	case errors.Is(err, portal.ErrExists):
		return services.Errorf(services.EConflict,
			"this patient already has a portal account with a password of their own: they set a new one with the email link "+
				"on the clinic's portal page; or, if you have identified them, reset it here")
	}
	return &services.Error{Code: services.EUnavailable, Message: "the patient portal cannot be reached now; try again in a minute",
		Err: err}
}

// detailsLimits bound the details an agent gives, whoever asks: the web
// front's creds may queue questions about any email, so a stolen or
// misused front can draw at most DetailsPerEmail an hour for one address
// and DetailsPerHour in all from a clinic.
type detailsLimits struct {
	mu      sync.Mutex
	all     *rate.Limiter
	byEmail map[string]*rate.Limiter
}

// The bounds of detailsLimits.
const (
	DetailsPerEmail = 5
	DetailsPerHour  = 300
)

func (l *detailsLimits) allow(email string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.all == nil || len(l.byEmail) > 10_000 {
		if l.all == nil {
			l.all = rate.NewLimiter(rate.Every(time.Hour/DetailsPerHour), DetailsPerHour/6)
		}
		l.byEmail = map[string]*rate.Limiter{}
	}
	key := services.PortalEmail(email)
	e, ok := l.byEmail[key]
	if !ok {
		e = rate.NewLimiter(rate.Every(time.Hour/DetailsPerEmail), DetailsPerEmail)
		l.byEmail[key] = e
	}
	return e.Allow() && l.all.Allow()
}

package agent

import (
	"context"
	"errors"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/connector"
	"github.com/clinicrelay/clinicrelay/jetstream/portal"
	"github.com/clinicrelay/clinicrelay/services"
)

// The portal's checks (subjects.KindPortal): the relay asks whether the
// clinic's records hold an email, and the agent answers yes or no, never
// with anything of the record. A connector that keeps no patients
// (connector.PatientDirectory) knows no email.

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
	return ack(func(ctx context.Context) { a.record(ctx, services.AuditPortalChecked, c.ID, detail) })
}

// portalAnswer is the clinic's answer to c: whether its records hold the
// email and, asked for them (ReplyTo), the patient's details sealed to the
// patient's session key. A connector that keeps no patients knows none.
func (a *Agent) portalAnswer(ctx context.Context, c services.PortalCheck) (portal.Answer, error) {
	ans := portal.Answer{Check: c.ID}
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

func (p portalAccess) Grant(ctx context.Context, email, hash string) error {
	err := portal.SendGrant(ctx, p.a.nc, p.a.clinic, portal.Grant{Email: email, Hash: hash})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, portal.ErrRefused):
		return &services.Error{Code: services.EInvalid, Message: "the relay refused to give portal access", Err: err}
	}
	return &services.Error{Code: services.EUnavailable, Message: "the patient portal cannot be reached now; try again in a minute",
		Err: err}
}

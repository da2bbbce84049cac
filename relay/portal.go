package relay

import (
	"crypto/hmac"
	"crypto/sha256"
	"os"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/mail"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/portal"
	"github.com/clinicrelay/clinicrelay/services"
)

// newPortal is the patient portal on js (the web's connection): its store
// sealed with a key derived from the relay's secret (pending.key, which
// every relay of a deployment shares), checks queued through reqs, links
// mailed through --smtp-url. Without SMTP it signs patients in but
// registers no one; with no secret (no data dir, no $CLINICRELAY_PENDING_KEY)
// there is no portal.
func (r *Relay) newPortal(js jetstream.JetStream, reqs *cjs.Requests) (*services.Portal, error) {
	if r.cfg.DataDir == "" && os.Getenv(pendingKeyEnv) == "" {
		r.log.Warn("no data dir and no " + pendingKeyEnv + ": the patient portal is off")
		return nil, nil
	}
	secret, err := pendingSecret(r.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("clinicrelay/portal-key"))
	p := &services.Portal{Store: portal.NewStore(js, m.Sum(nil)), Outbox: reqs, Directory: r.Catalog,
		Audit: &cjs.Auditor{JS: js, Logger: r.log}, Now: r.cfg.Now,
		LinkURL: func(c services.Clinic, token string) string {
			return r.publicURL() + "/c/" + c.ID + "/portal/link/" + token
		}}
	if r.cfg.Notify.SMTPURL != "" {
		if p.Send, err = r.sendMail(); err != nil {
			return nil, err
		}
		p.From, p.Permanent, p.Describe = r.cfg.Notify.SMTPFrom, mail.Permanent, mail.Describe
	}
	return p, nil
}

// publicURL is the web front's address as patients reach it.
func (r *Relay) publicURL() string {
	if u := r.cfg.Notify.PublicURL; u != "" {
		return strings.TrimRight(u, "/")
	}
	return r.HTTPURL()
}

// servePortalAnswers has the relay act on the clinics' answers to the
// portal's checks, on the admin connection.
func (r *Relay) servePortalAnswers(js jetstream.JetStream, active func(string) bool) error {
	if r.portal == nil {
		return nil
	}
	a := &portal.Answers{Portal: r.portal, Active: active, Logger: r.log}
	return a.Serve(js.Conn())
}

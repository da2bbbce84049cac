package relay

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	netmail "net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/mail"
	"github.com/clinicrelay/clinicrelay/jetstream/notify"
	"github.com/clinicrelay/clinicrelay/services"
)

// NotifyConfig is the email notifier's part of Config.
type NotifyConfig struct {
	// SMTPURL is smtp://user:pass@host:port (STARTTLS required unless the
	// host is this one), smtps://... or smtp+insecure://... (clear text
	// allowed, for a server on a private network); "" sends no email and
	// keeps no contacts.
	SMTPURL  string
	SMTPFrom string // the From address
	SMTPTLS  *tls.Config
	// PublicURL is the web front's address as patients reach it, for the
	// links in emails (default: the HTTP listener's URL).
	PublicURL string
	// Retries and ReminderAt: see jetstream.NotifierConfig (tests shorten them).
	Retries    []time.Duration
	ReminderAt func(start time.Time) time.Time
}

// notifyKeyFile holds the key CONTACTS are sealed with, in the data dir.
const notifyKeyFile = "notify.key"

// startNotifier runs the email notifier on js (the admin connection) and
// has the Booker keep contacts, when an SMTP server is configured.
func (r *Relay) startNotifier(ctx context.Context, js jetstream.JetStream, booker *services.Booker) error {
	nc := r.cfg.Notify
	if nc.SMTPURL == "" {
		r.log.Warn("no --smtp-url: the relay sends no email notices and keeps no patient addresses")
		return nil
	}
	sender, err := r.mailer()
	if err != nil {
		return err
	}
	key, err := loadNotifyKey(r.cfg.DataDir)
	if err != nil {
		return err
	}
	contacts, err := notify.NewContacts(js, key, r.cfg.Now)
	if err != nil {
		return err
	}
	base := r.publicURL()
	n := notify.New(notify.Config{JS: js, Contacts: contacts, Directory: r.Catalog, Mailer: sender,
		Permanent: mail.Permanent, Describe: mail.Describe, From: nc.SMTPFrom, BaseURL: base,
		Retries: nc.Retries, ReminderAt: nc.ReminderAt, Logger: r.log, Now: r.cfg.Now})
	started := make(chan error, 1)
	go n.Run(ctx, started)
	if err := <-started; err != nil {
		return err
	}
	r.Notifier = n
	booker.Contacts = contacts
	booker.ContactFailed = func(clinic, requestID string, err error) {
		n.Metrics.ContactErrors.Add(1)
		r.log.Error("contact not kept: this request gets no email notices", "clinic_id", clinic,
			"request_id", requestID, "err", err.Error())
	}
	r.log.Info("email notices on", "smtp", sender.Addr(), "public_url", base)
	return nil
}

// mailer is the SMTP sender of --smtp-url, from --smtp-from.
func (r *Relay) mailer() (*mail.Sender, error) {
	nc := r.cfg.Notify
	if _, err := netmail.ParseAddress(nc.SMTPFrom); err != nil {
		return nil, fmt.Errorf("--smtp-from %q is not an address (--smtp-url needs one)", nc.SMTPFrom)
	}
	return mail.New(mail.Config{URL: nc.SMTPURL, TLS: nc.SMTPTLS})
}

// emailCodes lets patients past a clinic's spent budget by proving their
// email (web/emailcode.go); nil without --smtp-url or with abuse limits off.
// Its secret comes from the pending cap's, which every relay shares.
func (r *Relay) emailCodes() (*services.EmailCodes, error) {
	if r.cfg.Notify.SMTPURL == "" || r.cfg.Abuse.Off {
		return nil, nil
	}
	send, err := r.sendMail()
	if err != nil {
		return nil, err
	}
	secret, err := pendingSecret(r.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("clinicrelay/email-code-key"))
	return &services.EmailCodes{Secret: m.Sum(nil), From: r.cfg.Notify.SMTPFrom, Now: r.cfg.Now, Send: send}, nil
}

// sendMail sends a message to a bare address through --smtp-url, from
// --smtp-from: the email codes' and the portal's links.
func (r *Relay) sendMail() (func(ctx context.Context, to string, msg []byte) error, error) {
	sender, err := r.mailer()
	if err != nil {
		return nil, err
	}
	from, _ := netmail.ParseAddress(r.cfg.Notify.SMTPFrom) // checked by mailer
	return func(ctx context.Context, to string, msg []byte) error { return sender.Send(ctx, from.Address, to, msg) }, nil
}

// loadNotifyKey reads DATA/notify.key, making it (32 random bytes, hex,
// 0600) on first start. Relays sharing an external NATS need the same file.
func loadNotifyKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, notifyKeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k := make([]byte, 32)
		rand.Read(k)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("notify key: %w", err)
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("notify key: %w", err)
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("notify key: %w", err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("notify key %s: must be 64 hex digits", path)
	}
	return k, nil
}

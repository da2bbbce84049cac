// Package mail sends email through an SMTP server: smtp:// with STARTTLS
// (required unless the server is on the same host), smtps:// (TLS from the
// first byte) or smtp+insecure:// (STARTTLS when offered, else in clear:
// the operator's explicit choice), and AUTH PLAIN when the URL has a user.
// One connection per message.
package mail

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Config is an SMTP server.
type Config struct {
	// URL is smtp://[user[:password]@]host[:port] (port 587 by default),
	// smtps://... (port 465) or smtp+insecure://... (587).
	URL string
	// TLS is the client's TLS config (tests trust their own CA here).
	TLS *tls.Config
	// Timeout bounds one message's whole exchange (default 30s).
	Timeout time.Duration
	// Dial connects to the server's host:port (default net.Dialer); tests
	// reach their server under another name with it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// ErrNoTLS: the server offers no STARTTLS (or someone on the way removed
// the offer), so the message, which has the patient's address and status
// link, is not sent. It is not permanent: the notice is tried again.
var ErrNoTLS = errors.New("smtp: the server offers no TLS; not sending in clear (smtp+insecure:// allows it)")

// Sender sends messages to one SMTP server.
type Sender struct {
	cfg        Config
	addr, host string
	implicit   bool
	insecure   bool // smtp+insecure: clear text allowed
	user, pass string
}

// New checks cfg.URL; it does not connect.
func New(cfg Config) (*Sender, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, errors.New("smtp url: not a URL") // the error would repeat the password
	}
	s := &Sender{cfg: cfg, host: u.Hostname()}
	port := u.Port()
	switch u.Scheme {
	case "smtp", "smtp+insecure":
		s.insecure = u.Scheme == "smtp+insecure"
		if port == "" {
			port = "587"
		}
	case "smtps":
		s.implicit = true
		if port == "" {
			port = "465"
		}
	default:
		return nil, fmt.Errorf("smtp url: scheme must be smtp, smtps or smtp+insecure, not %q", u.Scheme)
	}
	if s.host == "" {
		return nil, errors.New("smtp url: no host")
	}
	s.addr = net.JoinHostPort(s.host, port)
	if u.User != nil {
		s.user = u.User.Username()
		s.pass, _ = u.User.Password()
	}
	if s.cfg.Timeout <= 0 {
		s.cfg.Timeout = 30 * time.Second
	}
	if s.cfg.Dial == nil {
		s.cfg.Dial = (&net.Dialer{}).DialContext
	}
	return s, nil
}

// Addr is the server's host:port, safe to log (no credentials).
func (s *Sender) Addr() string { return s.addr }

// Send hands msg (an RFC 5322 message with CRLF line ends) for to to the
// server. It returns nil only once the server has accepted the message
// (its answer to the final dot). Nothing is sent in clear to a server on
// another host unless the URL is smtp+insecure:// (ErrNoTLS), and never
// the password. An *smtp.SMTPError carries the server's code: see
// Permanent.
func (s *Sender) Send(ctx context.Context, from, to string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	c, err := s.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() }) // ctx ends: cut the exchange short
	defer stop()
	_, isTLS := c.TLSConnectionState()
	if !isTLS && !loopback(s.host) {
		if s.user != "" {
			return errors.New("smtp: the server offers no TLS; refusing to send the password in clear")
		}
		if !s.insecure {
			return ErrNoTLS
		}
	}
	if s.user != "" {
		if err := c.Auth(sasl.NewPlainClient("", s.user, s.pass)); err != nil {
			return fmt.Errorf("smtp auth: %w", err)
		}
	}
	if err := c.SendMail(from, []string{to}, bytes.NewReader(msg)); err != nil {
		return &txError{err}
	}
	c.Quit() // the message is accepted; a failed QUIT changes nothing
	return nil
}

// txError is an error in the mail transaction proper (MAIL, RCPT, DATA):
// the only place an answer says something about the message itself.
type txError struct{ err error }

func (e *txError) Error() string { return e.err.Error() }
func (e *txError) Unwrap() error { return e.err }

// dial connects and says hello: over TLS for smtps, with STARTTLS when the
// server offers it for smtp.
func (s *Sender) dial(ctx context.Context) (*smtp.Client, error) {
	tlsCfg := s.tlsConfig()
	conn, err := s.cfg.Dial(ctx, "tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("smtp dial: %w", err)
	}
	setDeadline(conn, ctx)
	if s.implicit {
		tc := tls.Client(conn, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("smtp tls: %w", err)
		}
		return hello(smtp.NewClient(tc))
	}
	c, err := hello(smtp.NewClient(conn))
	if err != nil {
		return nil, err
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return c, nil
	}
	// Offered: start again on a fresh connection that upgrades (go-smtp
	// upgrades only from NewClientStartTLS).
	c.Close()
	if conn, err = s.cfg.Dial(ctx, "tcp", s.addr); err != nil {
		return nil, fmt.Errorf("smtp dial: %w", err)
	}
	setDeadline(conn, ctx)
	c, err = smtp.NewClientStartTLS(conn, tlsCfg)
	if err != nil {
		return nil, fmt.Errorf("smtp starttls: %w", err)
	}
	return c, nil
}

// hello reads the greeting and says EHLO, so that a refusal there is not
// taken for one of the message.
func hello(c *smtp.Client) (*smtp.Client, error) {
	if err := c.Hello("localhost"); err != nil {
		c.Close()
		return nil, fmt.Errorf("smtp hello: %w", err)
	}
	return c, nil
}

func (s *Sender) tlsConfig() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.cfg.TLS != nil {
		cfg = s.cfg.TLS.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = s.host
	}
	return cfg
}

func setDeadline(conn net.Conn, ctx context.Context) {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Permanent reports whether err is the server's permanent refusal of the
// message: a 5xx answer to MAIL, RCPT or DATA, such as an unknown mailbox.
// Trying the same message again would be refused again. A refused login
// (535, or 530 "authentication required"), a refusal at the greeting and
// a server without TLS are not: the operator can fix them, and the notices
// wait meanwhile.
func Permanent(err error) bool {
	var tx *txError
	var se *smtp.SMTPError
	if !errors.As(err, &tx) || !errors.As(tx.err, &se) || se.Code < 500 || se.Code >= 600 {
		return false
	}
	switch se.Code {
	case 530, 534, 535, 538: // authentication required, too weak, failed, needs encryption
		return false
	}
	switch se.EnhancedCode {
	case smtp.EnhancedCode{5, 7, 8}, smtp.EnhancedCode{5, 7, 9}, smtp.EnhancedCode{5, 7, 11}:
		return false
	}
	return true
}

// Describe says what went wrong, fit for logs: an SMTP answer by its codes
// only (the server's text may quote the address), other errors as they are
// (dial, TLS and timeouts name the server, never the recipient).
func Describe(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprintf("smtp %d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

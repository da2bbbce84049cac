// Package mail sends email through an SMTP server: smtp:// with STARTTLS
// when the server offers it, or smtps:// (TLS from the first byte), and
// AUTH PLAIN when the URL has a user. One connection per message.
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
	// URL is smtp://[user[:password]@]host[:port] (port 587 by default) or
	// smtps://... (port 465).
	URL string
	// TLS is the client's TLS config (tests trust their own CA here).
	TLS *tls.Config
	// Timeout bounds one message's whole exchange (default 30s).
	Timeout time.Duration
}

// Sender sends messages to one SMTP server.
type Sender struct {
	cfg        Config
	addr, host string
	implicit   bool
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
	case "smtp":
		if port == "" {
			port = "587"
		}
	case "smtps":
		s.implicit = true
		if port == "" {
			port = "465"
		}
	default:
		return nil, fmt.Errorf("smtp url: scheme must be smtp or smtps, not %q", u.Scheme)
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
	return s, nil
}

// Addr is the server's host:port, safe to log (no credentials).
func (s *Sender) Addr() string { return s.addr }

// Send hands msg (an RFC 5322 message with CRLF line ends) for to to the
// server. It returns nil only once the server has accepted the message
// (its answer to the final dot). An *smtp.SMTPError carries the server's
// code: see Permanent.
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
	if s.user != "" {
		if _, isTLS := c.TLSConnectionState(); !isTLS && !loopback(s.host) {
			return errors.New("smtp: the server offers no TLS; refusing to send the password in clear")
		}
		if err := c.Auth(sasl.NewPlainClient("", s.user, s.pass)); err != nil {
			return fmt.Errorf("smtp auth: %w", err)
		}
	}
	if err := c.SendMail(from, []string{to}, bytes.NewReader(msg)); err != nil {
		return err
	}
	c.Quit() // the message is accepted; a failed QUIT changes nothing
	return nil
}

// dial connects and says hello: over TLS for smtps, with STARTTLS when the
// server offers it for smtp.
func (s *Sender) dial(ctx context.Context) (*smtp.Client, error) {
	tlsCfg := s.tlsConfig()
	d := &net.Dialer{}
	if s.implicit {
		conn, err := (&tls.Dialer{NetDialer: d, Config: tlsCfg}).DialContext(ctx, "tcp", s.addr)
		if err != nil {
			return nil, fmt.Errorf("smtp dial: %w", err)
		}
		setDeadline(conn, ctx)
		return smtp.NewClient(conn), nil
	}
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("smtp dial: %w", err)
	}
	c := smtp.NewClient(conn)
	setDeadline(conn, ctx)
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return c, nil
	}
	// Offered: start again on a fresh connection that upgrades (go-smtp
	// upgrades only from NewClientStartTLS).
	c.Close()
	if conn, err = d.DialContext(ctx, "tcp", s.addr); err != nil {
		return nil, fmt.Errorf("smtp dial: %w", err)
	}
	setDeadline(conn, ctx)
	c, err = smtp.NewClientStartTLS(conn, tlsCfg)
	if err != nil {
		return nil, fmt.Errorf("smtp starttls: %w", err)
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

// Permanent reports whether err is the server's permanent refusal (a 5xx
// answer): trying the same message again would be refused again.
func Permanent(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500 && se.Code < 600
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

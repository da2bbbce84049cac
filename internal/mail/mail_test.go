package mail_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/clinicrelay/clinicrelay/internal/mail"
	"github.com/clinicrelay/clinicrelay/internal/mail/mailtest"
)

const msg = "From: relay@clinic.test\r\nTo: ada@example.org\r\nSubject: hi\r\n\r\nhello\r\n"

func TestSender_Send(t *testing.T) {
	tests := []struct {
		name    string
		opts    mailtest.Options
		wantTLS bool
	}{
		{"OK", mailtest.Options{}, false},
		{"Auth", mailtest.Options{User: "relay", Pass: "s3cret"}, false},
		{"STARTTLS", mailtest.Options{User: "relay", Pass: "s3cret", STARTTLS: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := mailtest.Start(t, tt.opts)
			s, err := mail.New(mail.Config{URL: srv.URL(), TLS: srv.ClientTLS})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(context.Background(), "relay@clinic.test", "ada@example.org", []byte(msg)); err != nil {
				t.Fatal(err)
			}
			got := srv.Messages()
			if len(got) != 1 {
				t.Fatalf("server has %d messages, want 1", len(got))
			}
			m := got[0]
			if m.From != "relay@clinic.test" || len(m.To) != 1 || m.To[0] != "ada@example.org" ||
				!strings.Contains(string(m.Data), "hello") || m.User != tt.opts.User || m.TLS != tt.wantTLS {
				t.Errorf("message = from %q to %q user %q tls %v, data %q", m.From, m.To, m.User, m.TLS, m.Data)
			}
		})
	}
}

func TestSender_Refused(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{})
	s, _ := mail.New(mail.Config{URL: srv.URL()})
	for _, tt := range []struct {
		code      int
		permanent bool
	}{{451, false}, {550, true}} {
		srv.Refuse(tt.code)
		err := s.Send(context.Background(), "relay@clinic.test", "ada@example.org", []byte(msg))
		if err == nil || mail.Permanent(err) != tt.permanent {
			t.Errorf("refused with %d: err %v, permanent %v, want %v", tt.code, err, mail.Permanent(err), tt.permanent)
		}
		if d := mail.Describe(err); strings.Contains(d, "example.org") || !strings.Contains(d, "smtp") {
			t.Errorf("Describe(%v) = %q", err, d)
		}
	}
	if len(srv.Messages()) != 0 {
		t.Error("a refused message was kept")
	}
	if _, err := mail.New(mail.Config{URL: "http://x"}); err == nil {
		t.Error("http:// accepted")
	}
	if _, err := mail.New(mail.Config{URL: "smtp://user:pw@"}); err == nil || strings.Contains(err.Error(), "pw") {
		t.Errorf("no host: %v", err)
	}
}

// TestSender_WrongPassword: a refused login (535, or 530 to MAIL when the
// relay has no user) is not a permanent refusal of the message: during a
// credential rotation the notices wait for the operator.
func TestSender_WrongPassword(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{User: "relay", Pass: "s3cret"})
	for _, url := range []string{"smtp://relay:wrong@" + srv.Addr, "smtp://" + srv.Addr} {
		s, _ := mail.New(mail.Config{URL: url})
		err := s.Send(context.Background(), "relay@clinic.test", "ada@example.org", []byte(msg))
		if err == nil || mail.Permanent(err) {
			t.Errorf("%s: %v, permanent %v", strings.Replace(url, srv.Addr, "server", 1), err, mail.Permanent(err))
		}
	}
}

// dialTo reaches addr whatever name the URL has: the test's server under a
// name that is not the loopback's.
func dialTo(addr string) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
}

// TestSender_RequireTLS: to a server on another host, the message (the
// patient's address and status link) goes over TLS or not at all, unless
// the URL is smtp+insecure://. A server on the same host needs no TLS.
func TestSender_RequireTLS(t *testing.T) {
	plain := mailtest.Start(t, mailtest.Options{})
	tlsSrv := mailtest.Start(t, mailtest.Options{STARTTLS: true})
	tests := []struct {
		name    string
		url     string
		srv     *mailtest.Server
		wantErr error
		wantTLS bool
	}{
		{"NoSTARTTLS", "smtp://mail.test:25", plain, mail.ErrNoTLS, false},
		{"Insecure", "smtp+insecure://mail.test:25", plain, nil, false},
		{"InsecureUsesSTARTTLS", "smtp+insecure://mail.test:25", tlsSrv, nil, true},
		{"STARTTLS", "smtp://mail.test:25", tlsSrv, nil, true},
		{"Loopback", "smtp://" + plain.Addr, plain, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(tt.srv.Messages())
			s, err := mail.New(mail.Config{URL: tt.url, TLS: tt.srv.ClientTLS, Dial: dialTo(tt.srv.Addr)})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Send(context.Background(), "relay@clinic.test", "ada@example.org", []byte(msg))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Send() = %v, want %v", err, tt.wantErr)
			}
			if mail.Permanent(err) {
				t.Errorf("%v is permanent", err)
			}
			got := tt.srv.Messages()[before:]
			if tt.wantErr != nil {
				if len(got) != 0 {
					t.Error("the message went out in clear")
				}
				return
			}
			if len(got) != 1 || got[0].TLS != tt.wantTLS {
				t.Errorf("messages %+v, want one with tls %v", got, tt.wantTLS)
			}
		})
	}
}

package mail_test

import (
	"context"
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

// TestSender_WrongPassword: a refused login is not a permanent refusal of
// the message (the operator fixes the password; the notices wait).
func TestSender_WrongPassword(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{User: "relay", Pass: "s3cret"})
	s, _ := mail.New(mail.Config{URL: "smtp://relay:wrong@" + srv.Addr})
	err := s.Send(context.Background(), "relay@clinic.test", "ada@example.org", []byte(msg))
	if err == nil || mail.Permanent(err) {
		t.Errorf("wrong password: %v, permanent %v", err, mail.Permanent(err))
	}
}

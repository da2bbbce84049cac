package services

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/clinicrelay/clinicrelay/internal/catalog"
)

// EmailCodes prove that a patient reads the address they typed. When a
// clinic is receiving more requests than its budget allows (web/ratelimit.go),
// a request goes on only with a code sent to its email: a botnet can send
// from many addresses, but it cannot read many mailboxes, and the pending
// cap counts each mailbox once (CanonicalEmail).
//
// A code is an HMAC of the clinic, the mailbox and the EmailCodeWindow it
// was made in: nothing is stored, and a code is good in its window and the
// next (10 to 20 minutes). Who may ask for codes and guess them is the
// caller's to limit.
type EmailCodes struct {
	Secret []byte // the same on every relay of a deployment
	From   string // the code email's From
	// Send sends a message to a bare address.
	Send func(ctx context.Context, to string, msg []byte) error
	Now  func() time.Time
}

// EmailCodeWindow is how long a code is made for.
const EmailCodeWindow = 10 * time.Minute

// EmailCodeDigits is how many digits a code has.
const EmailCodeDigits = 6

func (e *EmailCodes) now() time.Time {
	if e.Now == nil {
		return time.Now()
	}
	return e.Now()
}

// code is the code of clinic and email in window w.
func (e *EmailCodes) code(clinic, email string, w int64) string {
	m := hmac.New(sha256.New, e.Secret)
	fmt.Fprintf(m, "clinicrelay/email-code\x00%s\x00%s\x00%d", clinic, CanonicalEmail(email), w)
	n := binary.BigEndian.Uint64(m.Sum(nil)[:8]) % 1_000_000
	return fmt.Sprintf("%06d", n)
}

func (e *EmailCodes) window() int64 { return e.now().UnixNano() / int64(EmailCodeWindow) }

// Valid reports whether code is email's code at clinic, now or in the
// window before. Spaces and dashes a patient types in are ignored.
func (e *EmailCodes) Valid(clinic, email, code string) bool {
	code = strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, code)
	if len(code) != EmailCodeDigits {
		return false
	}
	w := e.window()
	return hmac.Equal([]byte(code), []byte(e.code(clinic, email, w))) ||
		hmac.Equal([]byte(code), []byte(e.code(clinic, email, w-1)))
}

// SendCode emails the code of clinic and email, in lang.
func (e *EmailCodes) SendCode(ctx context.Context, clinic Clinic, email, lang string) error {
	code := e.code(clinic.ID, email, e.window())
	lang = Lang(lang)
	msg := Email{From: e.From, To: email, Subject: catalog.T(lang, "emailcode.subject", code, clinic.Name),
		Text: catalog.T(lang, "emailcode.body", clinic.Name, code, int((2 * EmailCodeWindow).Minutes())), Date: e.now()}
	b, err := msg.Bytes()
	if err != nil {
		return err
	}
	return e.Send(ctx, email, b)
}

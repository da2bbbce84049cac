package web

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clinicrelay/clinicrelay/services"
)

// A clinic whose creation budget is spent is not closed: with
// Config.EmailCodes, limitCreate lets a new request through to its handler
// marked needsCode, and the handler asks for a code sent to the patient's
// email (services.EmailCodes) before it holds anything. A legitimate
// patient from a fresh address still gets through; a botnet needs a
// mailbox it reads for every request, and the pending cap counts each
// mailbox once.

// needsCodeKey marks, in the echo context, a request that needs an email code.
const needsCodeKey = "clinicrelay.needs-email-code"

// codeEmailCode is the API error code of a request told to come back with
// the code it was emailed.
const codeEmailCode = "email_code_required"

// byMailbox is whose budget a 429 of codes is about.
const byMailbox = "too many codes asked for or tried for this email address"

func needsCode(c echo.Context) bool {
	need, _ := c.Get(needsCodeKey).(bool)
	return need
}

// mailboxKey is the limiters' key of an address at a clinic: a hash, so
// the limiters hold no address.
func mailboxKey(clinic, email string) string {
	sum := sha256.Sum256([]byte(clinic + "\x00" + services.CanonicalEmail(email)))
	return hex.EncodeToString(sum[:16])
}

// checkEmailCode lets req through (nil) unless it needs a code it lacks.
// Only a valid request is sent a code, so junk costs no email; a missing
// code is sent (ECodeNeeded), a wrong one is a field error, and sends and
// tries per mailbox are limited (429).
func (s *Server) checkEmailCode(c echo.Context, clinic string, req services.Request, code string) error {
	cl, ok := s.cfg.Catalog.Clinic(clinic)
	if !needsCode(c) || !ok {
		return nil // an unknown clinic: the Booker answers 404
	}
	req = req.Trimmed()
	if err := req.Validate(s.cfg.Now().UTC()); err != nil {
		return err
	}
	codes, key, now := s.cfg.EmailCodes, mailboxKey(cl.ID, req.Email), s.cfg.Now()
	if code == "" {
		if wait := s.take(now, s.rates.codeSend, key); wait > 0 {
			return &rateLimited{wait, byMailbox}
		}
		if err := codes.SendCode(c.Request().Context(), cl, req.Email, req.Lang); err != nil {
			s.log.Warn("email code not sent", "clinic_id", cl.ID, "err", err.Error()) // never the address
			return services.Errorf(services.EUnavailable, "the code could not be emailed; please try again in a minute")
		}
		return &services.Error{Code: services.ECodeNeeded, Fields: map[string]string{"email_code": msgCodeSent},
			Message: "this clinic is receiving many requests right now: we emailed you a 6-digit code; " +
				"send the request again with it in email_code"}
	}
	// Every try spends a token, the right one too: were a right code let
	// through past the limit, the limit would not stop guessing.
	if wait := s.take(now, s.rates.codeGuess, key); wait > 0 {
		return &rateLimited{wait, byMailbox}
	}
	if codes.Valid(cl.ID, req.Email, code) {
		return nil
	}
	return &services.Error{Code: services.EInvalid, Message: msgCodeWrong, Fields: map[string]string{"email_code": msgCodeWrong}}
}

// The field messages of email_code.
const (
	msgCodeSent  = "email_code is required: enter the code we emailed you"
	msgCodeWrong = "email_code is not right or has expired: check the email, or leave it empty for a new one"
)

// rateLimited is an error answered 429 by handleError (Server.tooMany).
type rateLimited struct {
	wait time.Duration
	who  string
}

func (e *rateLimited) Error() string { return e.who }

// Package services holds clinicrelay's domain types and rules: clinics, slots,
// requests, statuses and the one coded Error. It imports no transport.
package services

import (
	"errors"
	"fmt"
	"maps"
	"time"
)

// Error codes, mapped to HTTP statuses once, in web/.
const (
	EInvalid     = "invalid"     // the caller sent something malformed
	ENotFound    = "not_found"   // no such clinic, slot or request
	EConflict    = "conflict"    // the slot is taken or held
	EUnavailable = "unavailable" // a dependency (NATS, the clinic) cannot be reached
	EInternal    = "internal"    // a bug; never shown in detail
	ETooLarge    = "too_large"   // the request body is too big
	EForbidden   = "forbidden"   // not allowed
	ECodeNeeded  = "code_needed" // a code was emailed: send the request again with it (EmailCodes)
	// EUnauthorized: no valid sign-in (a wrong password, no session, a
	// session ended); ETooManyTries: sign-in refused for now after repeated
	// failures, whatever the password.
	EUnauthorized = "unauthorized"
	ETooManyTries = "too_many_tries"
)

// Error is the one domain error. Message is safe to show a user; Fields names
// the fields that failed validation. Both are English, for the JSON API and
// logs; Key and FieldKeys are their codes in the message catalogue
// (internal/catalog), which the pages show in the patient's language. A page
// translates by code, never by the English wording, so rewording a message
// cannot lose its translation.
type Error struct {
	Code      string
	Message   string
	Key       string
	Fields    map[string]string
	FieldKeys map[string]string // field -> its message's code
	// KeyArgs and FieldArgs are the arguments of the catalogue's texts
	// (Key's, and each field's), for texts that take some, such as a
	// number of minutes; most take none.
	KeyArgs   []any
	FieldArgs map[string][]any
	Err       error // the cause, for logs; never shown to users
}

// Keyed builds an Error whose message has a code in the catalogue.
func Keyed(code, key, format string, args ...any) *Error {
	return &Error{Code: code, Key: key, Message: fmt.Sprintf(format, args...)}
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Error is for logs: the code, the message, the fields and the cause. Users
// see Message and Fields only.
func (e *Error) Error() string {
	s := e.Code + ": " + e.Message
	if len(e.Fields) > 0 {
		s += fmt.Sprintf(" %v", e.Fields)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Errorf builds an Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first Error in err's chain, EInternal otherwise.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// FieldErrors collects validation errors by field name. The zero value is
// ready to use.
type FieldErrors struct {
	msgs, keys map[string]string
	args       map[string][]any
}

// Add records msg for field unless the field already has one.
func (f *FieldErrors) Add(field, msg string) { f.AddKey(field, "", msg) }

// AddKey is Add with the code of msg in the message catalogue.
func (f *FieldErrors) AddKey(field, key, msg string) {
	if _, ok := f.msgs[field]; ok {
		return
	}
	if f.msgs == nil {
		f.msgs, f.keys = map[string]string{}, map[string]string{}
	}
	f.msgs[field] = msg
	if key != "" {
		f.keys[field] = key
	}
}

// AddKeyArgs is AddKey with the arguments of the catalogue's text.
func (f *FieldErrors) AddKeyArgs(field, key, msg string, args ...any) {
	if _, ok := f.msgs[field]; ok {
		return
	}
	f.AddKey(field, key, msg)
	if f.args == nil {
		f.args = map[string][]any{}
	}
	f.args[field] = args
}

// Len is how many fields are at fault.
func (f *FieldErrors) Len() int { return len(f.msgs) }

// Err returns an EInvalid Error naming the fields, or nil when there are none.
func (f *FieldErrors) Err() error {
	if f.Len() == 0 {
		return nil
	}
	return f.Error(EInvalid, "some fields are not valid")
}

// Error is an Error of code with message, naming the fields.
func (f *FieldErrors) Error(code, message string) *Error {
	return &Error{Code: code, Message: message, Fields: maps.Clone(f.msgs), FieldKeys: maps.Clone(f.keys),
		FieldArgs: maps.Clone(f.args)}
}

// Wait is the cause of an ETooManyTries error: how long the caller must
// wait before trying again (RetryAfter).
type Wait struct{ D time.Duration }

func (w Wait) Error() string { return "retry after " + w.D.String() }

// RetryAfter is how long err says to wait, rounded up to a second, for a
// Retry-After; 0 when it says nothing of it.
func RetryAfter(err error) time.Duration {
	var w Wait
	if errors.As(err, &w) {
		return w.D.Truncate(time.Second) + time.Second
	}
	return 0
}

// Package services holds clinicrelay's domain types and rules: clinics, slots,
// requests, statuses and the one coded Error. It imports no transport.
package services

import (
	"errors"
	"fmt"
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
)

// Error is the one domain error. Message is safe to show a user; Fields names
// the fields that failed validation.
type Error struct {
	Code    string
	Message string
	Fields  map[string]string
	Err     error // the cause, for logs; never shown to users
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

// FieldErrors collects validation errors by field name.
type FieldErrors map[string]string

// Add records msg for field unless the field already has one.
func (f FieldErrors) Add(field, msg string) {
	if _, ok := f[field]; !ok {
		f[field] = msg
	}
}

// Err returns an EInvalid Error naming the fields, or nil when there are none.
func (f FieldErrors) Err() error {
	if len(f) == 0 {
		return nil
	}
	return &Error{Code: EInvalid, Message: "some fields are not valid", Fields: f}
}

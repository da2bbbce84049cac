// Package httperr is the one table from the domain's error codes
// (services.E*) to HTTP statuses, for the web front and the console alike.
package httperr

import (
	"net/http"

	"github.com/clinicrelay/clinicrelay/services"
)

var statuses = map[string]int{
	services.EInvalid:      http.StatusUnprocessableEntity,
	services.ENotFound:     http.StatusNotFound,
	services.EConflict:     http.StatusConflict,
	services.ELimit:        http.StatusConflict,
	services.EUnavailable:  http.StatusServiceUnavailable,
	services.ETooLarge:     http.StatusRequestEntityTooLarge,
	services.EForbidden:    http.StatusForbidden,
	services.ECodeNeeded:   http.StatusConflict, // nothing taken: the same request with its code will be
	services.EUnauthorized: http.StatusUnauthorized,
	services.ETooManyTries: http.StatusTooManyRequests,
}

// Status is the HTTP status of a domain error code, and whether its message
// may be shown: false for EInternal and any code not in the table, which
// answer 500 with a generic message (the error is logged instead).
func Status(code string) (int, bool) {
	s, ok := statuses[code]
	if !ok {
		return http.StatusInternalServerError, false
	}
	return s, true
}

package fhir

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"

	"github.com/clinicrelay/clinicrelay/services"
)

var errFound = errors.New("found")

// KnowsEmail reports whether a Patient of the PMS has the email
// (connector.PatientDirectory): a search Patient?email=, each result's
// addresses compared as services.CanonicalEmail does.
func (c *Connector) KnowsEmail(ctx context.Context, email string) (bool, error) {
	want := services.PortalEmail(email)
	if want == "" {
		return false, nil
	}
	q := url.Values{"email": {strings.ToLower(strings.TrimSpace(email))}, "_count": {pageSize}}
	err := c.c.search(ctx, "Patient", q, func(raw json.RawMessage) error {
		var p patient
		if json.Unmarshal(raw, &p) != nil {
			return nil
		}
		for _, t := range p.Telecom {
			if t.System == "email" && services.PortalEmail(t.Value) == want {
				return errFound
			}
		}
		return nil
	})
	if errors.Is(err, errFound) {
		return true, nil
	}
	return false, err
}

package fhir

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
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

// PatientDetails are the name, birth date, phone and email of the first
// Patient with the email (connector.PatientRecords).
func (c *Connector) PatientDetails(ctx context.Context, email string) (services.PatientDetails, bool, error) {
	want := services.PortalEmail(email)
	if want == "" {
		return services.PatientDetails{}, false, nil
	}
	var found *patient
	q := url.Values{"email": {want}, "_count": {pageSize}}
	err := c.c.search(ctx, "Patient", q, func(raw json.RawMessage) error {
		var p patient
		if json.Unmarshal(raw, &p) != nil {
			return nil
		}
		for _, t := range p.Telecom {
			if t.System == "email" && services.PortalEmail(t.Value) == want {
				found = &p
				return errFound
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) || found == nil {
		return services.PatientDetails{}, false, err
	}
	d := services.PatientDetails{BirthDate: found.BirthDate}
	if len(found.Name) > 0 {
		n := found.Name[0]
		d.Name = n.Text
		if d.Name == "" {
			d.Name = strings.TrimSpace(strings.Join(append(slices.Clone(n.Given), n.Family), " "))
		}
	}
	for _, t := range found.Telecom {
		switch {
		case t.System == "phone" && d.Phone == "":
			d.Phone = t.Value
		case t.System == "email" && services.PortalEmail(t.Value) == want:
			d.Email = t.Value
		}
	}
	return d, true, nil
}

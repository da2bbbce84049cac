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

// PatientDetails are the name, birth date, phone and email of the one
// Patient with the email (connector.PatientRecords): none when two
// Patients have it (a family's shared address), since the form would show
// one person's details to another.
func (c *Connector) PatientDetails(ctx context.Context, email string) (services.PatientDetails, bool, error) {
	want := services.PortalEmail(email)
	if want == "" {
		return services.PatientDetails{}, false, nil
	}
	var found []patient
	q := url.Values{"email": {want}, "_count": {pageSize}}
	err := c.c.search(ctx, "Patient", q, func(raw json.RawMessage) error {
		var p patient
		if json.Unmarshal(raw, &p) != nil {
			return nil
		}
		for _, t := range p.Telecom {
			if t.System == "email" && services.PortalEmail(t.Value) == want {
				found = append(found, p)
				if len(found) > 1 {
					return errFound // two: enough to know
				}
				return nil
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) || len(found) != 1 {
		return services.PatientDetails{}, false, err
	}
	one := found[0]
	d := services.PatientDetails{BirthDate: one.BirthDate}
	if len(one.Name) > 0 {
		n := one.Name[0]
		d.Name = n.Text
		if d.Name == "" {
			d.Name = strings.TrimSpace(strings.Join(append(slices.Clone(n.Given), n.Family), " "))
		}
	}
	for _, t := range one.Telecom {
		switch {
		case t.System == "phone" && d.Phone == "":
			d.Phone = t.Value
		case t.System == "email" && services.PortalEmail(t.Value) == want:
			d.Email = t.Value
		}
	}
	return d, true, nil
}

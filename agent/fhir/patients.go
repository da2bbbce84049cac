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

// patientsWithEmail are up to most Patients of the PMS with the email: a
// search Patient?email=, each result's addresses compared as
// services.PortalEmail does (the server's own match may be looser).
func (c *Connector) patientsWithEmail(ctx context.Context, want string, most int) ([]patient, error) {
	var found []patient
	q := url.Values{"email": {want}, "_count": {pageSize}}
	err := c.c.search(ctx, "Patient", q, func(raw json.RawMessage) error {
		var p patient
		if json.Unmarshal(raw, &p) != nil {
			return nil
		}
		for _, t := range p.Telecom {
			if t.System == "email" && services.PortalEmail(t.Value) == want {
				if found = append(found, p); len(found) >= most {
					return errFound // enough to know
				}
				return nil
			}
		}
		return nil
	})
	if errors.Is(err, errFound) {
		err = nil
	}
	return found, err
}

// KnowsEmail reports whether a Patient of the PMS has the email
// (connector.PatientDirectory).
func (c *Connector) KnowsEmail(ctx context.Context, email string) (bool, error) {
	want := services.PortalEmail(email)
	if want == "" {
		return false, nil
	}
	found, err := c.patientsWithEmail(ctx, want, 1)
	return len(found) > 0, err
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
	found, err := c.patientsWithEmail(ctx, want, 2)
	if err != nil || len(found) != 1 {
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

package console

import (
	"context"
	"errors"

	bolt "go.etcd.io/bbolt"

	"github.com/clinicrelay/clinicrelay/services"
)

// errFound ends a scan at the first match.
var errFound = errors.New("found")

// KnowsEmail reports whether a request stored at the front desk has the
// email (connector.PatientDirectory): the console's patients are those who
// asked it for a time.
func (c *Console) KnowsEmail(ctx context.Context, email string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	want := services.PortalEmail(email)
	if want == "" {
		return false, nil
	}
	err := c.db.View(func(tx *bolt.Tx) error {
		return c.forEachRecord(tx, func(r *record) error {
			if services.PortalEmail(r.Request.Email) == want {
				return errFound
			}
			return nil
		})
	})
	if errors.Is(err, errFound) {
		return true, nil
	}
	return false, err
}

// PatientDetails are the details of the latest request stored with the
// email (connector.PatientRecords).
func (c *Console) PatientDetails(ctx context.Context, email string) (services.PatientDetails, bool, error) {
	if err := ctx.Err(); err != nil {
		return services.PatientDetails{}, false, err
	}
	want := services.PortalEmail(email)
	var latest *record
	err := c.db.View(func(tx *bolt.Tx) error {
		return c.forEachRecord(tx, func(r *record) error {
			if want != "" && services.PortalEmail(r.Request.Email) == want && (latest == nil || r.ReceivedAt.After(latest.ReceivedAt)) {
				latest = r
			}
			return nil
		})
	})
	if err != nil || latest == nil {
		return services.PatientDetails{}, false, err
	}
	q := latest.Request
	return services.PatientDetails{Name: q.Name, BirthDate: q.BirthDate, Phone: q.Phone, Email: q.Email}, true, nil
}

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

// PatientDetails are the details of the latest request with the email
// that the clinic can stand behind (connector.PatientRecords): one its
// staff booked, or one sent by a verified portal patient. Anyone can type
// an address into a request, so a pending one fills no form; and when such
// requests name two people (a family's shared address), none is given.
func (c *Console) PatientDetails(ctx context.Context, email string) (services.PatientDetails, bool, error) {
	if err := ctx.Err(); err != nil {
		return services.PatientDetails{}, false, err
	}
	want := services.PortalEmail(email)
	var latest *record
	people := map[[2]string]bool{}
	err := c.db.View(func(tx *bolt.Tx) error {
		return c.forEachRecord(tx, func(r *record) error {
			q := r.Request
			if want == "" || services.PortalEmail(q.Email) != want || r.State != services.StateBooked && !q.PortalVerified {
				return nil
			}
			people[[2]string{q.Name, q.BirthDate}] = true
			if latest == nil || r.ReceivedAt.After(latest.ReceivedAt) {
				latest = r
			}
			return nil
		})
	})
	if err != nil || latest == nil || len(people) > 1 {
		return services.PatientDetails{}, false, err
	}
	q := latest.Request
	return services.PatientDetails{Name: q.Name, BirthDate: q.BirthDate, Phone: q.Phone, Email: q.Email}, true, nil
}

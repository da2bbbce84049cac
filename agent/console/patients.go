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

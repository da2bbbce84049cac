package console

import (
	"context"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/clinicrelay/clinicrelay/agent/console/staff"
	"github.com/clinicrelay/clinicrelay/services"
)

// What a signed-in staff user does goes through here: each action checks
// that the user sees the request's provider. Another provider's request is
// ENotFound to a user limited to some providers, in pages and the API
// alike, as if it did not exist.

// entryFor is the request id, if u sees its provider.
func (c *Console) entryFor(ctx context.Context, u staff.User, id string) (Entry, error) {
	if err := ctx.Err(); err != nil {
		return Entry{}, err
	}
	var e Entry
	err := c.db.View(func(tx *bolt.Tx) error {
		rec, err := c.getRecord(tx, id)
		if err == nil {
			e = newEntry(rec)
		}
		return err
	})
	if err == nil && !u.Sees(e.ProviderID) {
		return Entry{}, services.Errorf(services.ENotFound, "no such request")
	}
	return e, err
}

// visibleTo is the entries whose provider u sees.
func visibleTo(u staff.User, list []Entry) []Entry {
	return slices.DeleteFunc(list, func(e Entry) bool { return !u.Sees(e.ProviderID) })
}

// viewAs is the request id with its details, and records that u opened it.
func (c *Console) viewAs(ctx context.Context, u staff.User, id string) (Entry, error) {
	e, err := c.entryFor(ctx, u, id)
	if err == nil {
		c.record(ctx, u.Name, services.AuditRequestViewed, id, "")
	}
	return e, err
}

// listAs is the requests u sees, summed up (summary), and records that the
// list was shown.
func (c *Console) listAs(ctx context.Context, u staff.User, status string) ([]Entry, error) {
	list, err := c.Requests(ctx, status)
	if err != nil {
		return nil, err
	}
	list = visibleTo(u, list)
	for i := range list {
		list[i] = list[i].summary()
	}
	c.record(ctx, u.Name, AuditRequestsListed, "", fmt.Sprintf("%d requests", len(list)))
	return list, nil
}

// decided records u's decision on e, when it was made.
func (c *Console) decided(ctx context.Context, u staff.User, e Entry, err error) (Entry, error) {
	if err == nil {
		c.record(ctx, u.Name, services.AuditRequestDecided, e.ID, e.Status)
	}
	return e, err
}

func (c *Console) confirmAs(ctx context.Context, u staff.User, id string) (Entry, error) {
	if _, err := c.entryFor(ctx, u, id); err != nil {
		return Entry{}, err
	}
	e, err := c.Confirm(ctx, id)
	return c.decided(ctx, u, e, err)
}

func (c *Console) declineAs(ctx context.Context, u staff.User, id, reason string) (Entry, error) {
	if _, err := c.entryFor(ctx, u, id); err != nil {
		return Entry{}, err
	}
	e, err := c.Decline(ctx, id, reason)
	return c.decided(ctx, u, e, err)
}

// proposeAs also needs u to see the provider of the time proposed.
func (c *Console) proposeAs(ctx context.Context, u staff.User, id, slotID string) (Entry, error) {
	if _, err := c.entryFor(ctx, u, id); err != nil {
		return Entry{}, err
	}
	if provider, _, err := services.ParseSlotID(slotID); err == nil && !u.Sees(provider) {
		return Entry{}, fieldError("slot_id", "slot_id is another provider's")
	}
	e, err := c.Propose(ctx, id, slotID)
	return c.decided(ctx, u, e, err)
}

package console

import (
	"context"
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
		rec, err := getRecord(tx, id)
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

func (c *Console) confirmAs(ctx context.Context, u staff.User, id string) (Entry, error) {
	if _, err := c.entryFor(ctx, u, id); err != nil {
		return Entry{}, err
	}
	return c.Confirm(ctx, id)
}

func (c *Console) declineAs(ctx context.Context, u staff.User, id, reason string) (Entry, error) {
	if _, err := c.entryFor(ctx, u, id); err != nil {
		return Entry{}, err
	}
	return c.Decline(ctx, id, reason)
}

// proposeAs also needs u to see the provider of the time proposed.
func (c *Console) proposeAs(ctx context.Context, u staff.User, id, slotID string) (Entry, error) {
	if _, err := c.entryFor(ctx, u, id); err != nil {
		return Entry{}, err
	}
	if provider, _, err := services.ParseSlotID(slotID); err == nil && !u.Sees(provider) {
		return Entry{}, fieldError("slot_id", "slot_id is another provider's")
	}
	return c.Propose(ctx, id, slotID)
}

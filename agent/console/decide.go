package console

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"github.com/clinicrelay/clinicrelay/services"
)

// MaxReasonLen is the longest decline reason, in characters.
const MaxReasonLen = 500

// Confirm books the pending request id on its slot.
func (c *Console) Confirm(ctx context.Context, id string) (Entry, error) {
	return c.decide(ctx, id, func(_ *bolt.Tx, rec *record) error {
		rec.State = services.StateBooked
		return nil
	})
}

// Decline declines the pending request id and frees its slot. The reason is
// shown to the patient: 1 to MaxReasonLen characters.
func (c *Console) Decline(ctx context.Context, id, reason string) (Entry, error) {
	reason = strings.TrimSpace(reason)
	switch {
	case reason == "":
		return Entry{}, fieldError("reason", "reason is required")
	case utf8.RuneCountInString(reason) > MaxReasonLen:
		return Entry{}, fieldError("reason", fmt.Sprintf("reason must be at most %d characters", MaxReasonLen))
	case services.PlainText("reason", reason, MaxReasonLen) != nil:
		// The relay takes a reason of one plain line (its STATUS rule).
		return Entry{}, fieldError("reason", "reason must be plain text on one line, without control or bidi characters")
	}
	return c.decide(ctx, id, func(tx *bolt.Tx, rec *record) error {
		rec.State, rec.DeclineReason = services.StateDeclined, reason
		return release(tx, rec.Request.SlotID, rec.Request.ID)
	})
}

// Propose offers the patient slotID, a currently free slot, instead of the
// requested one: the requested slot is freed and slotID is held.
func (c *Console) Propose(ctx context.Context, id, slotID string) (Entry, error) {
	if _, _, err := services.ParseSlotID(slotID); err != nil {
		return Entry{}, fieldError("slot_id", "slot_id is not a slot")
	}
	return c.decide(ctx, id, func(tx *bolt.Tx, rec *record) error {
		if err := c.checkFree(tx, slotID); err != nil {
			return err
		}
		if err := release(tx, rec.Request.SlotID, rec.Request.ID); err != nil {
			return err
		}
		rec.State, rec.ProposedSlot = services.StateProposed, slotID
		return tx.Bucket(bucketTaken).Put([]byte(slotID), []byte(rec.Request.ID))
	})
}

// decide applies a decision to a pending request, queues its outcome for
// publication and notifies Changed.
func (c *Console) decide(ctx context.Context, id string, apply func(*bolt.Tx, *record) error) (Entry, error) {
	if err := ctx.Err(); err != nil {
		return Entry{}, err
	}
	var rec *record
	err := c.db.Update(func(tx *bolt.Tx) error {
		var err error
		if rec, err = c.getRecord(tx, id); err != nil {
			return err
		}
		if rec.State != services.StateDelivered {
			return services.Errorf(services.EConflict, "request is already %s", rec.State)
		}
		if err := apply(tx, rec); err != nil {
			return err
		}
		rec.DecidedAt, rec.Published = c.now(), false
		if err := tx.Bucket(bucketOutbox).Put([]byte(id), nil); err != nil {
			return err
		}
		return c.putRecord(tx, rec)
	})
	if err != nil {
		var e *services.Error
		if errors.As(err, &e) {
			return Entry{}, err
		}
		return Entry{}, fmt.Errorf("console: decide request %s: %w", id, err)
	}
	c.log.Info("request decided", "request_id", id, "state", rec.State)
	c.notifySlots(rec.Request.SlotID, rec.ProposedSlot)
	return newEntry(rec), nil
}

// checkFree reports an error unless slotID is one of its provider's slots,
// starts in the future and is not held by any request.
func (c *Console) checkFree(tx *bolt.Tx, slotID string) error {
	provider, start, err := services.ParseSlotID(slotID)
	if err != nil {
		return fieldError("slot_id", "slot_id is not a slot")
	}
	if start.Before(c.now()) {
		return fieldError("slot_id", "slot_id starts in the past")
	}
	list, err := readProviders(tx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(list, func(p services.ProviderSchedule) bool { return p.ID == provider })
	if i < 0 {
		return fieldError("slot_id", "slot_id is not a slot of a provider of this clinic")
	}
	_, loc := c.clinicInfo()
	local := start.In(loc)
	day := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, loc)
	slots := list[i].Slots(day, day.AddDate(0, 0, 1), loc)
	if !slices.ContainsFunc(slots, func(s services.Slot) bool { return s.ID == slotID }) {
		return fieldError("slot_id", "slot_id is not in the provider's hours")
	}
	if tx.Bucket(bucketTaken).Get([]byte(slotID)) != nil {
		return services.Errorf(services.EConflict, "slot %s is not free", slotID)
	}
	return nil
}

// PendingOutcomes lists decided requests whose outcome is not yet published,
// oldest decision first.
func (c *Console) PendingOutcomes(ctx context.Context) ([]services.Status, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []services.Status
	err := c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).ForEach(func(k, _ []byte) error {
			rec, err := c.getRecord(tx, string(k))
			if err != nil {
				return err
			}
			out = append(out, rec.status())
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("console: pending outcomes: %w", err)
	}
	slices.SortFunc(out, func(a, b services.Status) int {
		if n := a.UpdatedAt.Compare(b.UpdatedAt); n != 0 {
			return n
		}
		return strings.Compare(a.RequestID, b.RequestID)
	})
	return out, nil
}

// MarkPublished records that st reached STATUS. It does nothing when the
// request's state is no longer st.State, so a newer decision stays pending.
// An unknown request is ENotFound.
func (c *Console) MarkPublished(ctx context.Context, st services.Status) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := c.db.Update(func(tx *bolt.Tx) error {
		rec, err := c.getRecord(tx, st.RequestID)
		if err != nil {
			return err
		}
		if rec.State != st.State || rec.Published {
			return nil
		}
		rec.Published = true
		if err := tx.Bucket(bucketOutbox).Delete([]byte(st.RequestID)); err != nil {
			return err
		}
		return c.putRecord(tx, rec)
	})
	if err != nil {
		return fmt.Errorf("console: mark published %s: %w", st.RequestID, err)
	}
	return nil
}

func (r *record) status() services.Status {
	return services.Status{
		RequestID:    r.Request.ID,
		ClinicID:     r.Request.ClinicID,
		SlotID:       r.Request.SlotID,
		State:        r.State,
		Reason:       r.DeclineReason,
		ProposedSlot: r.ProposedSlot,
		UpdatedAt:    r.DecidedAt,
		Change:       r.Change,
	}
}

// fieldError is an EInvalid error naming one field.
func fieldError(field, msg string) error {
	return &services.Error{Code: services.EInvalid, Message: msg, Fields: map[string]string{field: msg}}
}

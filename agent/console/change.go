package console

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/clinicrelay/clinicrelay/services"
)

// ReasonMoveRefused is the note a patient sees when the new time they chose
// was no longer free at the clinic: the request keeps its time.
const ReasonMoveRefused = services.ReasonMoveRefused

// Apply carries out a patient's change: a cancellation frees the slot; a new
// time frees the old slot, takes the new one and waits for the front desk
// again, except that accepting the time the clinic proposed books it at
// once. Applying a change twice, or one older than the last applied (they
// can arrive out of order), does nothing more. A request not stored yet is
// ENotFound. The outcome, which names the change, is queued for
// publication like a decision.
func (c *Console) Apply(ctx context.Context, ch services.Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var rec *record
	var freed []string
	err := c.db.Update(func(tx *bolt.Tx) error {
		var err error
		if rec, err = c.getRecord(tx, ch.RequestID); err != nil {
			return err
		}
		if !ch.At.After(rec.ChangeAt) {
			return nil // applied already, or older than the last one applied
		}
		old := []string{rec.Request.SlotID, rec.ProposedSlot}
		changed, err := c.apply(tx, rec, ch)
		if err != nil {
			return err
		}
		// The change is applied (or moot) either way: its ID goes with the
		// outcome, which is published again so STATUS shows the clinic has it.
		rec.Change, rec.ChangeAt = ch.ID, ch.At
		if !changed && rec.State == services.StateCancelled {
			return c.putRecord(tx, rec) // nothing to tell: the patient's cancel stands
		}
		freed = append(old, rec.Request.SlotID)
		rec.DecidedAt, rec.Published = c.now(), false
		if err := tx.Bucket(bucketOutbox).Put([]byte(rec.Request.ID), nil); err != nil {
			return err
		}
		return c.putRecord(tx, rec)
	})
	if err != nil {
		var e *services.Error
		if errors.As(err, &e) {
			return err
		}
		return fmt.Errorf("console: apply change to %s: %w", ch.RequestID, err)
	}
	if freed != nil {
		c.log.Info("change applied", "request_id", ch.RequestID, "action", ch.Action, "state", rec.State)
		c.notifySlots(freed...)
	}
	return nil
}

// apply changes rec in tx as services.ChangeEffect says, and reports
// whether it changed.
func (c *Console) apply(tx *bolt.Tx, rec *record, ch services.Change) (bool, error) {
	switch services.ChangeEffect(rec.State, rec.Request.SlotID, rec.ProposedSlot, ch) {
	case services.EffectNone:
		return false, nil
	case services.EffectCancel:
		if err := releaseAll(tx, rec); err != nil {
			return false, err
		}
		rec.State, rec.DeclineReason = services.StateCancelled, ""
		return true, nil
	case services.EffectAccept:
		// The console holds the proposed slot for this request already.
		if err := release(tx, rec.Request.SlotID, rec.Request.ID); err != nil {
			return false, err
		}
		rec.Request.SlotID, rec.ProposedSlot, rec.State = ch.SlotID, "", services.StateBooked
		return true, nil
	}
	if err := c.checkFree(tx, ch.SlotID); err != nil {
		// Not free here: the request keeps its time, and publishing its
		// outcome again puts the patient's status back.
		rec.DeclineReason = ReasonMoveRefused
		return true, nil
	}
	if err := releaseAll(tx, rec); err != nil {
		return false, err
	}
	rec.Request.SlotID, rec.ProposedSlot, rec.DeclineReason = ch.SlotID, "", ""
	rec.State = services.StateDelivered
	return true, tx.Bucket(bucketTaken).Put([]byte(ch.SlotID), []byte(rec.Request.ID))
}

// releaseAll frees the slots rec holds: its own and the one proposed to it.
func releaseAll(tx *bolt.Tx, rec *record) error {
	if err := release(tx, rec.Request.SlotID, rec.Request.ID); err != nil {
		return err
	}
	if rec.ProposedSlot != "" {
		return release(tx, rec.ProposedSlot, rec.Request.ID)
	}
	return nil
}

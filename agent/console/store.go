package console

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// Buckets of the local store. They are private to this file format; they are
// not NATS buckets, so they are not named in subjects.
var (
	bucketProviders = []byte("providers") // keyProviders → JSON []services.ProviderSchedule
	bucketRequests  = []byte("requests")  // request ID → JSON record
	bucketTaken     = []byte("taken")     // slot ID → ID of the request holding it (pending, booked or proposed)
	bucketOutbox    = []byte("outbox")    // request ID → empty, for decisions not yet published

	keyProviders = []byte("list")
)

// ReasonSlotTaken is the decline reason of a request stored for a slot that
// another request already holds.
const ReasonSlotTaken = "slot no longer available"

// record is a stored request with its status in the clinic.
type record struct {
	Request       services.Request `json:"request"`
	State         services.State   `json:"state"` // services.StateDelivered while pending
	DeclineReason string           `json:"decline_reason,omitempty"`
	ProposedSlot  string           `json:"proposed_slot,omitempty"`
	ReceivedAt    time.Time        `json:"received_at"`
	DecidedAt     time.Time        `json:"decided_at,omitzero"`
	Published     bool             `json:"published,omitempty"`
	// Change and ChangeAt are the patient's last change applied: its ID
	// goes with every outcome (services.Status.Change), and an older change
	// arriving late is ignored.
	Change   string    `json:"change,omitempty"`
	ChangeAt time.Time `json:"change_at,omitzero"`
}

func createBuckets(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketProviders, bucketRequests, bucketTaken, bucketOutbox, bucketAudit, bucketRefusals} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("bucket %s: %w", b, err)
			}
		}
		return nil
	})
}

// Store keeps req durably, pending a decision. Storing an ID already stored is
// a no-op that returns nil. When another request already holds req's slot
// (pending, booked, or proposed to a patient), req is stored declined with
// ReasonSlotTaken, so that the decline is published like any other outcome.
func (c *Console) Store(ctx context.Context, req services.Request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := subjects.ValidRequestID(req.ID); err != nil {
		return services.Errorf(services.EInvalid, "%s", err)
	}
	if _, _, err := services.ParseSlotID(req.SlotID); err != nil {
		return err
	}
	var rec *record
	// Batch: the agent stores many requests at once, and concurrent stores
	// share one commit (and one fsync). bbolt may run fn again, so it sets
	// rec afresh each time.
	err := c.db.Batch(func(tx *bolt.Tx) error {
		rec = nil
		if tx.Bucket(bucketRequests).Get([]byte(req.ID)) != nil {
			return nil
		}
		now := c.now()
		rec = &record{Request: req, State: services.StateDelivered, ReceivedAt: now}
		taken := tx.Bucket(bucketTaken)
		if taken.Get([]byte(req.SlotID)) != nil {
			rec.State, rec.DeclineReason, rec.DecidedAt = services.StateDeclined, ReasonSlotTaken, now
			if err := tx.Bucket(bucketOutbox).Put([]byte(req.ID), nil); err != nil {
				return err
			}
		} else if err := taken.Put([]byte(req.SlotID), []byte(req.ID)); err != nil {
			return err
		}
		return c.putRecord(tx, rec)
	})
	if err != nil {
		return fmt.Errorf("console: store request %s: %w", req.ID, err)
	}
	if rec == nil {
		c.log.Debug("request already stored", "request_id", req.ID)
		return nil
	}
	c.log.Info("request stored", "request_id", req.ID, "slot_id", req.SlotID, "state", rec.State)
	c.notifySlots(req.SlotID)
	return nil
}

func (c *Console) getRecord(tx *bolt.Tx, id string) (*record, error) {
	v := tx.Bucket(bucketRequests).Get([]byte(id))
	if v == nil {
		return nil, services.Errorf(services.ENotFound, "no such request")
	}
	return c.decodeRecord([]byte(id), v)
}

func (c *Console) decodeRecord(id, v []byte) (*record, error) {
	plain, err := c.vault.open(id, v)
	if err != nil {
		return nil, fmt.Errorf("open request %s: %w", id, err)
	}
	var rec record
	if err := json.Unmarshal(plain, &rec); err != nil {
		return nil, fmt.Errorf("decode request %s: %w", id, err)
	}
	return &rec, nil
}

func (c *Console) putRecord(tx *bolt.Tx, rec *record) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode request %s: %w", rec.Request.ID, err)
	}
	id := []byte(rec.Request.ID)
	return tx.Bucket(bucketRequests).Put(id, c.vault.seal(id, v))
}

// forEachRecord calls fn for every stored request, in ID order.
func (c *Console) forEachRecord(tx *bolt.Tx, fn func(*record) error) error {
	return tx.Bucket(bucketRequests).ForEach(func(k, v []byte) error {
		rec, err := c.decodeRecord(k, v)
		if err != nil {
			return err
		}
		return fn(rec)
	})
}

// release frees slot if id holds it.
func release(tx *bolt.Tx, slot, id string) error {
	taken := tx.Bucket(bucketTaken)
	if string(taken.Get([]byte(slot))) != id {
		return nil
	}
	return taken.Delete([]byte(slot))
}

func readProviders(tx *bolt.Tx) ([]services.ProviderSchedule, error) {
	list := []services.ProviderSchedule{}
	v := tx.Bucket(bucketProviders).Get(keyProviders)
	if v == nil {
		return list, nil
	}
	if err := json.Unmarshal(v, &list); err != nil {
		return nil, fmt.Errorf("decode providers: %w", err)
	}
	return list, nil
}

func writeProviders(tx *bolt.Tx, list []services.ProviderSchedule) error {
	v, err := json.Marshal(list)
	if err != nil {
		return fmt.Errorf("encode providers: %w", err)
	}
	return tx.Bucket(bucketProviders).Put(keyProviders, v)
}

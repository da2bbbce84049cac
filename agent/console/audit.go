package console

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/clinicrelay/clinicrelay/services"
)

// The console keeps its own audit record: every staff sign-in, opening of a
// request's details and decision, in its store, by the user's name and never
// with patient data. Openings and decisions also go to the relay's AUDIT
// stream through the agent (connector.StaffAuditor), as every agent event
// does: best effort while the agent is connected, logged when lost; the
// local record is the one that is always there.

var (
	bucketAudit = []byte("audit") // big-endian sequence → JSON services.AuditEvent
	// bucketRefusals holds refused sign-ins apart, under a cap of their
	// own: anyone on the LAN can make them, and they must never push the
	// staff's events out.
	bucketRefusals = []byte("audit-refusals")
)

// maxLocalAudit is how many events the console keeps, maxRefusals how many
// refused sign-ins; each new one past its cap drops the oldest. At a few
// hundred a day, years of them.
const (
	maxLocalAudit = 500_000
	maxRefusals   = 50_000
)

// Actions recorded by the console alone (those the relay also gets are
// services.AuditRequestViewed and services.AuditRequestDecided).
const (
	AuditSignedIn        = "signed-in"
	AuditSignInRefused   = "sign-in-refused"
	AuditSignedOut       = "signed-out"
	AuditPasswordChanged = "password-changed"
	AuditRequestsListed  = "requests-listed" // the list of requests (names, times) was shown
)

// SetAuditor is where the console sends openings and decisions besides its
// own record: the agent's audit trail to the relay.
func (c *Console) SetAuditor(a services.Auditor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.auditor = a
}

// record keeps one event of the staff user's, and sends openings and
// decisions on to the relay.
func (c *Console) record(ctx context.Context, user, action, requestID, detail string) {
	cl, _ := c.clinicInfo()
	ev := services.AuditEvent{At: c.now(), Clinic: cl.ID, Action: action, Actor: "staff", User: user,
		RequestID: requestID, Detail: detail}
	c.keep(bucketAudit, maxLocalAudit, ev)
	if !services.IsStaffAction(action) {
		return
	}
	c.mu.Lock()
	a := c.auditor
	c.mu.Unlock()
	if a != nil {
		a.Audit(ctx, ev)
	}
}

// recordRefusal keeps a refused sign-in (user: the name when a user has
// it, else "").
func (c *Console) recordRefusal(ctx context.Context, user, detail string) {
	cl, _ := c.clinicInfo()
	c.keep(bucketRefusals, maxRefusals, services.AuditEvent{At: c.now(), Clinic: cl.ID, Action: AuditSignInRefused,
		Actor: "staff", User: user, Detail: detail})
}

// keep appends ev to bucket, dropping the oldest past max.
func (c *Console) keep(bucket []byte, max uint64, ev services.AuditEvent) {
	v, _ := json.Marshal(ev)
	err := c.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		if seq > max {
			if err := b.Delete(binary.BigEndian.AppendUint64(nil, seq-max)); err != nil {
				return err
			}
		}
		return b.Put(binary.BigEndian.AppendUint64(nil, seq), v)
	})
	if err != nil {
		c.log.Error("audit event not kept", "action", ev.Action, "request_id", ev.RequestID, "err", err)
	}
}

// Audit is the console's record, newest first, at most limit events.
func (c *Console) Audit(ctx context.Context, limit int) ([]services.AuditEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []services.AuditEvent
	err := c.db.View(func(tx *bolt.Tx) error {
		for _, bucket := range [][]byte{bucketAudit, bucketRefusals} {
			cur := tx.Bucket(bucket).Cursor()
			n := 0
			for k, v := cur.Last(); k != nil && n < limit; k, v = cur.Prev() {
				var ev services.AuditEvent
				if err := json.Unmarshal(v, &ev); err != nil {
					return fmt.Errorf("decode audit event %x: %w", k, err)
				}
				out = append(out, ev)
				n++
			}
		}
		return nil
	})
	// Both newest first: merged by time, the newest limit of them.
	slices.SortStableFunc(out, func(a, b services.AuditEvent) int { return b.At.Compare(a.At) })
	if out == nil {
		out = []services.AuditEvent{}
	}
	out = out[:min(len(out), limit)]
	return out, err
}

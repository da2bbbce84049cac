package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// publishOutcomes writes every decided, unpublished outcome to STATUS
// (services.Outcome): held back while STATUS names a patient's change the
// clinic has not applied yet, dropped for a closed request, compare-and-set
// so that a patient's change made meanwhile is never overwritten.
func (a *Agent) publishOutcomes(ctx context.Context) error {
	outs, err := a.conn.PendingOutcomes(ctx)
	if err != nil {
		return err
	}
	bucket := a.status.Bucket()
	pending := map[string]bool{}
	defer a.forgetRefusals(bucket.Name(), func(key string) bool { return pending[key] })
	for _, st := range outs {
		if st.ClinicID != a.clinic || subjects.ValidRequestID(st.RequestID) != nil {
			continue
		}
		key := subjects.StatusKey(a.clinic, st.RequestID)
		pending[key] = true
		cur, step, err := services.Advance(ctx, a.status, a.clinic, st.RequestID, services.Outcome(st), nil)
		switch {
		case errors.Is(err, cjs.ErrRefused):
			// Tried again every time: it stays pending, and the staff see why.
			a.noteRefusal(ctx, bucket, key, "", err)
			continue
		case services.ErrorCode(err) == services.ENotFound:
			a.log.Warn("outcome not published: the request has no status any more", "request_id", st.RequestID,
				"state", st.State)
		case services.ErrorCode(err) == services.EConflict:
			continue // the patient keeps changing it: look again next time
		case err != nil:
			return err
		case step == services.HoldBack:
			a.log.Debug("outcome held back for the patient's change", "request_id", st.RequestID, "state", st.State)
			continue
		case step == services.TooLate:
			a.log.Warn("outcome dropped: the request is closed", "request_id", st.RequestID, "state", st.State,
				"status", cur.State)
		case step == services.Write:
			a.log.Info("outcome published", "request_id", st.RequestID, "state", st.State)
			a.record(ctx, services.AuditOutcomeSet, st.RequestID, string(st.State))
		}
		// Stay: STATUS says so already (a connector that rebuilt its
		// outcomes after a restart): nothing written, nothing audited.
		delete(a.refused, bucket.Name()+"/"+key)
		if err := a.conn.MarkPublished(ctx, st); err != nil {
			return err
		}
	}
	return nil
}

// publishAvailability puts the days whose free slots changed since the last
// put; on the first run it compares with what the bucket already holds.
func (a *Agent) publishAvailability(ctx context.Context) error {
	from := services.Today(a.cfg.Now(), a.loc)
	to := from.AddDate(0, 0, a.cfg.Days)
	providers, slots, err := a.conn.FreeSlots(ctx, from, to, a.loc)
	if err != nil {
		return fmt.Errorf("free slots: %w", err)
	}
	if providers == nil {
		providers = []services.Provider{}
	}
	if err := a.putIfChanged(ctx, a.meta, subjects.ClinicSubKey(a.clinic, subjects.KeyProviders), providers); err != nil {
		return err
	}
	if err := a.putDays(ctx, from, to, slots); err != nil {
		return err
	}
	return a.dropPastDays(ctx, from)
}

// publishDays puts again the given local dates (YYYY-MM-DD) that are within
// the days published, each from the connector's slots of that day alone.
func (a *Agent) publishDays(ctx context.Context, dates map[string]bool) error {
	from := services.Today(a.cfg.Now(), a.loc)
	to := from.AddDate(0, 0, a.cfg.Days)
	for date := range dates {
		d, err := time.Parse(time.DateOnly, date)
		if err != nil || d.Before(from) || !d.Before(to) {
			continue
		}
		_, slots, err := a.conn.FreeSlots(ctx, d, d.AddDate(0, 0, 1), a.loc)
		if err != nil {
			return fmt.Errorf("free slots: %w", err)
		}
		if err := a.putDays(ctx, d, d.AddDate(0, 0, 1), slots); err != nil {
			return err
		}
	}
	return nil
}

// putDays puts each local date of [from, to) with its slots, if changed.
func (a *Agent) putDays(ctx context.Context, from, to time.Time, slots []services.Slot) error {
	days := map[string]*services.Day{}
	for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
		date := d.Format(time.DateOnly)
		days[date] = &services.Day{Clinic: a.clinic, Date: date, Slots: []services.Slot{}}
	}
	for _, s := range slots {
		if d, ok := days[services.Date(s.Start, a.loc)]; ok {
			d.Slots = append(d.Slots, s)
		}
	}
	for date, d := range days {
		// What the relay would refuse is left out, alone: one bad slot
		// from the clinic's system does not lose the whole day.
		b, f := cjs.FitDay(*d)
		a.noteFitted(date, f)
		if err := a.putBytesIfChanged(ctx, a.avail, subjects.AvailabilityKey(a.clinic, date), b); err != nil {
			return err
		}
	}
	return nil
}

// dropPastDays deletes the days before today that this agent published, so
// AVAILABILITY (and the web's copy of it) does not grow forever.
func (a *Agent) dropPastDays(ctx context.Context, today time.Time) error {
	prefix := a.avail.Name() + "/" + subjects.AvailabilityKey(a.clinic, "")
	for k := range a.published {
		date, ok := strings.CutPrefix(k, prefix)
		if !ok || date >= today.Format(time.DateOnly) {
			continue
		}
		if err := a.avail.Delete(ctx, strings.TrimPrefix(k, a.avail.Name()+"/"), 0); err != nil {
			return fmt.Errorf("drop %s: %w", date, err)
		}
		delete(a.published, k)
	}
	for date := range a.fitted {
		if date < today.Format(time.DateOnly) {
			delete(a.fitted, date)
		}
	}
	a.forgetRefusals(a.avail.Name(), func(key string) bool {
		date, ok := strings.CutPrefix(key, subjects.AvailabilityKey(a.clinic, ""))
		return !ok || date >= today.Format(time.DateOnly)
	})
	return nil
}

func (a *Agent) putIfChanged(ctx context.Context, kv *cjs.Bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return a.putBytesIfChanged(ctx, kv, key, b)
}

// putBytesIfChanged puts b under key unless the key holds it already.
func (a *Agent) putBytesIfChanged(ctx context.Context, kv *cjs.Bucket, key string, b []byte) error {
	id := kv.Name() + "/" + key
	if r, ok := a.refused[id]; ok && r.value == string(b) {
		return nil // refused as it is: sent again once it changes
	}
	last, seen := a.published[id]
	if !seen {
		if e, err := kv.Get(ctx, key); err == nil {
			last, seen = string(e.Value), true
		} else if !errors.Is(err, cjs.ErrNotFound) {
			return err
		}
	}
	if seen && last == string(b) {
		a.published[id] = last
		delete(a.refused, id) // the value went back to one the relay took
		return nil
	}
	if _, err := kv.Put(ctx, key, b); errors.Is(err, cjs.ErrRefused) {
		// The other keys go on: one refused day hides no other.
		a.noteRefusal(ctx, kv, key, string(b), err)
		return nil
	} else if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	a.published[id] = string(b)
	delete(a.refused, id)
	return nil
}

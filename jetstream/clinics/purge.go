package clinics

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// Purged says what Purge removed.
type Purged struct {
	Credentials int // agent credentials revoked
	Requests    int // requests still queued for the clinic
	Notices     int // notices to send, reminders scheduled and notices given up on
	Keys        map[string]int
}

// Purge erases everything the relay keeps of clinic: its agents' creds are
// revoked, its queued requests, its notices (reminders scheduled included)
// and its consumer are removed, and every key of it in CLINICS,
// AVAILABILITY, HOLDS, STATUS, PENDING and CONTACTS is purged (each leaves a
// purge marker that names the key and holds no value, so that watchers such
// as the web front drop it at once).
func (a *Admin) Purge(ctx context.Context, id string) (Purged, error) {
	p := Purged{Keys: map[string]int{}}
	if err := subjects.ValidClinicID(id); err != nil {
		return p, services.Errorf(services.EInvalid, "%s", err)
	}
	var c services.Clinic
	if _, err := cjs.GetJSON(ctx, a.profiles(), subjects.ClinicKey(id), &c); err != nil {
		return p, services.Errorf(services.ENotFound, "no clinic %q", id)
	}
	// Revoked first, so that the web front takes no new request for it
	// while the rest is purged.
	c.Revoked = true
	if err := cjs.PutJSON(ctx, a.profiles(), subjects.ClinicKey(id), c); err != nil {
		return p, fmt.Errorf("purge %s: %w", id, err)
	}
	token, n, err := a.Keys.RevokeClinic(id)
	if err != nil {
		return p, err
	}
	if err := PushAccount(ctx, a.Sys, token); err != nil {
		return p, err
	}
	p.Credentials = n
	// Kept with the keys, so that a restore of an older backup purges it again.
	if err := a.Keys.RecordPurge(id); err != nil {
		return p, err
	}
	if err := a.JS.DeleteConsumer(ctx, subjects.StreamRequests, subjects.AgentConsumer(id)); err != nil &&
		!errors.Is(err, jetstream.ErrConsumerNotFound) {
		return p, fmt.Errorf("purge %s: consumer: %w", id, err)
	}
	s, err := a.JS.Stream(ctx, subjects.StreamRequests)
	if err != nil {
		return p, fmt.Errorf("purge %s: %w", id, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subjects.ClinicFilter(id)))
	if err != nil {
		return p, fmt.Errorf("purge %s: %w", id, err)
	}
	for _, c := range info.State.Subjects {
		p.Requests += int(c)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(subjects.ClinicFilter(id))); err != nil {
		return p, fmt.Errorf("purge %s: requests: %w", id, err)
	}
	// Its notices go too: those waiting to be sent, the reminders' schedules
	// (which the server would fire later) and those given up on.
	notify, err := a.JS.Stream(ctx, subjects.StreamNotify)
	if err != nil {
		return p, fmt.Errorf("purge %s: %w", id, err)
	}
	for _, subj := range []string{subjects.Notify("*", id), subjects.NotifyReminder(id, "*")} {
		info, err := notify.Info(ctx, jetstream.WithSubjectFilter(subj))
		if err != nil {
			return p, fmt.Errorf("purge %s: notices: %w", id, err)
		}
		for _, n := range info.State.Subjects {
			p.Notices += int(n)
		}
		if err := notify.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
			return p, fmt.Errorf("purge %s: notices: %w", id, err)
		}
	}
	// CONTACTS before STATUS: the notifier forgets a contact whose status
	// goes, but need not be running.
	for _, b := range []string{subjects.BucketContacts, subjects.BucketAvailability, subjects.BucketHolds,
		subjects.BucketStatus, subjects.BucketClinics, subjects.BucketPending, subjects.BucketPortal,
		subjects.BucketPortalTokens} {
		n, err := a.purgeKeys(ctx, b, id)
		if err != nil {
			return p, err
		}
		p.Keys[b] = n
	}
	return p, a.record(ctx, id, services.AuditClinicPurged, fmt.Sprintf("%d requests", p.Requests))
}

// purgeKeys purges clinic's keys of bucket: "<clinic>.*", and "<clinic>"
// itself in CLINICS.
func (a *Admin) purgeKeys(ctx context.Context, bucket, clinic string) (int, error) {
	kv, err := a.JS.KeyValue(ctx, bucket)
	if err != nil {
		return 0, fmt.Errorf("purge %s: %w", bucket, err)
	}
	filters := []string{subjects.KVKeyUnder(clinic)}
	if bucket == subjects.BucketClinics {
		filters = append(filters, subjects.ClinicKey(clinic))
	}
	l, err := kv.ListKeysFiltered(ctx, filters...)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("purge %s: %w", bucket, err)
	}
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if err := kv.Purge(ctx, k); err != nil {
			return 0, fmt.Errorf("purge %s %s: %w", bucket, k, err)
		}
	}
	return len(keys), nil
}

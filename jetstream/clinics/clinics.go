// Package clinics onboards, lists and revokes clinics: the operator's side
// of CLINICS, the agents' consumers and their credentials.
package clinics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/auth"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// claimsUpdate is the system subject that takes a new account JWT.
const claimsUpdate = "$SYS.REQ.CLAIMS.UPDATE"

// Admin performs operator actions over an APP connection (for streams and
// buckets) and a SYS connection (for account updates).
type Admin struct {
	JS   jetstream.JetStream
	Sys  *nats.Conn
	Keys *auth.Keys
}

// profiles is CLINICS, for reads and writes by key.
func (a *Admin) profiles() *cjs.Bucket { return cjs.NewBucket(a.JS, subjects.BucketClinics) }

// bucket is CLINICS through nats.go's KeyValue, for listing keys.
func (a *Admin) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := a.JS.KeyValue(ctx, subjects.BucketClinics)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", subjects.BucketClinics, err)
	}
	return kv, nil
}

// Add registers c and returns its agent's creds; the agent makes its own
// consumer when it connects (cjs.AgentConsumer).
// Adding a revoked clinic again re-activates it with new credentials.
func (a *Admin) Add(ctx context.Context, c services.Clinic) ([]byte, error) {
	if c.CreatedAt.IsZero() {
		c.CreatedAt = time.Now().UTC()
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(c)
	bucket := a.profiles()
	if _, err := bucket.Create(ctx, subjects.ClinicKey(c.ID), b, 0); err != nil {
		if !errors.Is(err, cjs.ErrRevision) {
			return nil, fmt.Errorf("register %s: %w", c.ID, err)
		}
		var old services.Clinic
		rev, gerr := cjs.GetJSON(ctx, bucket, subjects.ClinicKey(c.ID), &old)
		if gerr != nil || !old.Revoked {
			return nil, services.Errorf(services.EConflict, "clinic %q already exists", c.ID)
		}
		if _, err := bucket.Update(ctx, subjects.ClinicKey(c.ID), b, rev); err != nil {
			return nil, fmt.Errorf("re-register %s: %w", c.ID, err)
		}
	}
	creds, err := a.Keys.AgentCreds(c.ID)
	if err != nil {
		return nil, err
	}
	return creds, a.record(ctx, c.ID, services.AuditCredsIssued, "agent creds")
}

// record audits an operator action, and waits for AUDIT to store it.
func (a *Admin) record(ctx context.Context, clinic, action, detail string) error {
	ev := services.AuditEvent{Clinic: clinic, Action: action, Actor: "operator", Detail: detail}
	if err := (&cjs.Auditor{JS: a.JS}).AuditNow(ctx, ev); err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// RecordOperatorCreds audits that operator creds were issued.
func (a *Admin) RecordOperatorCreds(ctx context.Context) error {
	return a.record(ctx, services.AuditClinicRelay, services.AuditCredsIssued, "operator creds")
}

// List returns every clinic profile, sorted by ID.
func (a *Admin) List(ctx context.Context) ([]services.Clinic, error) {
	kv, err := a.bucket(ctx)
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list clinics: %w", err)
	}
	var out []services.Clinic
	for k := range lister.Keys() {
		if !subjects.IsClinicKey(k) {
			continue
		}
		var c services.Clinic
		if _, err := cjs.GetJSON(ctx, a.profiles(), k, &c); err == nil {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(x, y services.Clinic) int { return strings.Compare(x.ID, y.ID) })
	return out, nil
}

// Revoke marks the clinic revoked and revokes every agent credential issued
// for it; the server disconnects those agents at once and refuses them after.
func (a *Admin) Revoke(ctx context.Context, id string) (int, error) {
	if err := subjects.ValidClinicID(id); err != nil {
		return 0, services.Errorf(services.EInvalid, "%s", err)
	}
	var c services.Clinic
	bucket := a.profiles()
	if _, err := cjs.GetJSON(ctx, bucket, subjects.ClinicKey(id), &c); errors.Is(err, cjs.ErrNotFound) {
		return 0, services.Errorf(services.ENotFound, "no clinic %q", id)
	} else if err != nil {
		return 0, err
	}
	token, n, err := a.Keys.RevokeClinic(id)
	if err != nil {
		return 0, err
	}
	if err := PushAccount(ctx, a.Sys, token); err != nil {
		return 0, err
	}
	c.Revoked = true
	if err := cjs.PutJSON(ctx, bucket, subjects.ClinicKey(id), c); err != nil {
		return n, err
	}
	return n, a.record(ctx, id, services.AuditClinicRevoked, "")
}

// PushAccount hands an account JWT to the server's full resolver, which
// stores it and applies it (revocations disconnect users at once).
func PushAccount(ctx context.Context, sys *nats.Conn, token string) error {
	msg, err := sys.RequestWithContext(ctx, claimsUpdate, []byte(token))
	if err != nil {
		return fmt.Errorf("push account jwt: %w", err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("push account jwt: %w", err)
	}
	if resp.Error != nil {
		return fmt.Errorf("push account jwt: %s (%d)", resp.Error.Description, resp.Error.Code)
	}
	return nil
}

// Show returns the clinic's profile and the seal key its agent published
// ("" before its agent first connected).
func (a *Admin) Show(ctx context.Context, id string) (services.Clinic, string, error) {
	var c services.Clinic
	if err := subjects.ValidClinicID(id); err != nil {
		return c, "", services.Errorf(services.EInvalid, "%s", err)
	}
	if _, err := cjs.GetJSON(ctx, a.profiles(), subjects.ClinicKey(id), &c); errors.Is(err, cjs.ErrNotFound) {
		return c, "", services.Errorf(services.ENotFound, "no clinic %q", id)
	} else if err != nil {
		return c, "", err
	}
	var key string
	if _, err := cjs.GetJSON(ctx, a.profiles(), subjects.ClinicSubKey(id, subjects.KeySealKey), &key); err != nil &&
		!errors.Is(err, cjs.ErrNotFound) {
		return c, "", err
	}
	return c, key, nil
}

// Seen is the clinic's last heartbeat; false when its agent never wrote one.
func (a *Admin) Seen(ctx context.Context, id string) (services.Heartbeat, bool, error) {
	var hb services.Heartbeat
	_, err := cjs.GetJSON(ctx, a.profiles(), subjects.ClinicSubKey(id, subjects.KeySeen), &hb)
	if errors.Is(err, cjs.ErrNotFound) {
		return hb, false, nil
	}
	return hb, err == nil, err
}

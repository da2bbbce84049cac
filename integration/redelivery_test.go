package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/connector"
	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// dieAfterStore stores the first request, then hangs as a crashed agent
// would: the request is in the clinic's store but never acked.
type dieAfterStore struct {
	connector.Connector
	stored, release chan struct{}
}

func (d *dieAfterStore) Store(ctx context.Context, req services.Request) error {
	if err := d.Connector.Store(ctx, req); err != nil {
		return err
	}
	close(d.stored)
	<-d.release
	return context.Canceled
}

// TestRedelivery: an agent that dies after storing but before acking gets
// the request again (here, its successor does) and it is stored once.
func TestRedelivery(t *testing.T) {
	env := NewEnv(t)
	creds := env.MustAddClinic("oak")
	first := env.MustStartAgent(creds, nil, nil)
	con := first.Console
	web := newClient(t, env.Relay.HTTPURL())
	slot := firstSlot(t, web, "oak")

	// Swap in the dying connector over the same console store.
	first.Stop()
	dying := &dieAfterStore{Connector: con, stored: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(func() { close(dying.release) })
	crashed := env.MustStartAgent(creds, dying, con)

	var created map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/oak/requests", validRequest(slot), &created); code != 201 {
		t.Fatalf("create: %d", code)
	}
	select {
	case <-dying.stored:
	case <-time.After(10 * time.Second):
		t.Fatal("request never reached the agent")
	}
	crashed.cancel()
	crashed.dialer.Kill()

	env.MustStartAgent(creds, nil, con)
	stream, err := env.Admin.JS.Stream(context.Background(), subjects.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	poll.For(t, 15*time.Second, func() error {
		info, err := stream.Info(context.Background())
		if err != nil {
			return err
		}
		if info.State.Msgs != 0 {
			return fmt.Errorf("%d requests not acked yet", info.State.Msgs)
		}
		return nil
	})
	all, err := con.Requests(context.Background(), console.StatusAll)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].ID != created["id"] {
		t.Fatalf("console holds %d requests, want exactly the one: %+v", len(all), all)
	}
	awaitState(t, web, created["token"], services.StateDelivered)
}

// TestOfflineClinic: requests made while the clinic's agent is away wait in
// REQUESTS, the site says when the clinic last synced, and the agent drains
// the backlog when it comes back.
func TestOfflineClinic(t *testing.T) {
	env := NewEnv(t)
	creds := env.MustAddClinic("pine")
	first := env.MustStartAgent(creds, nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	firstSlot(t, web, "pine")
	first.Stop()

	var slots slotsResp
	if code := web.JSON("GET", "/api/v1/clinics/pine/slots?from="+time.Now().Format(time.DateOnly)+"&to="+
		time.Now().AddDate(0, 0, 13).Format(time.DateOnly), nil, &slots); code != 200 || len(slots.Slots) < 3 {
		t.Fatalf("slots: %d, %d offered", code, len(slots.Slots))
	}
	var tokens []string
	for _, s := range slots.Slots[:3] {
		var created map[string]string
		if code := web.JSON("POST", "/api/v1/clinics/pine/requests", validRequest(s.ID), &created); code != 201 {
			t.Fatalf("create while offline: %d", code)
		}
		tokens = append(tokens, created["token"])
	}
	for _, tok := range tokens {
		awaitState(t, web, tok, services.StateReceived)
	}
	env.MustStartAgent(creds, nil, first.Console)
	for _, tok := range tokens {
		awaitState(t, web, tok, services.StateDelivered)
	}
	pending, _ := first.Console.Requests(context.Background(), console.StatusPending)
	if len(pending) != 3 {
		t.Fatalf("console has %d pending after the backlog, want 3", len(pending))
	}
}

// TestAgent_Reconnects: when the agent's connection drops, it dials again on
// its own and goes on draining requests.
func TestAgent_Reconnects(t *testing.T) {
	env := NewEnv(t)
	ag := env.MustStartAgent(env.MustAddClinic("alder"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	slot := firstSlot(t, web, "alder")
	ag.dialer.Kill()
	var created map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/alder/requests", validRequest(slot), &created); code != 201 {
		t.Fatalf("create: %d", code)
	}
	awaitState(t, web, created["token"], services.StateDelivered)
	ag.dialer.mu.Lock()
	dials := len(ag.dialer.conns)
	ag.dialer.mu.Unlock()
	if dials < 2 {
		t.Errorf("agent dialled %d times, want a reconnect", dials)
	}
}

// TestDelivery_WithoutRevisions: a request queued without the revision
// headers (by a relay from before them) still moves its status to delivered
// and releases its hold, reading them first.
func TestDelivery_WithoutRevisions(t *testing.T) {
	env := NewEnv(t)
	creds := env.MustAddClinic("ash")
	ag := env.MustStartAgent(creds, nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	slot := firstSlot(t, web, "ash")
	ctx := context.Background()
	reqs := cjs.NewRequests(env.Admin.JS)
	token := services.NewToken()
	req := services.Request{ID: services.RequestIDFor(token), ClinicID: "ash", SlotID: slot, Name: "Bo Patient",
		BirthDate: "1990-01-01", Phone: "416-555-0101", Email: "bo@example.org", Consent: true, CreatedAt: time.Now().UTC()}
	if _, err := reqs.Hold(ctx, "ash", slot, req.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := reqs.PutStatus(ctx, services.Status{RequestID: req.ID, ClinicID: "ash", SlotID: slot,
		State: services.StateReceived, UpdatedAt: req.CreatedAt}); err != nil {
		t.Fatal(err)
	}
	pub, _ := agentSealKey(t, creds).PublicKey()
	sealed, err := services.SealRequest(req, pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := reqs.PublishRequest(ctx, services.Queued{RequestID: req.ID, ClinicID: "ash", SlotID: slot, Sealed: sealed}); err != nil {
		t.Fatal(err)
	}
	awaitState(t, web, services.StatusToken("ash", token), services.StateDelivered)
	holds := cjs.NewBucket(env.Admin.JS, subjects.BucketHolds)
	poll.For(t, 10*time.Second, func() error {
		if _, err := holds.Get(ctx, subjects.HoldKey("ash", slot)); !errors.Is(err, cjs.ErrNotFound) {
			return fmt.Errorf("hold still there: %v", err)
		}
		return nil
	})
	if all, _ := ag.Console.Requests(ctx, console.StatusAll); len(all) != 1 || all[0].ID != req.ID {
		t.Fatalf("console holds %+v, want the one request", all)
	}
}

package integration

import (
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/services"
)

// TestFault_AgentKilledMidDrain: an agent draining a backlog is killed with
// requests stored but not acked and more in flight; a new agent on the same
// console store finishes the drain. Every request is stored exactly once and
// REQUESTS ends empty.
func TestFault_AgentKilledMidDrain(t *testing.T) {
	const backlog, before = 300, 100
	env := NewEnv(t)
	creds := env.MustAddClinic("rowan")
	con := openDenseConsole(t)
	web := newClient(t, env.Relay.HTTPURL())

	first := startAgent(t, env.Relay.NATSURL(), creds, con)
	slots := awaitSlots(t, web, "rowan", backlog)
	first.stop(t)
	created := postAll(t, env.Relay.HTTPURL(), "rowan", slots[:backlog], 4)

	start := time.Now()
	dying := newCountingConnector(con, before)
	crashing := startAgent(t, env.Relay.NATSURL(), creds, dying)
	select {
	case <-dying.hung:
	case <-time.After(20 * time.Second):
		t.Fatal("the agent did not get past its first requests")
	}
	crashing.crash(t)
	mid := len(consoleIDs(t, con))
	if mid <= before || mid >= backlog {
		t.Fatalf("console has %d of %d at the crash, want some past %d but not all", mid, backlog, before)
	}

	successor := newCountingConnector(con, 0)
	startAgent(t, env.Relay.NATSURL(), creds, successor)
	awaitDrained(t, env.Admin.JS, 20*time.Second)
	if extra := checkExactlyOnce(t, consoleIDs(t, con), created); extra != 0 {
		t.Errorf("console holds %d requests nobody made", extra)
	}
	awaitStates(t, web, created, services.StateDelivered, 10*time.Second)
	calls, ids := successor.Calls()
	t.Logf("%d requests: at the crash the console had %d (%d stored then hung unacked) and %d were acked; "+
		"the successor had %d deliveries for %d requests, %d of them already stored; drained in %s",
		backlog, mid, mid-before, backlog-ids, calls, ids, ids-(backlog-mid), time.Since(start).Round(time.Millisecond))
	if ids < backlog-mid {
		t.Errorf("successor saw %d requests, but %d were not stored yet", ids, backlog-mid)
	}
}

// TestFault_OfflineBacklog: 1,000 requests arrive while the clinic's agent is
// away; when it returns it drains them all and every status advances to
// delivered.
func TestFault_OfflineBacklog(t *testing.T) {
	const n = 1000
	env := NewEnv(t)
	creds := env.MustAddClinic("hazel")
	con := openDenseConsole(t)
	web := newClient(t, env.Relay.HTTPURL())

	first := startAgent(t, env.Relay.NATSURL(), creds, con)
	slots := awaitSlots(t, web, "hazel", n)
	first.stop(t)

	start := time.Now()
	created := postAll(t, env.Relay.HTTPURL(), "hazel", slots[:n], 8)
	posted := time.Since(start)
	awaitStates(t, web, created, services.StateReceived, 10*time.Second)

	start = time.Now()
	startAgent(t, env.Relay.NATSURL(), creds, con)
	awaitStates(t, web, created, services.StateDelivered, 60*time.Second)
	drained := time.Since(start)
	awaitDrained(t, env.Admin.JS, 10*time.Second)
	if extra := checkExactlyOnce(t, consoleIDs(t, con), created); extra != 0 {
		t.Errorf("console holds %d requests nobody made", extra)
	}
	t.Logf("%d requests posted while offline in %s (%.0f/s); all delivered %s after the agent returned",
		n, posted.Round(time.Millisecond), n/posted.Seconds(), drained.Round(time.Millisecond))
}

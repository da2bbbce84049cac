package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/jetstream/auth"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// violations collects the permission violations the server reports to a connection.
type violations struct {
	mu   sync.Mutex
	errs []string
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrPermissionViolation) {
		v.mu.Lock()
		v.errs = append(v.errs, err.Error())
		v.mu.Unlock()
	}
}

func (v *violations) await(t *testing.T, kind, subject string) {
	t.Helper()
	want := strings.ToLower(fmt.Sprintf("permissions violation for %s to %q", kind, subject))
	poll.For(t, 3*time.Second, func() error {
		v.mu.Lock()
		defer v.mu.Unlock()
		for _, e := range v.errs {
			if strings.Contains(strings.ToLower(e), want) {
				return nil
			}
		}
		return fmt.Errorf("no %q among %q", want, v.errs)
	})
}

func agentConn(t *testing.T, env *Env, creds []byte, v *violations) *nats.Conn {
	t.Helper()
	clinic, _ := auth.CredsClinic(creds)
	co, _ := auth.CredsOption(creds)
	nc, err := nats.Connect(env.Relay.NATSURL(), co, nats.CustomInboxPrefix(subjects.AgentInboxPrefix(clinic)),
		nats.ErrorHandler(v.handler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestIsolation: clinic B's credentials reach nothing of clinic A's; every
// attempt is a permission violation reported by the server.
func TestIsolation(t *testing.T) {
	env := NewEnv(t)
	env.MustStartAgent(env.MustAddClinic("aspen"), nil, nil)
	v := &violations{}
	nc := agentConn(t, env, env.MustAddClinic("cedar"), v)
	ctx := context.Background()

	// Control: cedar's own grants work, so the denials below are not an
	// artefact of a broken connection.
	js, _ := jetstream.New(nc)
	own := cjs.NewAgentBucket(js, subjects.BucketAvailability, "cedar")
	day := time.Now().UTC().Format(time.DateOnly)
	value := `{"clinic":"cedar","date":"` + day + `","slots":[]}`
	if _, err := own.Put(ctx, "cedar."+day, []byte(value)); err != nil {
		t.Fatalf("own availability: %v", err)
	}
	if e, err := own.Get(ctx, "cedar."+day); err != nil || string(e.Value) != value {
		t.Fatalf("own availability read back: %q %v", e.Value, err)
	}
	if _, err := cjs.AskAgentConsumer(ctx, js, "cedar"); err != nil {
		t.Fatalf("own consumer, from the relay: %v", err)
	}

	pubs := []struct{ name, subject, body string }{
		{"pull A's requests", "$JS.API.CONSUMER.MSG.NEXT.REQUESTS.agent_aspen", `{"batch":1}`},
		{"A's consumer info", "$JS.API.CONSUMER.INFO.REQUESTS.agent_aspen", ""},
		{"ack A's messages", "$JS.ACK.REQUESTS.agent_aspen.1.1.1.1.0", ""},
		{"write A's availability", "$KV.AVAILABILITY.aspen.2030-01-01", `{}`},
		{"read A's availability", "$JS.API.DIRECT.GET.KV_AVAILABILITY.$KV.AVAILABILITY.aspen.2030-01-01", ""},
		{"write A's status", "$KV.STATUS.aspen.00000000000000000000000000000000", `{}`},
		{"read A's status", "$JS.API.DIRECT.GET.KV_STATUS.$KV.STATUS.aspen.00000000000000000000000000000000", ""},
		{"direct get body form, status", "$JS.API.DIRECT.GET.KV_STATUS", `{"last_by_subj":"$KV.STATUS.aspen.x"}`},
		{"direct get body form, availability", "$JS.API.DIRECT.GET.KV_AVAILABILITY", `{"last_by_subj":"$KV.AVAILABILITY.aspen.2030-01-01"}`},
		{"stream msg get", "$JS.API.STREAM.MSG.GET.KV_STATUS", `{"last_by_subj":"$KV.STATUS.aspen.x"}`},
		{"own consumer on A's subject", "$JS.API.CONSUMER.CREATE.REQUESTS.spy.clinic.aspen.requests", `{}`},
		{"create A's consumer", "$JS.API.CONSUMER.CREATE.REQUESTS.agent_aspen.clinic.aspen.>", `{}`},
		{"own consumer name, A's filter", "$JS.API.CONSUMER.CREATE.REQUESTS.agent_cedar.clinic.aspen.>", `{}`},
		{"unfiltered create", "$JS.API.CONSUMER.CREATE.REQUESTS.agent_cedar", `{}`},
		{"own consumer as a push consumer to A's inbox", "$JS.API.CONSUMER.CREATE.REQUESTS.agent_cedar.clinic.cedar.>",
			`{"stream_name":"REQUESTS","config":{"durable_name":"agent_cedar","filter_subject":"clinic.cedar.>","deliver_subject":"_INBOX_aspen.x","ack_policy":"explicit"}}`},
		{"ask the relay for A's consumer", "relay.agents.aspen.consumer", ""},
		{"rewrite A's profile", "$KV.CLINICS.aspen", `{}`},
		{"rewrite own profile", "$KV.CLINICS.cedar", `{}`},
		{"publish a request", "clinic.aspen.requests", `{}`},
		{"publish an intake form to A", subjects.ClinicQueue("aspen", subjects.KindIntake), `{}`},
		{"publish an intake form to own queue", subjects.ClinicQueue("cedar", subjects.KindIntake), `{}`},
		{"A's notices by another channel", subjects.Notify("sms", "aspen"), `{}`},
		{"list status keys", "$JS.API.STREAM.INFO.KV_STATUS", `{"subjects_filter":">"}`},
		{"list availability keys", "$JS.API.STREAM.INFO.KV_AVAILABILITY", `{"subjects_filter":">"}`},
		{"hold A's slot", "$KV.HOLDS.aspen.dr-lee_20300101T1400Z", `{}`},
		{"deep key under own clinic", "$KV.AVAILABILITY.cedar.a.b", `{}`},
		// Every stream-stored subject is out of reach, the clinic's own
		// included: a header such as Nats-Rollup acts on the whole stream.
		{"write own availability directly", "$KV.AVAILABILITY.cedar.2030-01-01", `{}`},
		{"write own status directly", "$KV.STATUS.cedar.00000000000000000000000000000000", `{}`},
		{"write own heartbeat directly", "$KV.CLINICS.cedar.seen", `{}`},
		{"release own hold directly", "$KV.HOLDS.cedar.dr-lee_20300101T1400Z", ``},
		{"own audit trail directly", "audit.cedar.request-opened", `{}`},
		{"A's audit trail", "audit.aspen.request-opened", `{}`},
		{"write A's keys through the relay", subjects.AgentWrite("aspen", subjects.BucketAvailability, "2030-01-01"), `{}`},
		{"A's audit through the relay", subjects.AgentAudit("aspen"), `{}`},
		{"notices", "notify.email.aspen", `{}`},
		// The portal: A's checks and answers, and every portal record,
		// A's and its own (the relay keeps them; agents only answer).
		{"publish a portal check to A", subjects.PortalCheck("aspen"), `{}`},
		{"answer A's portal checks", subjects.AgentPortalAnswer("aspen"), `{"check":"00000000000000000000000000000000","known":true}`},
		{"read A's portal account", "$JS.API.DIRECT.GET.KV_PORTAL.$KV.PORTAL.aspen.00000000000000000000000000000000", ""},
		{"read own portal records", "$JS.API.DIRECT.GET.KV_PORTAL_TOKENS.$KV.PORTAL_TOKENS.cedar.s00000000000000000000000000000000", ""},
		{"write own portal account", "$KV.PORTAL.cedar.00000000000000000000000000000000", `{}`},
		// The relay's own: its write probe (RELAY_HEALTH), and the system
		// requests that list every connection of the account (the warden's).
		{"the relay's health probe", "relay.health.x", `{}`},
		{"every connection of the account", "$SYS.REQ.ACCOUNT.PING.CONNZ", `{}`},
		{"every connection of the server", "$SYS.REQ.SERVER.PING.CONNZ", `{}`},
	}
	for _, p := range pubs {
		t.Run(p.name, func(t *testing.T) {
			if _, err := nc.Request(p.subject, []byte(p.body), 300*time.Millisecond); err == nil {
				t.Fatalf("%s answered", p.subject)
			}
			v.await(t, "publish", p.subject)
		})
	}
	for _, subj := range []string{"_INBOX.>", "_INBOX_aspen.>", "_INBOX_web_front.>", "clinic.aspen.requests", "$KV.STATUS.>"} {
		t.Run("subscribe "+subj, func(t *testing.T) {
			if _, err := nc.SubscribeSync(subj); err != nil {
				t.Fatal(err)
			}
			v.await(t, "subscription", subj)
		})
	}
}

// TestRevoke: `relay clinic revoke` on the running relay cuts the agent off
// at once, and its creds cannot connect again.
func TestRevoke(t *testing.T) {
	env := NewEnv(t)
	creds := env.MustAddClinic("elm")
	co, _ := auth.CredsOption(creds)
	closed := make(chan error, 1)
	nc, err := nats.Connect(env.Relay.NATSURL(), co, nats.CustomInboxPrefix("_INBOX_elm"), nats.MaxReconnects(0),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { closed <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	var out, errOut strings.Builder
	if code := runRelay(t, []string{"clinic", "revoke", "elm", "--data", env.DataDir}, &out, &errOut); code != 0 {
		t.Fatalf("revoke: exit %d: %s", code, errOut.String())
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("revoked agent still connected")
	}
	_, err = nats.Connect(env.Relay.NATSURL(), co)
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Fatalf("reconnect with revoked creds: %v, want authorization violation", err)
	}
	// The patients' site no longer offers the clinic.
	var list []map[string]any
	poll.For(t, 5*time.Second, func() error {
		newClient(t, env.Relay.HTTPURL()).JSON("GET", "/api/v1/clinics", nil, &list)
		for _, c := range list {
			if c["id"] == "elm" {
				return fmt.Errorf("elm still listed")
			}
		}
		return nil
	})
}

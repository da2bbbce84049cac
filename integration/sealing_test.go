package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// TestSealing: a queued request read with operator access shows routing IDs
// only; the clinic's agent opens it; a tampered copy is refused, terminated,
// and its patient told the clinic could not read it.
func TestSealing(t *testing.T) {
	env := NewEnv(t)
	creds := env.MustAddClinic("fir")
	ag := env.MustStartAgent(creds, nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	slots := awaitSlots(t, web, "fir", 2)
	ag.Stop()
	req := validRequest(slots[0])
	if code := web.JSON("POST", "/api/v1/clinics/fir/requests", req, nil); code != 201 {
		t.Fatalf("create: %d", code)
	}
	ctx := context.Background()
	s, err := env.Admin.JS.Stream(ctx, subjects.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, subjects.Requests("fir"))
	if err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	raw.Write(m.Data)
	for k, v := range m.Header {
		fmt.Fprintf(&raw, "%s: %s\n", k, strings.Join(v, ","))
	}
	for _, v := range []string{"Ada Patient", "ada@example.org", "416 555 0100", "sore knee", "1980-04-02"} {
		if bytes.Contains(raw.Bytes(), []byte(v)) {
			t.Errorf("the queued request shows %q to the operator", v)
		}
	}

	// A copy with one byte changed, under a request ID of its own.
	token := services.NewToken()
	bad := nats.NewMsg(subjects.Requests("fir"))
	for k, v := range m.Header {
		bad.Header[k] = append([]string(nil), v...)
	}
	bad.Header.Del(nats.MsgIdHdr) // else the stream drops it as a duplicate
	bad.Header.Set(subjects.HeaderRequestID, services.RequestIDFor(token))
	bad.Header.Set(subjects.HeaderSlotID, slots[1])
	bad.Data = bytes.Clone(m.Data)
	bad.Data[len(bad.Data)/2] ^= 1
	if _, err := env.Admin.JS.PublishMsg(ctx, bad); err != nil {
		t.Fatal(err)
	}
	// Its "received" status, as the web makes for every request it takes
	// (an agent updates statuses, never makes them).
	received, _ := json.Marshal(services.Status{RequestID: services.RequestIDFor(token), ClinicID: "fir", SlotID: slots[1],
		State: services.StateReceived, UpdatedAt: time.Now().UTC()})
	if _, err := cjs.NewBucket(env.Admin.JS, subjects.BucketStatus).Put(ctx,
		subjects.StatusKey("fir", services.RequestIDFor(token)), received); err != nil {
		t.Fatal(err)
	}

	back := env.MustStartAgent(creds, nil, ag.Console)
	awaitState(t, web, services.StatusToken("fir", token), services.StateDeclined)
	poll.For(t, 10*time.Second, func() error {
		all, err := back.Console.Requests(ctx, console.StatusAll)
		if err != nil {
			return err
		}
		if len(all) != 1 || all[0].Name != "Ada Patient" {
			return fmt.Errorf("console holds %+v, want the one sealed request, opened", all)
		}
		return nil
	})
	poll.For(t, 10*time.Second, func() error {
		info, err := s.Info(ctx)
		if err != nil || info.State.Msgs != 0 {
			return fmt.Errorf("REQUESTS holds %d (%v), want 0: the tampered one must be terminated", info.State.Msgs, err)
		}
		return nil
	})
}

// TestCommands_ClinicShow: `relay clinic show` prints the fingerprint of the
// key the relay seals to, the same the clinic's console shows; before the
// agent connects it says there is none.
func TestCommands_ClinicShow(t *testing.T) {
	env := NewEnv(t)
	creds := env.MustAddClinic("ash")
	_, out, _ := relayCmd(t, "clinic", "show", "ash", "--data", env.DataDir)
	if !strings.Contains(out, "none yet") || !strings.Contains(out, "never seen") {
		t.Errorf("before the agent: %q, want no seal key and no heartbeat", out)
	}
	key := agentSealKey(t, creds)
	pub, _ := key.PublicKey()
	con := openDemoConsole(t, console.Config{SealKey: pub})
	a := env.MustStartAgent(creds, nil, con)
	web := newClient(t, env.Relay.HTTPURL())
	firstSlot(t, web, "ash")
	fp := services.Fingerprint(pub)
	poll.For(t, 5*time.Second, func() error { // the heartbeat follows the first publication
		code, out, stderr := relayCmd(t, "clinic", "show", "ash", "--data", env.DataDir)
		if code != 0 || !strings.Contains(out, fp) || !strings.Contains(out, pub) || !strings.Contains(out, "console connector, last seen") {
			return fmt.Errorf("show: %d %q %s; want key %s, fingerprint %s, the agent's heartbeat", code, out, stderr, pub, fp)
		}
		return nil
	})
	page := a.Desk(t)
	if _, _, body := page.Do("GET", "/", "", nil); !strings.Contains(body, fp) {
		t.Errorf("the console does not show the fingerprint %s", fp)
	}
	if code, _, _ := relayCmd(t, "clinic", "show", "nope", "--data", env.DataDir); code != 1 {
		t.Errorf("show of an unknown clinic: exit %d, want 1", code)
	}
}

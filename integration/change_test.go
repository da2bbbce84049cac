package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// request books slot at clinic through the API and waits until the clinic's
// agent has it; it returns the request ID and the status token.
func request(t *testing.T, web *Client, clinic, slot string) (id, token string) {
	t.Helper()
	var created map[string]string
	if code := web.JSON("POST", "/api/v1/clinics/"+clinic+"/requests", validRequest(slot), &created); code != 201 {
		t.Fatalf("create: %d %v", code, created)
	}
	awaitState(t, web, created["token"], "delivered")
	return created["id"], created["token"]
}

// postForm gets page (for its CSRF token) and posts form to action.
func postForm(t *testing.T, web *Client, page, action string, form url.Values) (int, string) {
	t.Helper()
	code, _, body := web.Do("GET", page, "", nil)
	m := csrfRE.FindStringSubmatch(body)
	if code != 200 || m == nil {
		t.Fatalf("GET %s: %d, csrf token found: %v", page, code, m != nil)
	}
	form.Set("_csrf", m[1])
	code, hdr, body := web.Do("POST", action, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	return code, hdr.Get("Location") + body
}

// bookedAt starts clinic with an agent, requests its first free slot and has
// the front desk confirm it; it returns the agent, the patient's client, the
// slot, the request ID and the status token.
func bookedAt(t *testing.T, clinic string) (*Agent, *Client, string, string, string) {
	t.Helper()
	env := NewEnv(t)
	ag := env.MustStartAgent(env.MustAddClinic(clinic), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	slot := firstSlot(t, web, clinic)
	id, token := request(t, web, clinic, slot)
	if code := ag.Desk(t).JSON("POST", "/api/requests/"+id+"/confirm", nil, nil); code != 200 {
		t.Fatalf("confirm: %d", code)
	}
	awaitState(t, web, token, "booked")
	return ag, web, slot, id, token
}

func awaitConsole(t *testing.T, con *console.Console, id, status, slot string) {
	t.Helper()
	poll.For(t, 10*time.Second, func() error {
		es, err := con.Requests(context.Background(), console.StatusAll)
		if err != nil {
			return err
		}
		for _, e := range es {
			if e.ID == id && e.Status == status && e.SlotID == slot {
				return nil
			}
		}
		return fmt.Errorf("console has no %s request %s on %s: %+v", status, id, slot, es)
	})
}

func awaitOffered(t *testing.T, web *Client, clinic, slot string, want bool) {
	t.Helper()
	poll.For(t, 10*time.Second, func() error {
		if hasSlot(t, web, clinic, slot) != want {
			return fmt.Errorf("slot %s offered: %v, want %v", slot, !want, want)
		}
		return nil
	})
}

// TestCancel: the patient cancels from the status page; the cancellation
// reaches the console through the clinic's queue and the slot is free again.
func TestCancel(t *testing.T) {
	ag, web, slot, id, token := bookedAt(t, "elm")

	code, where := postForm(t, web, "/r/"+token+"/cancel", "/r/"+token+"/cancel", url.Values{})
	if code != 303 || where != "/r/"+token {
		t.Fatalf("cancel: %d %q", code, where)
	}
	awaitState(t, web, token, "cancelled")
	awaitConsole(t, ag.Console, id, console.StatusCancelled, slot)
	awaitOffered(t, web, "elm", slot, true)
	if code, _, page := web.Do("GET", "/r/"+token, "", nil); code != 200 || !strings.Contains(page, "Cancelled") ||
		strings.Contains(page, "/cancel\"") {
		t.Errorf("status page after cancel: %d, cancel link still there or no Cancelled in %.400q", code, page)
	}
	// Once cancelled, nothing more can change.
	var e struct{ Error string }
	if code := web.JSON("POST", "/api/v1/requests/"+token+"/cancel", nil, &e); code != 409 {
		t.Errorf("second cancel: %d %v, want 409", code, e)
	}
}

// TestReschedule: the patient moves a booked request to another free time;
// the console has it pending on the new slot and the old one is free again.
func TestReschedule(t *testing.T) {
	ag, web, slot, id, token := bookedAt(t, "ash")

	other := firstSlot(t, web, "ash") // the first free one now: slot is taken
	if other == slot {
		t.Fatal("booked slot still offered")
	}
	code, where := postForm(t, web, "/r/"+token+"/reschedule", "/r/"+token+"/reschedule", url.Values{"slot_id": {other}})
	if code != 303 || where != "/r/"+token {
		t.Fatalf("reschedule: %d %q", code, where)
	}
	awaitConsole(t, ag.Console, id, console.StatusPending, other)
	awaitState(t, web, token, "delivered")
	awaitOffered(t, web, "ash", slot, true)
	awaitOffered(t, web, "ash", other, false)

	// A taken time is refused with the page, not an error.
	code, body := postForm(t, web, "/r/"+token+"/reschedule", "/r/"+token+"/reschedule", url.Values{"slot_id": {other}})
	if code != 422 || !strings.Contains(body, "already the time of your request") {
		t.Errorf("reschedule to the same time: %d %.300q", code, body)
	}
}

// TestAcceptProposal: the clinic proposes another time; one click accepts it
// and the request is booked on it without the front desk deciding again.
func TestAcceptProposal(t *testing.T) {
	env := NewEnv(t)
	ag := env.MustStartAgent(env.MustAddClinic("oak"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	slot := firstSlot(t, web, "oak")
	id, token := request(t, web, "oak", slot)
	proposed := firstSlot(t, web, "oak")
	desk := ag.Desk(t)
	if code := desk.JSON("POST", "/api/requests/"+id+"/propose", map[string]string{"slot_id": proposed}, nil); code != 200 {
		t.Fatalf("propose: %d", code)
	}
	awaitState(t, web, token, "proposed")
	code, _, page := web.Do("GET", "/r/"+token, "", nil)
	if code != 200 || !strings.Contains(page, `name="slot_id" value="`+proposed+`"`) {
		t.Fatalf("status page has no accept form for %s: %d %.600q", proposed, code, page)
	}
	code, where := postForm(t, web, "/r/"+token, "/r/"+token+"/reschedule", url.Values{"slot_id": {proposed}})
	if code != 303 {
		t.Fatalf("accept: %d %q", code, where)
	}
	awaitState(t, web, token, "booked")
	awaitConsole(t, ag.Console, id, console.StatusBooked, proposed)
	awaitOffered(t, web, "oak", slot, true)
	awaitOffered(t, web, "oak", proposed, false)
}

// TestStatusEvents: the live status page's event stream sends the current
// status at once and the clinic's decision as it happens.
func TestStatusEvents(t *testing.T) {
	env := NewEnv(t)
	ag := env.MustStartAgent(env.MustAddClinic("yew"), nil, nil)
	web := newClient(t, env.Relay.HTTPURL())
	id, token := request(t, web, "yew", firstSlot(t, web, "yew"))

	events := sseEvents(t, env.Relay.HTTPURL()+"/r/"+token+"/events")
	next := func() map[string]any {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("event stream ended")
			}
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5s")
		}
		return nil
	}
	if ev := next(); ev["state"] != "delivered" {
		t.Fatalf("first event: %v", ev)
	}
	start := time.Now()
	if code := ag.Desk(t).JSON("POST", "/api/requests/"+id+"/confirm", nil, nil); code != 200 {
		t.Fatalf("confirm: %d", code)
	}
	ev := next()
	if ev["state"] != "booked" || !strings.Contains(fmt.Sprint(ev["html"]), "Booked") {
		t.Fatalf("after confirm: %v", ev)
	}
	t.Logf("confirm → event: %s", time.Since(start))
}

// watchStatus records every value STATUS takes for the request, from now.
func watchStatus(t *testing.T, env *Env, clinic, id string) func() []statusRecord {
	t.Helper()
	kv, err := env.Admin.JS.KeyValue(context.Background(), subjects.BucketStatus)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(t.Context(), subjects.StatusKey(clinic, id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Stop() })
	var mu sync.Mutex
	var seen []statusRecord
	go func() {
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			var st statusRecord
			if json.Unmarshal(e.Value(), &st) == nil {
				mu.Lock()
				seen = append(seen, st)
				mu.Unlock()
			}
		}
	}()
	return func() []statusRecord {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

type statusRecord struct {
	State  string `json:"state"`
	SlotID string `json:"slot_id"`
}

// TestChange_ClinicDecidesMeanwhile: the front desk books the old time while
// the patient's move to a new time is still on its way to the clinic. The
// clinic's "booked" on the old time must never reach the patient (it would
// email a confirmation for a time they gave up): the agent holds it back
// until the move is applied, which ends pending on the new time.
func TestChange_ClinicDecidesMeanwhile(t *testing.T) {
	env := NewEnv(t)
	creds := env.MustAddClinic("pine")
	con := openDemoConsole(t, console.Config{})
	ag := env.MustStartAgent(creds, nil, con)
	web := newClient(t, env.Relay.HTTPURL())
	a := firstSlot(t, web, "pine")
	id, token := request(t, web, "pine", a)
	b := firstSlot(t, web, "pine")
	seen := watchStatus(t, env, "pine", id)

	ag.Stop() // the move waits in the queue; the front desk decides meanwhile
	if code := web.JSON("POST", "/api/v1/requests/"+token+"/reschedule", map[string]string{"slot_id": b}, nil); code != 200 {
		t.Fatalf("reschedule: %d", code)
	}
	if _, err := con.Confirm(context.Background(), id); err != nil {
		t.Fatalf("confirm the old time: %v", err)
	}
	env.MustStartAgent(creds, nil, con)
	awaitConsole(t, con, id, console.StatusPending, b)
	awaitState(t, web, token, "delivered")
	var st struct {
		Slot struct{ ID string } `json:"slot"`
	}
	web.JSON("GET", "/api/v1/requests/"+token, nil, &st)
	if st.Slot.ID != b {
		t.Errorf("status on %s, want the new time %s", st.Slot.ID, b)
	}
	for _, v := range seen() {
		if v.State == "booked" {
			t.Errorf("STATUS went through %s on %s: the clinic's decision on the old time overwrote the patient's move", v.State, v.SlotID)
		}
	}
}

// sseEvents opens a server-sent event stream and hands each event's data,
// decoded, to the channel it returns; the stream closes at the test's end.
func sseEvents(t *testing.T, url string) <-chan map[string]any {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan map[string]any, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var ev map[string]any
				if json.Unmarshal([]byte(data), &ev) == nil {
					events <- ev
				}
			}
		}
		close(events)
	}()
	return events
}

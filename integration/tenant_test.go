package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/agent/console"
	"github.com/clinicrelay/clinicrelay/internal/poll"
	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// jsHeaders is every header JetStream honours on a publish, each set to
// the value that would do the most harm.
var jsHeaders = nats.Header{
	"Nats-Rollup":                                 {"all"},
	"Nats-Expected-Last-Sequence":                 {"0"},
	"Nats-Expected-Last-Subject-Sequence":         {"0"},
	"Nats-Expected-Last-Subject-Sequence-Subject": {"$KV.STATUS.aspen.*"},
	"Nats-Expected-Last-Msg-Id":                   {"x"},
	"Nats-Expected-Stream":                        {"KV_STATUS"},
	"Nats-TTL":                                    {"1s"},
	"Nats-Marker-Reason":                          {"Purge"},
	"Nats-Schedule":                               {"@every 1s"},
	"Nats-Schedule-Target":                        {"$KV.STATUS.aspen.x"},
	"Nats-Incr":                                   {"1"},
	"Nats-Batch-Id":                               {"b"},
	"Nats-Batch-Sequence":                         {"1"},
	"Nats-Batch-Commit":                           {"1"},
	"Nats-Msg-Id":                                 {"aspen"},
	"KV-Operation":                                {"PURGE"},
}

// snapshot is everything the relay keeps of one clinic: each key of every
// bucket with its value and revision, and the number of its audit events.
func snapshot(t *testing.T, env *Env, clinic string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, b := range []string{subjects.BucketAvailability, subjects.BucketHolds, subjects.BucketStatus,
		subjects.BucketClinics, subjects.BucketPending, subjects.BucketContacts, subjects.BucketPortal,
		subjects.BucketPortalTokens} {
		kv, err := env.Admin.JS.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		l, err := kv.ListKeysFiltered(ctx, subjects.KVKeyUnder(clinic), clinic)
		if err != nil {
			t.Fatal(err)
		}
		for k := range l.Keys() {
			if k == subjects.ClinicSubKey(clinic, subjects.KeySeen) {
				continue // the heartbeat moves on by itself
			}
			e, err := kv.Get(ctx, k)
			if err != nil {
				t.Fatalf("%s %s: %v", b, k, err)
			}
			out[b+" "+k] = string(e.Value()) + " @" + strconv.FormatUint(e.Revision(), 10)
		}
	}
	// The messages of its queue (every kind), its notices (every channel)
	// and its audit trail, counted.
	for _, c := range []struct{ name, stream, filter string }{
		{"audit events", subjects.StreamAudit, subjects.AuditFilter(clinic)},
		{"queued", subjects.StreamRequests, subjects.ClinicFilter(clinic)},
		{"notices", subjects.StreamNotify, subjects.Notify("*", clinic)},
	} {
		s, err := env.Admin.JS.Stream(ctx, c.stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(c.filter))
		if err != nil {
			t.Fatal(err)
		}
		n := uint64(0)
		for _, k := range info.State.Subjects {
			n += k
		}
		out[c.name] = strconv.FormatUint(n, 10)
	}
	return out
}

// TestIsolation_Writes is the adversarial suite of clinic B's writes: every
// header JetStream honours, on every subject B may publish to; wildcard and
// deep keys; a flood of days; forged values naming clinic A; and writes of
// kinds an agent never makes. Each must leave A's data exactly as it was,
// and B's own keys within their bounds.
func TestIsolation_Writes(t *testing.T) {
	env := NewEnv(t)
	env.MustAddClinic("aspen")
	ctx := context.Background()
	// A's data in every bucket it has keys in.
	day := time.Now().UTC().AddDate(0, 0, 3).Format(time.DateOnly)
	aspenReq := strings.Repeat("a", 32)
	admin := func(b string) *cjs.Bucket { return cjs.NewBucket(env.Admin.JS, b) }
	for b, kv := range map[string][2]string{
		subjects.BucketAvailability: {"aspen." + day, `{"clinic":"aspen","date":"` + day + `","slots":[]}`},
		subjects.BucketStatus:       {"aspen." + aspenReq, `{"request_id":"` + aspenReq + `","clinic_id":"aspen","state":"received"}`},
		subjects.BucketHolds:        {"aspen.dr-lee_20300101T1400Z", `{"request_id":"` + aspenReq + `"}`},
		subjects.BucketClinics:      {"aspen.providers", `[{"id":"dr-lee","name":"Dr Lee"}]`},
		// A portal account and a question waiting for A's answer (sealed
		// values; what matters is that they do not move).
		subjects.BucketPortal:       {"aspen." + strings.Repeat("e", 32), "sealed account"},
		subjects.BucketPortalTokens: {"aspen.c" + aspenReq, "sealed question"},
	} {
		if _, err := admin(b).Put(ctx, kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	(&cjs.Auditor{JS: env.Admin.JS}).AuditNow(ctx, services.AuditEvent{Clinic: "aspen", Action: services.AuditRequestOpened})
	// A's queue holds a message of every kind, and a notice waits for it.
	for _, subj := range []string{subjects.Requests("aspen"), subjects.Changes("aspen"),
		subjects.ClinicQueue("aspen", subjects.KindIntake), subjects.PortalCheck("aspen"), subjects.NotifyEmail("aspen")} {
		if _, err := env.Admin.JS.Publish(ctx, subj, []byte("sealed")); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, env, "aspen")
	if before["queued"] != "4" || before["notices"] != "1" {
		t.Fatalf("A's queue and notices before: %v", before)
	}

	v := &violations{}
	nc := agentConn(t, env, env.MustAddClinic("cedar"), v)
	js, _ := jetstream.New(nc)
	cedarReq := strings.Repeat("c", 32)
	if _, err := admin(subjects.BucketStatus).Put(ctx, "cedar."+cedarReq,
		[]byte(`{"request_id":"`+cedarReq+`","clinic_id":"cedar","state":"received"}`)); err != nil {
		t.Fatal(err)
	}
	status, _ := cjs.GetJSON(ctx, admin(subjects.BucketStatus), "cedar."+cedarReq, &services.Status{})

	// Allowed writes, each carrying every header: the relay writes them
	// with headers of its own.
	cedarDay := `{"clinic":"cedar","date":"` + day + `","slots":[]}`
	ok := []struct {
		name, bucket, suffix, op string
		rev                      uint64
		body                     string
	}{
		{"availability", subjects.BucketAvailability, day, cjs.OpPut, 0, cedarDay},
		{"heartbeat", subjects.BucketClinics, subjects.KeySeen, cjs.OpPut, 0, `{"at":"2030-01-01T00:00:00Z","connector":"x","healthy":true}`},
		{"status", subjects.BucketStatus, cedarReq, cjs.OpUpdate, status,
			`{"request_id":"` + cedarReq + `","clinic_id":"cedar","state":"delivered"}`},
	}
	for _, w := range ok {
		m := &nats.Msg{Subject: subjects.AgentWrite("cedar", w.bucket, w.suffix), Data: []byte(w.body), Header: maps.Clone(jsHeaders)}
		m.Header.Set(subjects.HeaderOp, w.op)
		if w.rev > 0 {
			m.Header.Set(subjects.HeaderRevision, strconv.FormatUint(w.rev, 10))
		}
		resp, err := nc.RequestMsg(m, 5*time.Second)
		if err != nil || strings.Contains(string(resp.Data), "error") {
			t.Errorf("%s with every header: %v %s", w.name, err, respData(resp))
		}
	}
	// The same headers on a direct publish to B's own subjects, and on
	// its audit events: refused, or ignored.
	for _, subj := range []string{"$KV.STATUS.cedar." + cedarReq, "$KV.AVAILABILITY.cedar." + day, "$KV.CLINICS.cedar.seen",
		"$KV.HOLDS.cedar.dr-lee_20300101T1400Z", "audit.cedar.request-opened",
		"$JS.API.DIRECT.GET.KV_STATUS.$KV.STATUS.cedar." + cedarReq} {
		nc.RequestMsg(&nats.Msg{Subject: subj, Data: []byte(`{}`), Header: maps.Clone(jsHeaders)}, 300*time.Millisecond)
	}
	ev := &nats.Msg{Subject: subjects.AgentAudit("cedar"), Header: maps.Clone(jsHeaders),
		Data: []byte(`{"clinic":"aspen","action":"request-opened","actor":"relay","request_id":"` + aspenReq + `"}`)}
	if resp, err := nc.RequestMsg(ev, 5*time.Second); err != nil || strings.Contains(string(resp.Data), "error") {
		t.Errorf("audit event with every header: %v %s", err, respData(resp))
	}

	// B answers A's waiting question under its own name, and gives portal
	// access, with every header: the relay looks the question up under B
	// only, and A's records stay as they were.
	for subj, body := range map[string]string{
		subjects.AgentPortalAnswer("cedar"): `{"check":"` + aspenReq + `","known":true}`,
		subjects.AgentPortalGrant("cedar"):  `{"email":"ada@example.org","hash":"$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`,
	} {
		if _, err := nc.RequestMsg(&nats.Msg{Subject: subj, Data: []byte(body), Header: maps.Clone(jsHeaders)}, 5*time.Second); err != nil {
			t.Errorf("%s: %v", subj, err)
		}
	}

	// Refused writes: each answers with the rule it breaks.
	now := time.Now().UTC()
	refusedWrites := []struct {
		name, bucket, suffix, op, body, want string
	}{
		{"wildcard key", subjects.BucketAvailability, "*", cjs.OpPut, cedarDay, "must look like"},
		{"full wildcard key", subjects.BucketAvailability, ">", cjs.OpPut, cedarDay, "must look like"},
		{"day past the window", subjects.BucketAvailability, now.AddDate(0, 0, services.DaysAhead+5).Format(time.DateOnly), cjs.OpPut,
			`{"clinic":"cedar","date":"` + now.AddDate(0, 0, services.DaysAhead+5).Format(time.DateOnly) + `","slots":[]}`, "outside the booking window"},
		{"day naming A", subjects.BucketAvailability, day, cjs.OpPut, `{"clinic":"aspen","date":"` + day + `","slots":[]}`, "stored under"},
		{"not a day", subjects.BucketAvailability, day, cjs.OpPut, strings.Repeat("x", 1000), "decode day"},
		{"too big", subjects.BucketAvailability, day, cjs.OpPut, strings.Repeat("x", cjs.MaxDayBytes+1), "at most"},
		{"unknown CLINICS key", subjects.BucketClinics, "junk", cjs.OpPut, `{}`, "writes only"},
		{"rewrite own profile", subjects.BucketClinics, "", cjs.OpPut, `{}`, "writes only"},
		{"bad seal key", subjects.BucketClinics, subjects.KeySealKey, cjs.OpPut, `"x"`, "curve key"},
		{"provider name with a bidi override", subjects.BucketClinics, subjects.KeyProviders, cjs.OpPut,
			`[{"id":"p","name":"Dr \u202eeL"}]`, "bidi"},
		{"provider policy out of range", subjects.BucketClinics, subjects.KeyProviders, cjs.OpPut,
			`[{"id":"p","name":"Dr P","policy":{"notice_minutes":-5}}]`, "notice_minutes"},
		{"new hold", subjects.BucketHolds, "dr-lee_20300101T1500Z", cjs.OpPut, `{}`, "may not"},
		{"new status", subjects.BucketStatus, strings.Repeat("d", 32), cjs.OpCreate, `{}`, "may not"},
		{"status put without revision", subjects.BucketStatus, cedarReq, cjs.OpPut, `{}`, "may not"},
		{"status naming A's request", subjects.BucketStatus, cedarReq, cjs.OpUpdate,
			`{"request_id":"` + aspenReq + `","clinic_id":"aspen","state":"booked"}`, "names request"},
		{"bucket it does not write", subjects.BucketPending, "x", cjs.OpPut, `{}`, "writes no keys"},
		{"portal accounts", subjects.BucketPortal, strings.Repeat("e", 32), cjs.OpPut, `{}`, "writes no keys"},
		{"portal records", subjects.BucketPortalTokens, "c" + aspenReq, cjs.OpDelete, ``, "writes no keys"},
		{"notify stream", "NOTIFY", "x", cjs.OpPut, `{}`, "writes no keys"},
	}
	for _, w := range refusedWrites {
		t.Run("refused "+w.name, func(t *testing.T) {
			m := &nats.Msg{Subject: subjects.AgentWrite("cedar", w.bucket, w.suffix), Data: []byte(w.body), Header: nats.Header{}}
			if w.suffix == "" {
				m.Subject = strings.TrimSuffix(m.Subject, ".")
			}
			m.Header.Set(subjects.HeaderOp, w.op)
			m.Header.Set(subjects.HeaderRevision, "1")
			if w.op == cjs.OpUpdate {
				m.Header.Set(subjects.HeaderRevision, strconv.FormatUint(status, 10))
			}
			resp, err := nc.RequestMsg(m, 5*time.Second)
			if w.suffix == "" { // not an AgentWrite subject at all: a permission violation
				v.await(t, "publish", m.Subject)
				return
			}
			if err != nil || !strings.Contains(string(resp.Data), `"refused"`) || !strings.Contains(string(resp.Data), w.want) {
				t.Errorf("got %v %s, want a refusal saying %q", err, respData(resp), w.want)
			}
		})
	}
	// Staff events name a user, of a user name's form, and only they do.
	for name, body := range map[string]string{
		"staff event without a user":  `{"action":"request-decided","request_id":"` + cedarReq + `"}`,
		"agent event naming a user":   `{"action":"request-opened","user":"ana","request_id":"` + cedarReq + `"}`,
		"user name with a newline":    `{"action":"request-viewed","user":"ana\nadmin","request_id":"` + cedarReq + `"}`,
		"user name of 41 characters":  `{"action":"request-viewed","user":"` + strings.Repeat("a", 41) + `","request_id":"` + cedarReq + `"}`,
		"user name with a capital":    `{"action":"request-viewed","user":"Ana","request_id":"` + cedarReq + `"}`,
		"staff event for bad request": `{"action":"request-viewed","user":"ana","request_id":"../x"}`,
	} {
		resp, err := nc.Request(subjects.AgentAudit("cedar"), []byte(body), 5*time.Second)
		if err != nil || !strings.Contains(string(resp.Data), `"refused"`) {
			t.Errorf("%s: %v %s, want refused", name, err, respData(resp))
		}
	}
	decided := `{"action":"request-decided","user":"lee-desk","actor":"relay","detail":"booked","request_id":"` + cedarReq + `"}`
	if resp, err := nc.Request(subjects.AgentAudit("cedar"), []byte(decided), 5*time.Second); err != nil ||
		strings.Contains(string(resp.Data), "error") {
		t.Errorf("a staff decision: %v %s", err, respData(resp))
	}

	// A flood of days under B's own prefix: at most the window is kept.
	bucket := cjs.NewAgentBucket(js, subjects.BucketAvailability, "cedar")
	refusals := 0
	for i := -400; i < 800; i++ {
		d := now.AddDate(0, 0, i).Format(time.DateOnly)
		_, err := bucket.Put(ctx, "cedar."+d, []byte(`{"clinic":"cedar","date":"`+d+`","slots":[]}`))
		if errors.Is(err, cjs.ErrRefused) {
			refusals++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	kept := 0
	for k := range snapshot(t, env, "cedar") {
		if strings.HasPrefix(k, subjects.BucketAvailability+" ") {
			kept++
		}
	}
	if kept > services.DaysAhead+3 || refusals < 1200-(services.DaysAhead+3) {
		t.Errorf("a flood of 1,200 days kept %d of them (%d refused), want at most %d", kept, refusals, services.DaysAhead+3)
	}

	// A's data is exactly as it was; B's status is its own update.
	time.Sleep(1500 * time.Millisecond) // any Nats-TTL of 1s would have expired by now
	if after := snapshot(t, env, "aspen"); !maps.Equal(before, after) {
		t.Errorf("clinic A's data changed:\nbefore %v\nafter  %v", before, after)
	}
	var st services.Status
	if _, err := cjs.GetJSON(ctx, admin(subjects.BucketStatus), "cedar."+cedarReq, &st); err != nil || st.State != services.StateDelivered {
		t.Errorf("B's own status: %+v %v, want delivered (the TTL header ignored)", st, err)
	}
	// The event B sent as A's was recorded as B's, by its agent.
	var evs []services.AuditEvent
	if err := cjs.ReadAudit(ctx, env.Admin.JS, "cedar", time.Time{}, func(e services.AuditEvent) {
		if e.Action == services.AuditRequestOpened {
			evs = append(evs, e)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Clinic != "cedar" || evs[0].Actor != "agent" {
		t.Errorf("B's request-opened events: %+v, want one of clinic cedar by its agent", evs)
	}
	// The staff decision: cedar's, by its staff user as the agent named them.
	evs = evs[:0]
	cjs.ReadAudit(ctx, env.Admin.JS, "cedar", time.Time{}, func(e services.AuditEvent) {
		if e.Action == services.AuditRequestDecided {
			evs = append(evs, e)
		}
	})
	if len(evs) != 1 || evs[0].Clinic != "cedar" || evs[0].Actor != "staff" || evs[0].User != "lee-desk" || evs[0].Detail != "booked" {
		t.Errorf("B's request-decided events: %+v, want one by staff user lee-desk", evs)
	}
}

func respData(m *nats.Msg) string {
	if m == nil {
		return ""
	}
	b, _ := json.Marshal(string(m.Data))
	return string(b)
}

// TestRecovery_PurgedKeys: keys an agent published that vanish from the
// relay (an operator's purge, a new bucket) are put back without a
// restart: its days and its seal key, within a few checks.
func TestRecovery_PurgedKeys(t *testing.T) {
	env := NewEnv(t)
	env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	ctx := context.Background()
	count := func(bucket, filter string) int {
		s, err := env.Admin.JS.Stream(ctx, subjects.KVStream(bucket))
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(subjects.KVSubject(bucket, filter)))
		if err != nil {
			t.Fatal(err)
		}
		return len(info.State.Subjects)
	}
	days := 0
	poll.For(t, 10*time.Second, func() error {
		if days = count(subjects.BucketAvailability, "maple.*"); days < services.DaysAhead {
			return fmt.Errorf("%d days published", days)
		}
		return nil
	})
	for _, b := range []string{subjects.BucketAvailability, subjects.BucketClinics} {
		s, _ := env.Admin.JS.Stream(ctx, subjects.KVStream(b))
		if err := s.Purge(ctx, jetstream.WithPurgeSubject(subjects.KVSubject(b, "maple.*"))); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(subjects.BucketAvailability, "maple.*"); n != 0 {
		t.Fatalf("%d days left after the purge", n)
	}
	poll.For(t, 15*time.Second, func() error {
		if n := count(subjects.BucketAvailability, "maple.*"); n != days {
			return fmt.Errorf("%d of %d days back", n, days)
		}
		if count(subjects.BucketClinics, "maple."+subjects.KeySealKey) != 1 {
			return fmt.Errorf("no seal key back")
		}
		return nil
	})
}

// TestQuota_DayOverCapOnConsole: a day with more free slots than the relay
// carries (MaxDayBytes) loses its latest slots, not the whole day (the agent
// would otherwise send what the relay refuses, or the server would close its
// connection past subjects.AgentMaxPayload); the agent logs it once, its
// heartbeat counts it, the console shows it to the staff; its other days
// and another clinic go on; once the slots fit again the console says
// nothing more.
func TestQuota_DayOverCapOnConsole(t *testing.T) {
	env := NewEnv(t)
	ctx := context.Background()
	maple := env.MustStartAgent(env.MustAddClinic("maple"), nil, nil)
	env.MustStartAgent(env.MustAddClinic("birch"), nil, nil)
	loc, _ := time.LoadLocation("America/Toronto")
	today := services.Today(time.Now(), loc)
	big := today.AddDate(0, 0, 2)
	bigKey := subjects.AvailabilityKey("maple", big.Format(time.DateOnly))
	bigDays := 0 // days of the window on big's weekday
	for d := today; d.Before(today.AddDate(0, 0, services.DaysAhead)); d = d.AddDate(0, 0, 1) {
		if d.Weekday() == big.Weekday() {
			bigDays++
		}
	}
	avail := cjs.NewBucket(env.Admin.JS, subjects.BucketAvailability)
	kv, err := env.Admin.JS.KeyValue(ctx, subjects.BucketAvailability)
	if err != nil {
		t.Fatal(err)
	}
	days := func(clinic string) int {
		keys, err := kv.ListKeysFiltered(ctx, clinic+".*")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range keys.Keys() {
			n++
		}
		return n
	}
	poll.For(t, 10*time.Second, func() error {
		if _, err := avail.Get(ctx, bigKey); err != nil {
			return fmt.Errorf("%s: %w", bigKey, err)
		}
		if n := days("birch"); n != services.DaysAhead {
			return fmt.Errorf("birch: %d days", n)
		}
		return nil
	})
	seen := func() services.Heartbeat {
		var hb services.Heartbeat
		if _, err := cjs.GetJSON(ctx, cjs.NewBucket(env.Admin.JS, subjects.BucketClinics),
			subjects.ClinicSubKey("maple", subjects.KeySeen), &hb); err != nil {
			t.Fatal(err)
		}
		return hb
	}

	// Twelve providers with 5-minute slots all day: about 3,400 slots,
	// 390 KB, where the relay takes 256 KiB a day.
	weekday := strings.ToLower(big.Weekday().String()[:3])
	many := console.DemoProviders()
	for i := range 12 {
		many = append(many, services.ProviderSchedule{
			Provider:    services.Provider{ID: fmt.Sprintf("big-%02d", i), Name: fmt.Sprintf("Dr. Big %d", i)},
			SlotMinutes: 5, Closures: []string{},
			Hours: map[string][]services.Interval{weekday: {{Start: "00:00", End: "23:55"}}},
		})
	}
	if err := maple.Console.SetProviders(ctx, many); err != nil {
		t.Fatal(err)
	}
	desk := maple.Desk(t)
	page := func() string {
		_, _, body := desk.Do("GET", "/", "", nil)
		return body
	}
	poll.For(t, 15*time.Second, func() error {
		if body := page(); !strings.Contains(body, `id="refused"`) ||
			!strings.Contains(body, "free slots of "+big.Format(time.DateOnly)+": the latest ") ||
			!strings.Contains(body, fmt.Sprintf("a day carries at most %d bytes", cjs.MaxDayBytes)) {
			return errors.New("the console does not show the day cut")
		}
		return nil
	})
	e, err := avail.Get(ctx, bigKey)
	if err != nil {
		t.Fatal(err)
	}
	var day services.Day
	json.Unmarshal(e.Value, &day)
	if len(e.Value) > cjs.MaxDayBytes || len(day.Slots) < 2000 || !day.Slots[0].Start.Equal(time.Date(big.Year(), big.Month(), big.Day(), 0, 0, 0, 0, loc)) {
		t.Errorf("%s: %d bytes, %d slots, the first at %v; want the earliest slots that fit", bigKey, len(e.Value),
			len(day.Slots), day.Slots[0].Start)
	}
	if n := days("maple"); n != services.DaysAhead {
		t.Errorf("maple: %d days published, want all %d", n, services.DaysAhead)
	}
	if n := days("birch"); n != services.DaysAhead {
		t.Errorf("birch: %d days after maple's were cut", n)
	}
	poll.For(t, 5*time.Second, func() error {
		if hb := seen(); !strings.HasPrefix(hb.Rejected, "PMS data rejected: ") ||
			!strings.HasSuffix(hb.Rejected, fmt.Sprintf("slots on %d days", bigDays)) || !hb.Healthy {
			return fmt.Errorf("heartbeat %+v", hb)
		}
		return nil
	})
	if n := strings.Count(logged(t), `level=WARN msg="PMS data rejected: slots the relay would refuse are left out" clinic_id=maple`); n != bigDays {
		t.Errorf("%d warnings logged, want one per day cut (%d), not one per publication", n, bigDays)
	}

	if err := maple.Console.SetProviders(ctx, console.DemoProviders()); err != nil {
		t.Fatal(err)
	}
	poll.For(t, 15*time.Second, func() error {
		if strings.Contains(page(), `id="refused"`) {
			return errors.New("the console still shows the day cut")
		}
		if hb := seen(); hb.Rejected != "" {
			return fmt.Errorf("heartbeat still says %q", hb.Rejected)
		}
		return nil
	})
}

// refusingDesk is a console whose outcomes the relay refuses or must tidy:
// the first request's names a slot that is no slot, the second's reason
// runs over lines, as a PMS's note can.
type refusingDesk struct {
	*console.Console
	bad, multiline string // request IDs
}

func (d *refusingDesk) PendingOutcomes(ctx context.Context) ([]services.Status, error) {
	outs, err := d.Console.PendingOutcomes(ctx)
	var first, rest []services.Status // the refused one first
	for _, st := range outs {
		switch st.RequestID {
		case d.bad:
			st.ProposedSlot = "not a slot"
			first = append(first, st)
			continue
		case d.multiline:
			st.Reason = "Dr. Lee is away\nback on Monday"
		}
		rest = append(rest, st)
	}
	return append(first, rest...), err
}

// TestQuota_RefusedOutcome: an outcome the relay refuses is shown to the
// staff and tried again, and holds back no other outcome; a reason on
// several lines reaches the patient on one.
func TestQuota_RefusedOutcome(t *testing.T) {
	env := NewEnv(t)
	desk := &refusingDesk{Console: openDemoConsole(t, console.Config{})}
	ag := env.MustStartAgent(env.MustAddClinic("fir"), desk, desk.Console)
	web := newClient(t, env.Relay.HTTPURL())
	firstSlot(t, web, "fir")
	var got slotsResp
	from, to := time.Now().Format(time.DateOnly), time.Now().AddDate(0, 0, 13).Format(time.DateOnly)
	if code := web.JSON("GET", "/api/v1/clinics/fir/slots?from="+from+"&to="+to, nil, &got); code != 200 || len(got.Slots) < 2 {
		t.Fatalf("slots: %d, %d", code, len(got.Slots))
	}
	var reqs [2]map[string]string
	for i := range reqs {
		if code := web.JSON("POST", "/api/v1/clinics/fir/requests", validRequest(got.Slots[i].ID), &reqs[i]); code != 201 {
			t.Fatalf("create %d: %d", i, code)
		}
		awaitState(t, web, reqs[i]["token"], "delivered")
	}
	desk.bad, desk.multiline = reqs[0]["id"], reqs[1]["id"]
	staff := ag.Desk(t)
	for _, r := range reqs {
		if code := staff.JSON("POST", "/api/requests/"+r["id"]+"/decline", map[string]string{"reason": "Dr. Lee is away"}, nil); code != 200 {
			t.Fatalf("decline: %d", code)
		}
	}
	awaitState(t, web, reqs[1]["token"], "declined")
	var st struct{ Reason string }
	web.JSON("GET", "/api/v1/requests/"+reqs[1]["token"], nil, &st)
	if st.Reason != "Dr. Lee is away back on Monday" {
		t.Errorf("reason = %q, want it on one line", st.Reason)
	}
	poll.For(t, 10*time.Second, func() error {
		_, _, body := staff.Do("GET", "/", "", nil)
		if !strings.Contains(body, "outcome of request "+reqs[0]["id"]+": STATUS: status: proposed_slot") {
			return fmt.Errorf("the console does not show the refused outcome: %s", body)
		}
		return nil
	})
	awaitState(t, web, reqs[0]["token"], "delivered") // not what the relay refused
	log := logged(t)
	if n := strings.Count(log, "key=fir."+reqs[0]["id"]); n != 1 {
		t.Errorf("the refusal logged %d times, want once: it is tried again, not logged again", n)
	}
	// The relay tells the operator too, once a minute.
	if n := strings.Count(log, `level=WARN msg="agent write refused" clinic_id=fir bucket=STATUS`); n != 1 {
		t.Errorf("the relay logged the refusal %d times, want once", n)
	}
}

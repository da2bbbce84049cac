package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/clinicrelay/clinicrelay/internal/poll"
	"github.com/clinicrelay/clinicrelay/relay"
	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// startCluster runs n JetStream servers routed to each other on loopback,
// each with its own store, and waits until they have a meta leader.
func startCluster(t *testing.T, n int) []*server.Server {
	t.Helper()
	var routes []string
	for range n {
		routes = append(routes, "nats://"+freeAddr(t))
	}
	servers := make([]*server.Server, n)
	for i := range servers {
		_, port := splitAddr(t, strings.TrimPrefix(routes[i], "nats://"))
		s, err := server.NewServer(&server.Options{ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1",
			Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
			JetStreamMaxMemory: 256 << 20, JetStreamMaxStore: 1 << 30,
			Cluster: server.ClusterOpts{Name: "fault", Host: "127.0.0.1", Port: port},
			Routes:  server.RoutesFromStr(strings.Join(routes, ","))})
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(s.Shutdown)
		servers[i] = s
	}
	for _, s := range servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("%s not ready", s.Name())
		}
	}
	poll.For(t, 30*time.Second, func() error {
		leaders := 0
		for _, s := range servers {
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("%s is not current", s.Name())
			}
			if s.JetStreamIsLeader() {
				leaders++
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d meta leaders", leaders)
		}
		return nil
	})
	return servers
}

// seedClinic writes a clinic's profile and seal key into CLINICS and denseSchedule's
// slots from tomorrow (UTC) for days into AVAILABILITY, as the relay and an
// agent would, so the web takes requests without an agent. It returns the
// first day and the slot IDs.
func seedClinic(t *testing.T, js jetstream.JetStream, clinic string, days int) (time.Time, []string) {
	t.Helper()
	ctx := context.Background()
	put := func(bucket, key string, v any) {
		t.Helper()
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(v)
		if _, err := kv.Put(ctx, key, b); err != nil {
			t.Fatalf("put %s %s: %v", bucket, key, err)
		}
	}
	put(subjects.BucketClinics, subjects.ClinicKey(clinic), services.Clinic{ID: clinic, Name: "Clinic " + clinic,
		TimeZone: "UTC", CreatedAt: time.Now().UTC()})
	sealKey, _ := nkeys.CreateCurveKeys()
	pub, _ := sealKey.PublicKey()
	put(subjects.BucketClinics, subjects.ClinicSubKey(clinic, subjects.KeySealKey), pub)
	from := services.Today(time.Now(), time.UTC).AddDate(0, 0, 1)
	var ids []string
	for i := range days {
		d := from.AddDate(0, 0, i)
		day := services.Day{Clinic: clinic, Date: d.Format(time.DateOnly)}
		for _, p := range denseSchedule() {
			day.Slots = append(day.Slots, p.Slots(d, d.AddDate(0, 0, 1), time.UTC)...)
		}
		slices.SortFunc(day.Slots, func(a, b services.Slot) int { return a.Start.Compare(b.Start) })
		put(subjects.BucketAvailability, subjects.AvailabilityKey(clinic, day.Date), day)
		for _, s := range day.Slots {
			ids = append(ids, s.ID)
		}
	}
	return from, ids
}

// seededExternalRelay starts a relay on the existing NATS of cfg, seeds
// clinic with days of slots through a connection of its own (which
// reconnects forever), and waits until the web offers them all.
func seededExternalRelay(t *testing.T, cfg relay.Config, clinic string, days int) (*relay.Relay, jetstream.JetStream, *Client, []string) {
	t.Helper()
	r := startRelay(t, cfg)
	nc, err := nats.Connect(cfg.NATSURL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	from, slots := seedClinic(t, js, clinic, days)
	web := newClient(t, r.HTTPURL())
	awaitSeeded(t, web, clinic, from, days, len(slots))
	return r, js, web, slots
}

// awaitSeeded waits until the web offers every seeded slot.
func awaitSeeded(t *testing.T, c *Client, clinic string, from time.Time, days, n int) {
	t.Helper()
	path := "/api/v1/clinics/" + clinic + "/slots?from=" + from.Format(time.DateOnly) + "&to=" +
		from.AddDate(0, 0, days-1).Format(time.DateOnly)
	poll.For(t, 15*time.Second, func() error {
		var got slotsResp
		if code := c.JSON("GET", path, nil, &got); code != 200 || len(got.Slots) != n {
			return fmt.Errorf("web offers %d slots (%d), want %d", len(got.Slots), code, n)
		}
		return nil
	})
}

// queuedMsgs reads every message of REQUESTS.
func queuedMsgs(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, subjects.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	st := stream.CachedInfo().State
	var out []*jetstream.RawStreamMsg
	for seq := st.FirstSeq; st.Msgs > 0 && seq <= st.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("read %s #%d: %v", subjects.StreamRequests, seq, err)
		}
		out = append(out, m)
	}
	if uint64(len(out)) > st.Msgs {
		t.Fatalf("read %d messages, the stream holds %d", len(out), st.Msgs)
	}
	return out
}

// streamRequestIDs counts the messages of REQUESTS by request ID.
func streamRequestIDs(t *testing.T, js jetstream.JetStream) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, m := range queuedMsgs(t, js) {
		ids[m.Header.Get(subjects.HeaderRequestID)]++
	}
	return ids
}

// TestFault_ClusterLeaderLoss: the web front runs on a three-node cluster
// with R3 streams; the server leading REQUESTS is stopped while patients post
// requests. No request that got a 201 is lost or duplicated, and the web
// goes on accepting after the failover.
func TestFault_ClusterLeaderLoss(t *testing.T) {
	servers := startCluster(t, 3)
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	r, js, web, slots := seededExternalRelay(t, relay.Config{NATSURL: strings.Join(urls, ","), Replicas: 3}, "elm", 2)

	ctx := context.Background()
	stream, err := js.Stream(ctx, subjects.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	if c := stream.CachedInfo().Config.Replicas; c != 3 {
		t.Fatalf("%s has %d replicas, want 3", subjects.StreamRequests, c)
	}
	l := startLoad(t, r.HTTPURL(), "elm", slots, 4, 20*time.Second)
	l.awaitAccepted(t, 100, 20*time.Second)
	info, err := stream.Info(ctx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("no stream leader: %+v %v", info.Cluster, err)
	}
	leader := info.Cluster.Leader
	i := slices.IndexFunc(servers, func(s *server.Server) bool { return s.Name() == leader })
	atKill, killed := l.Accepted(), time.Now()
	servers[i].Shutdown()
	l.awaitAccepted(t, atKill+150, 45*time.Second)
	l.stop()
	l.report(t, killed)

	poll.For(t, 20*time.Second, func() error {
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" || info.Cluster.Leader == leader {
			return fmt.Errorf("no new leader yet: %+v", info.Cluster)
		}
		return nil
	})
	extra := checkExactlyOnce(t, streamRequestIDs(t, js), l.accepted)
	if failed := l.failed(); extra > failed {
		t.Errorf("%s holds %d requests that got no 201, but only %d requests failed", subjects.StreamRequests, extra, failed)
	}
	awaitStates(t, web, l.accepted, services.StateReceived, 20*time.Second)
	t.Logf("stopped %s (leader of %s) after %d accepted; %s holds %d accepted + %d that got no 201",
		leader, subjects.StreamRequests, atKill, subjects.StreamRequests, len(l.accepted), extra)
}

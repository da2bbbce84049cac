package clinics

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"

	"github.com/clinicrelay/clinicrelay/subjects"
)

// AgentMaxConns is how many connections one clinic's creds may hold: an
// agent needs one, a restarted agent briefly two while the server has not
// yet seen its old one go, and an operator may run a second agent.
const AgentMaxConns = 4

// Warden holds every clinic to AgentMaxConns connections. NATS limits
// connections per account, not per user, and all agents share the APP
// account; so the warden follows the server's connect and disconnect events
// for it and disconnects ("kicks") each connection past a clinic's limit,
// newest first: the agent already connected keeps its connection, and one
// clinic's creds cannot take the file handles every clinic needs (the
// server's own MaxConn bounds the moment before the kick).
type Warden struct {
	Sys     *nats.Conn // a user of the system account
	Account string     // the APP account's public key
	Max     int        // per clinic; default AgentMaxConns
	Logger  *slog.Logger

	mu     sync.Mutex
	conns  map[string]map[connID]bool // clinic -> its connections
	logged map[string]*rate.Limiter   // clinic -> how often a kick is logged
	kicked int
	subs   []*nats.Subscription
}

// connID names a connection in a cluster: the server's ID and its client ID.
type connID struct {
	server string
	cid    uint64
}

// clientEvent is the part of the server's CONNECT and DISCONNECT events the
// warden reads (server.ConnectEventMsg, server.DisconnectEventMsg).
type clientEvent struct {
	Server struct {
		ID string `json:"id"`
	} `json:"server"`
	Client struct {
		ID   uint64   `json:"id"`
		Tags []string `json:"tags"`
	} `json:"client"`
}

// Start follows the events, then counts the connections already there.
func (w *Warden) Start(ctx context.Context) error {
	if w.Max <= 0 {
		w.Max = AgentMaxConns
	}
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	w.conns, w.logged = map[string]map[connID]bool{}, map[string]*rate.Limiter{}
	for subj, fn := range map[string]nats.MsgHandler{
		"$SYS.ACCOUNT." + w.Account + ".CONNECT":    w.connected,
		"$SYS.ACCOUNT." + w.Account + ".DISCONNECT": w.disconnected,
	} {
		sub, err := w.Sys.Subscribe(subj, fn)
		if err != nil {
			w.Stop()
			return fmt.Errorf("warden: %w", err)
		}
		sub.SetPendingLimits(-1, 256<<20) // a flood's events wait, none is dropped
		w.subs = append(w.subs, sub)
	}
	if err := w.Sys.FlushTimeout(10 * time.Second); err != nil {
		w.Stop()
		return fmt.Errorf("warden: %w", err)
	}
	return w.seed(ctx)
}

// Stop stops following the events.
func (w *Warden) Stop() {
	for _, s := range w.subs {
		s.Unsubscribe()
	}
	w.subs = nil
}

// Kicked is how many connections the warden has disconnected.
func (w *Warden) Kicked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.kicked
}

// Conns is how many connections clinic holds, as the warden counts them.
func (w *Warden) Conns(clinic string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.conns[clinic])
}

// clinicOf is the clinic in an agent's tags ("clinic:<id>"); the tags come
// from its user JWT, which the relay's agent key signed.
func clinicOf(tags []string) string {
	for _, t := range tags {
		if id, ok := strings.CutPrefix(t, subjects.TagClinic+":"); ok && subjects.ValidClinicID(id) == nil {
			return id
		}
	}
	return ""
}

func (w *Warden) connected(m *nats.Msg) {
	var ev clientEvent
	if json.Unmarshal(m.Data, &ev) != nil {
		return
	}
	w.add(clinicOf(ev.Client.Tags), connID{ev.Server.ID, ev.Client.ID})
}

// add counts the connection and kicks it if it is one too many.
func (w *Warden) add(clinic string, id connID) {
	if clinic == "" || id.server == "" {
		return // the web's, the relay's, an operator's: not an agent
	}
	w.mu.Lock()
	set := w.conns[clinic]
	if set == nil {
		set = map[connID]bool{}
		w.conns[clinic] = set
	}
	if set[id] {
		w.mu.Unlock()
		return
	}
	over := len(set) >= w.Max
	if !over {
		set[id] = true
		w.mu.Unlock()
		return
	}
	w.kicked++
	l := w.logged[clinic]
	if l == nil {
		l = rate.NewLimiter(rate.Every(time.Minute), 1)
		w.logged[clinic] = l
	}
	w.mu.Unlock()
	if l.Allow() {
		w.Logger.Warn("agent connection refused: the clinic already has its connections", "clinic_id", clinic,
			"max", w.Max)
	}
	w.kick(id)
}

// kick asks the connection's server to close it. The answer is not waited
// for: a flood's kicks go out as fast as its connections come in.
func (w *Warden) kick(id connID) {
	body, _ := json.Marshal(map[string]uint64{"cid": id.cid})
	// The server answers only a request that has a reply subject.
	if err := w.Sys.PublishRequest("$SYS.REQ.SERVER."+id.server+".KICK", w.Sys.NewRespInbox(), body); err != nil {
		w.Logger.Warn("kick agent connection", "err", err.Error())
	}
}

func (w *Warden) disconnected(m *nats.Msg) {
	var ev clientEvent
	if json.Unmarshal(m.Data, &ev) != nil {
		return
	}
	clinic := clinicOf(ev.Client.Tags)
	w.mu.Lock()
	defer w.mu.Unlock()
	if set := w.conns[clinic]; set != nil {
		delete(set, connID{ev.Server.ID, ev.Client.ID})
		if len(set) == 0 {
			delete(w.conns, clinic)
		}
	}
}

// connzPage is how many connections a server lists per answer while the
// warden counts those there before it started.
const connzPage = 256

// seed counts the agents' connections made before the warden followed the
// events: every server of the account lists its connections, a page at a
// time (their JWTs make the pages large), until none has more.
func (w *Warden) seed(ctx context.Context) error {
	for offset := 0; ; offset += connzPage {
		more := false
		err := w.collect(ctx, "$SYS.REQ.ACCOUNT."+w.Account+".CONNZ",
			map[string]any{"auth": true, "offset": offset, "limit": connzPage}, func(b []byte) {
				var r struct {
					Server struct {
						ID string `json:"id"`
					} `json:"server"`
					Data struct {
						Total int `json:"total"`
						Conns []struct {
							Cid  uint64   `json:"cid"`
							Tags []string `json:"tags"`
						} `json:"connections"`
					} `json:"data"`
				}
				if json.Unmarshal(b, &r) != nil {
					return
				}
				for _, c := range r.Data.Conns {
					w.add(clinicOf(c.Tags), connID{r.Server.ID, c.Cid})
				}
				more = more || r.Data.Total > offset+connzPage
			})
		if err != nil || !more {
			return err
		}
	}
}

// collect sends a request every server answers and hands each answer to fn,
// until none came for a moment.
func (w *Warden) collect(ctx context.Context, subject string, req any, fn func([]byte)) error {
	inbox := w.Sys.NewRespInbox()
	sub, err := w.Sys.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("warden: %w", err)
	}
	defer sub.Unsubscribe()
	body, _ := json.Marshal(req)
	if err := w.Sys.PublishRequest(subject, inbox, body); err != nil {
		return fmt.Errorf("warden: %w", err)
	}
	wait := 2 * time.Second // the first answer
	for {
		cctx, cancel := context.WithTimeout(ctx, wait)
		m, err := sub.NextMsgWithContext(cctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil
		}
		fn(m.Data)
		wait = 250 * time.Millisecond // the other servers'
	}
}

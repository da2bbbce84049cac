package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/subjects"
)

// EnsureAgentConsumer creates the clinic's consumer, or updates it to the
// current definition. A consumer kept on disk (made by a relay from before
// consumers lived in memory) cannot change its storage in place: it is
// deleted and made again. Its requests wait in REQUESTS meanwhile.
func EnsureAgentConsumer(ctx context.Context, js jetstream.JetStream, clinic string, ackWait time.Duration) (jetstream.Consumer, error) {
	cfg := AgentConsumer(clinic, ackWait)
	if c, err := js.Consumer(ctx, subjects.StreamRequests, cfg.Durable); err == nil && !c.CachedInfo().Config.MemoryStorage {
		if err := js.DeleteConsumer(ctx, subjects.StreamRequests, cfg.Durable); err != nil {
			return nil, fmt.Errorf("consumer %s: replace the one on disk: %w", cfg.Durable, err)
		}
	}
	c, err := js.CreateOrUpdateConsumer(ctx, subjects.StreamRequests, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", cfg.Durable, err)
	}
	return c, nil
}

// AgentConsumers makes agents' consumers when they ask. An agent can only ask
// for its own clinic (its permissions name one subject), and the relay picks
// the whole config: an agent allowed to create consumers itself could pick a
// push consumer delivering to any subject (nats-server#8274).
type AgentConsumers struct {
	JS      jetstream.JetStream
	AckWait time.Duration
	// Active says whether clinic is onboarded and not revoked.
	Active func(clinic string) bool
	Logger *slog.Logger
}

// agentConsumerReply is the relay's answer; Error is empty when the consumer
// is ready.
type agentConsumerReply struct {
	Error string `json:"error,omitempty"`
}

// Serve answers requests on nc until the subscription is drained. Relays
// sharing a cluster share the work (queue group "relay").
func (s *AgentConsumers) Serve(nc *nats.Conn) (*nats.Subscription, error) {
	sub, err := nc.QueueSubscribe(subjects.AllAgentConsumerRequests, "relay", s.handle)
	if err != nil {
		return nil, fmt.Errorf("serve agent consumers: %w", err)
	}
	return sub, nil
}

func (s *AgentConsumers) handle(m *nats.Msg) {
	var reply agentConsumerReply
	clinic := strings.Split(m.Subject, ".")[2]
	switch {
	case subjects.ValidClinicID(clinic) != nil || !s.Active(clinic):
		reply.Error = "no active clinic " + clinic
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := EnsureAgentConsumer(ctx, s.JS, clinic, s.AckWait); err != nil {
			s.Logger.Error("agent consumer", "clinic_id", clinic, "err", err.Error())
			reply.Error = "the relay could not make the consumer; try again"
		}
	}
	b, _ := json.Marshal(reply)
	m.Respond(b)
}

// AskAgentConsumer is the agent's side: it asks the relay for its clinic's
// consumer and returns it once made.
func AskAgentConsumer(ctx context.Context, js jetstream.JetStream, clinic string) (jetstream.Consumer, error) {
	m, err := js.Conn().RequestWithContext(ctx, subjects.AgentConsumerRequest(clinic), nil)
	if err != nil {
		return nil, fmt.Errorf("ask the relay for a consumer: %w", err)
	}
	var reply agentConsumerReply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		return nil, fmt.Errorf("ask the relay for a consumer: %w", err)
	}
	if reply.Error != "" {
		return nil, errors.New(reply.Error)
	}
	return js.Consumer(ctx, subjects.StreamRequests, subjects.AgentConsumer(clinic))
}

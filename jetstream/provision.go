// Package jetstream defines clinicrelay's streams, buckets and consumers,
// provisions them idempotently, and adapts them to the domain types.
package jetstream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/subjects"
)

// Limits that shape the streams. They are variables of the definitions, not
// flags: changing one is a reviewed change to what every deployment gets.
const (
	RequestMaxAge      = 30 * 24 * time.Hour // an undelivered request leaves after 30 days
	RequestDedupe      = 10 * time.Minute    // Nats-Msg-Id (the request id) window
	RequestsPerClinic  = 10_000              // per clinic and kind; DiscardNewPerSubject refuses more
	MaxClinicConsumers = 50_000              // nats-server 2.15 defaults MaxConsumers to 1000 a stream
	StatusTTL          = 30 * 24 * time.Hour
	HoldMarkerTTL      = time.Minute // how long a hold's expiry marker stays
	// Value caps: a day's slots, a status, a hold, a profile. An agent
	// cannot grow the web front's in-memory mirror past these.
	MaxDayBytes    = 256 << 10
	MaxSmallBytes  = 16 << 10
	RequestMaxSize = 64 << 10
	AgentAckWait   = 30 * time.Second
)

// Options tune provisioning for the deployment.
type Options struct {
	Replicas int // 1 on one node, 3 on a cluster
	// AckWait is how long an agent has to ack a request before it is
	// redelivered (default AgentAckWait); tests shorten it.
	AckWait time.Duration
}

func (o Options) replicas() int {
	if o.Replicas < 1 {
		return 1
	}
	return o.Replicas
}

// RequestsStream is the REQUESTS work queue.
func RequestsStream(o Options) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:                 subjects.StreamRequests,
		Description:          "patient requests, one subject per clinic; removed when the clinic's agent acks",
		Subjects:             []string{subjects.AllRequests},
		Retention:            jetstream.WorkQueuePolicy,
		Storage:              jetstream.FileStorage,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		MaxMsgsPerSubject:    RequestsPerClinic,
		MaxAge:               RequestMaxAge,
		Duplicates:           RequestDedupe,
		MaxMsgSize:           RequestMaxSize,
		MaxConsumers:         MaxClinicConsumers,
		Replicas:             o.replicas(),
	}
}

// Buckets lists the KV buckets.
func Buckets(o Options) []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{Bucket: subjects.BucketAvailability, Description: "free slots: <clinic>.<date>", History: 1,
			Storage: jetstream.FileStorage, Replicas: o.replicas(), MaxValueSize: MaxDayBytes},
		{Bucket: subjects.BucketHolds, Description: "exclusive slot holds with per-key TTL: <clinic>.<slot>", History: 1,
			Storage: jetstream.FileStorage, Replicas: o.replicas(), LimitMarkerTTL: HoldMarkerTTL, MaxValueSize: MaxSmallBytes},
		{Bucket: subjects.BucketStatus, Description: "request outcomes, no PHI: <clinic>.<request>", History: 1,
			Storage: jetstream.FileStorage, Replicas: o.replicas(), TTL: StatusTTL, MaxValueSize: MaxSmallBytes},
		{Bucket: subjects.BucketClinics, Description: "clinic profiles and agent keys", History: 1,
			Storage: jetstream.FileStorage, Replicas: o.replicas(), MaxValueSize: MaxSmallBytes},
	}
}

// Provision creates or updates every stream and bucket; running it twice changes nothing.
func Provision(ctx context.Context, js jetstream.JetStream, o Options) error {
	if _, err := js.CreateOrUpdateStream(ctx, RequestsStream(o)); err != nil {
		return fmt.Errorf("provision %s: %w", subjects.StreamRequests, err)
	}
	for _, b := range Buckets(o) {
		if _, err := js.CreateOrUpdateKeyValue(ctx, b); err != nil {
			return fmt.Errorf("provision %s: %w", b.Bucket, err)
		}
	}
	return nil
}

// AgentConsumer is the durable pull consumer of one clinic's agent.
func AgentConsumer(clinic string, o Options) jetstream.ConsumerConfig {
	ackWait := AgentAckWait
	if o.AckWait > 0 {
		ackWait = o.AckWait
	}
	return jetstream.ConsumerConfig{
		Durable:       subjects.AgentConsumer(clinic),
		Description:   "requests for the agent of clinic " + clinic,
		FilterSubject: subjects.ClinicFilter(clinic),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1, // a request is never dropped for being redelivered
		MaxAckPending: 1000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// EnsureAgentConsumer creates or updates the clinic's durable consumer.
func EnsureAgentConsumer(ctx context.Context, js jetstream.JetStream, clinic string, o Options) error {
	if _, err := js.CreateOrUpdateConsumer(ctx, subjects.StreamRequests, AgentConsumer(clinic, o)); err != nil {
		return fmt.Errorf("consumer %s: %w", subjects.AgentConsumer(clinic), err)
	}
	return nil
}

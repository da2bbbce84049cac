package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/subjects"
)

// ErrRevision means a conditional write lost: the key changed, or exists.
var ErrRevision = errors.New("key changed since it was read")

// Entry is a key's current value.
type Entry struct {
	Value    []byte
	Revision uint64
	Created  time.Time // the server's clock
}

// Bucket reads and writes keys of one KV bucket through its subjects only:
// a JetStream publish to $KV.<bucket>.<key> and the subject form of direct
// get. It needs no $JS.API.STREAM.INFO grant, which (with subjects_filter)
// would list every key of the bucket, other clinics' included; that is why
// agents use it instead of nats.go's KeyValue. Watches still use KeyValue.
type Bucket struct {
	js   jetstream.JetStream
	name string
	// writer, when set, makes the writes instead of a publish: an agent's
	// buckets ask the relay (NewAgentBucket).
	writer func(ctx context.Context, bucket string, w write) (uint64, error)
}

// NewBucket returns the bucket name on js.
func NewBucket(js jetstream.JetStream, name string) *Bucket { return &Bucket{js: js, name: name} }

// Name is the bucket's name.
func (b *Bucket) Name() string { return b.name }

// Get returns the key's value; ErrNotFound when it is missing or deleted.
func (b *Bucket) Get(ctx context.Context, key string) (Entry, error) {
	e, deleted, err := b.get(ctx, key)
	if err == nil && deleted {
		err = ErrNotFound
	}
	return e, err
}

// get returns the latest message of key, telling a delete marker apart.
func (b *Bucket) get(ctx context.Context, key string) (Entry, bool, error) {
	subj := "$JS.API.DIRECT.GET." + subjects.KVStream(b.name) + "." + subjects.KVSubject(b.name, key)
	m, err := b.js.Conn().RequestWithContext(ctx, subj, nil)
	if err != nil {
		return Entry{}, false, fmt.Errorf("get %s: %w", b.name, err)
	}
	if status := m.Header.Get("Status"); status == "404" {
		return Entry{}, false, ErrNotFound
	} else if status != "" {
		return Entry{}, false, fmt.Errorf("get %s: %s %s", b.name, status, m.Header.Get("Description"))
	}
	rev, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return Entry{}, false, fmt.Errorf("get %s: no sequence in the answer", b.name)
	}
	at, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	// A delete or purge, or the server's marker of an expired key.
	op := m.Header.Get("KV-Operation")
	deleted := op == "DEL" || op == "PURGE" || m.Header.Get(jetstream.MarkerReasonHeader) != ""
	return Entry{Value: m.Data, Revision: rev, Created: at}, deleted, nil
}

// write is one write of a key: a put, or a delete (del); rev is the
// revision the key must still have (-1: any, 0: none); ttl > 0 expires it.
type write struct {
	key   string
	value []byte
	del   bool
	rev   int64
	ttl   time.Duration
	// id, when set, is the write's Nats-Msg-Id: an unanswered write is sent
	// again with it until the server answers (settle).
	id string
}

// Put writes value under key.
func (b *Bucket) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	return b.write(ctx, write{key: key, value: value, rev: -1})
}

// Create writes value under key only if the key has no value (a deleted key
// counts as none); ErrRevision otherwise. ttl > 0 expires the key.
func (b *Bucket) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	return b.create(ctx, write{key: key, value: value, ttl: ttl})
}

// CreateSettled is Create for a caller that must know whether it created the
// key: a write left unanswered (timed out, or the connection dropped with it
// in flight) is sent again until the server answers (settle). The server
// checks a create's expected revision before its Nats-Msg-Id, so a first
// copy that was stored after all makes the retry ErrRevision: a caller tells
// its own write apart by the value (Requests.Hold does).
func (b *Bucket) CreateSettled(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	return b.create(ctx, write{key: key, value: value, ttl: ttl, id: newMsgID()})
}

func (b *Bucket) create(ctx context.Context, w write) (uint64, error) {
	rev, err := b.write(ctx, w)
	if !errors.Is(err, ErrRevision) {
		return rev, err
	}
	e, deleted, gerr := b.get(ctx, w.key)
	if gerr != nil || !deleted {
		return 0, ErrRevision
	}
	w.rev = int64(e.Revision)
	return b.write(ctx, w)
}

// PutSettled is Put, settled: an unanswered write is sent again under the
// same Nats-Msg-Id, and the bucket's dedupe window keeps it to one
// revision.
func (b *Bucket) PutSettled(ctx context.Context, key string, value []byte) (uint64, error) {
	return b.write(ctx, write{key: key, value: value, rev: -1, id: newMsgID()})
}

// PutTTL is Put with a per-key TTL: the key expires ttl after this write.
func (b *Bucket) PutTTL(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	return b.write(ctx, write{key: key, value: value, rev: -1, ttl: ttl})
}

// Update writes value under key only if its revision is still rev.
func (b *Bucket) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	return b.write(ctx, write{key: key, value: value, rev: int64(rev)})
}

// UpdateTTL is Update with a new per-key TTL.
func (b *Bucket) UpdateTTL(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration) (uint64, error) {
	return b.write(ctx, write{key: key, value: value, rev: int64(rev), ttl: ttl})
}

// Delete deletes key; with rev > 0 only if its revision is still rev.
func (b *Bucket) Delete(ctx context.Context, key string, rev uint64) error {
	w := write{key: key, del: true, rev: -1}
	if rev > 0 {
		w.rev = int64(rev)
	}
	_, err := b.write(ctx, w)
	return err
}

func (b *Bucket) write(ctx context.Context, w write) (uint64, error) {
	if b.writer != nil {
		return b.writer(ctx, b.name, w)
	}
	return b.publish(ctx, w)
}

// publish writes w with a JetStream publish of the key's subject.
func (b *Bucket) publish(ctx context.Context, w write) (uint64, error) {
	m := &nats.Msg{Subject: subjects.KVSubject(b.name, w.key), Data: w.value}
	if w.del {
		m.Header = nats.Header{"KV-Operation": []string{"DEL"}}
	}
	var opts []jetstream.PublishOpt
	if w.rev >= 0 {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(uint64(w.rev)))
	}
	if w.ttl > 0 {
		opts = append(opts, jetstream.WithMsgTTL(w.ttl))
	}
	var ack *jetstream.PubAck
	var err error
	if w.id != "" {
		ack, err = settle(ctx, b.js, m, w.id, opts...)
	} else {
		ack, err = b.js.PublishMsg(ctx, m, opts...)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return 0, ErrRevision
	}
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", b.name, err)
	}
	return ack.Sequence, nil
}

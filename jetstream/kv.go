package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotFound is returned by GetJSON for a missing or deleted key.
var ErrNotFound = errors.New("key not found")

// PutJSON stores v as JSON under key.
func PutJSON(ctx context.Context, kv *Bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if _, err := kv.Put(ctx, key, b); err != nil {
		return err
	}
	return nil
}

// GetJSON loads key into v, returning ErrNotFound when it is missing.
func GetJSON(ctx context.Context, kv *Bucket, key string, v any) (uint64, error) {
	e, err := kv.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(e.Value, v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", kv.Name(), err)
	}
	return e.Revision, nil
}

// Mirror keeps a bucket in memory, decoded: the web front reads from it
// instead of asking NATS on every page. A value that fails to decode is
// dropped: its key reads as missing, not as its previous value, until a good
// value comes.
type Mirror[T any] struct {
	mu    sync.RWMutex
	items map[string]item[T]
	ready chan struct{}
	cfg   MirrorConfig[T]
}

// MirrorConfig tunes a Mirror; the zero value decodes values as JSON.
type MirrorConfig[T any] struct {
	// Decode turns the value stored under key into a T (json.Unmarshal when nil).
	Decode func(key string, value []byte) (T, error)
	// OnChange, if set, runs after each update.
	OnChange func(key string)
	// OnInvalid, if set, runs for each value Decode refused.
	OnInvalid func(key string, err error)
}

// item is a value with the server's time of its last write.
type item[T any] struct {
	v  T
	at time.Time
}

// NewMirror returns an empty mirror.
func NewMirror[T any](cfg MirrorConfig[T]) *Mirror[T] {
	if cfg.Decode == nil {
		cfg.Decode = func(_ string, b []byte) (T, error) {
			var v T
			err := json.Unmarshal(b, &v)
			return v, err
		}
	}
	return &Mirror[T]{items: map[string]item[T]{}, ready: make(chan struct{}), cfg: cfg}
}

// Run watches pattern in kv until ctx ends, updating the mirror.
func (m *Mirror[T]) Run(ctx context.Context, kv jetstream.KeyValue, pattern string) error {
	w, err := kv.Watch(ctx, pattern)
	if err != nil {
		return fmt.Errorf("watch %s: %w", kv.Bucket(), err)
	}
	defer w.Stop()
	eachEntry(ctx, w, func(e jetstream.KeyValueEntry) {
		if e != nil {
			m.apply(e)
			return
		}
		select { // nil: caught up
		case <-m.ready:
		default:
			close(m.ready)
		}
	})
	return nil
}

// eachEntry calls fn with every entry w delivers (nil once the watch has
// caught up) until ctx ends or the watch closes.
func eachEntry(ctx context.Context, w jetstream.KeyWatcher, fn func(jetstream.KeyValueEntry)) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			fn(e)
		}
	}
}

func (m *Mirror[T]) apply(e jetstream.KeyValueEntry) {
	var v T
	var err error
	put := e.Operation() == jetstream.KeyValuePut
	if put {
		v, err = m.cfg.Decode(e.Key(), e.Value())
	}
	m.mu.Lock()
	if put && err == nil {
		m.items[e.Key()] = item[T]{v: v, at: e.Created()}
	} else {
		delete(m.items, e.Key())
	}
	m.mu.Unlock()
	if err != nil && m.cfg.OnInvalid != nil {
		m.cfg.OnInvalid(e.Key(), err)
	}
	if m.cfg.OnChange != nil {
		m.cfg.OnChange(e.Key())
	}
}

// Ready is closed once the mirror has caught up with the bucket.
func (m *Mirror[T]) Ready() <-chan struct{} { return m.ready }

// Get returns the value under key.
func (m *Mirror[T]) Get(key string) (T, bool) {
	v, _, ok := m.GetAt(key)
	return v, ok
}

// GetAt returns the value under key and when the server stored it.
func (m *Mirror[T]) GetAt(key string) (T, time.Time, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	it, ok := m.items[key]
	return it.v, it.at, ok
}

// Range calls fn for every entry until fn returns false; fn must not call the mirror.
func (m *Mirror[T]) Range(fn func(key string, v T) bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for k, it := range m.items {
		if !fn(k, it.v) {
			return
		}
	}
}

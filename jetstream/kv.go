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
//
// A watch hears of puts and deletes, not of values that vanish behind its
// back: a purged stream, a bucket deleted and made again, a restore. So the
// mirror also looks at the stream every CheckEvery, and when it holds what
// the stream cannot (a revision below the stream's first, more keys than it
// has messages, or a stream made anew) twice in a row, it reads the bucket
// again and swaps in what it found.
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
	// CheckEvery is how often the stream is compared with the mirror
	// (MirrorCheckEvery when 0).
	CheckEvery time.Duration
	// OnVanished, if set, hears that values vanished and the bucket is read again.
	OnVanished func(why string)
}

// MirrorCheckEvery is how often a mirror looks for values that vanished
// unannounced: a purge is noticed within about twice this.
const MirrorCheckEvery = 10 * time.Second

// item is a value with the server's time and revision of its last write.
type item[T any] struct {
	v   T
	at  time.Time
	rev uint64
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
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = MirrorCheckEvery
	}
	return &Mirror[T]{items: map[string]item[T]{}, ready: make(chan struct{}), cfg: cfg}
}

// errVanished ends a watch whose bucket lost values unannounced.
var errVanished = errors.New("values vanished from the bucket")

// Run watches pattern in kv until ctx ends, updating the mirror.
func (m *Mirror[T]) Run(ctx context.Context, kv jetstream.KeyValue, pattern string) error {
	var created time.Time
	for {
		err := m.follow(ctx, kv, pattern, &created)
		if !errors.Is(err, errVanished) {
			return err
		}
	}
}

// follow runs one watch. After the first, the watch fills a fresh map and
// the mirror keeps answering from the old one until the fresh one has
// caught up.
func (m *Mirror[T]) follow(ctx context.Context, kv jetstream.KeyValue, pattern string, created *time.Time) error {
	w, err := kv.Watch(ctx, pattern)
	if err != nil {
		return fmt.Errorf("watch %s: %w", kv.Bucket(), err)
	}
	defer w.Stop()
	var fresh map[string]item[T]
	select {
	case <-m.ready:
		fresh = map[string]item[T]{}
	default:
	}
	tick := time.NewTicker(m.cfg.CheckEvery)
	defer tick.Stop()
	suspect := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return nil
			case e != nil && fresh != nil:
				m.applyTo(fresh, e)
			case e != nil:
				m.Apply(e)
			case fresh != nil: // the fresh read has caught up
				m.swap(fresh)
				fresh = nil
			default:
				select {
				case <-m.ready:
				default:
					close(m.ready)
				}
			}
		case <-tick.C:
			why := ""
			if fresh == nil {
				why = m.vanished(ctx, kv, created)
			}
			if suspect && why != "" {
				if m.cfg.OnVanished != nil {
					m.cfg.OnVanished(why)
				}
				return errVanished
			}
			suspect = why != ""
		}
	}
}

// vanished says why the mirror holds what kv's stream cannot, or "".
func (m *Mirror[T]) vanished(ctx context.Context, kv jetstream.KeyValue, created *time.Time) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := kv.Status(ctx)
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if err != nil || !ok || bs.StreamInfo() == nil {
		return ""
	}
	info := bs.StreamInfo()
	if created.IsZero() {
		*created = info.Created
	}
	if !info.Created.Equal(*created) {
		*created = info.Created
		return "the bucket was made anew"
	}
	m.mu.RLock()
	n, low := len(m.items), uint64(0)
	for _, it := range m.items {
		if low == 0 || it.rev < low {
			low = it.rev
		}
	}
	m.mu.RUnlock()
	switch {
	case n > 0 && low < info.State.FirstSeq:
		return fmt.Sprintf("revision %d is gone (the stream starts at %d)", low, info.State.FirstSeq)
	case uint64(n) > info.State.Msgs:
		return fmt.Sprintf("%d keys held, %d messages in the stream", n, info.State.Msgs)
	}
	return ""
}

// swap makes fresh the mirror and tells of every key either one holds.
func (m *Mirror[T]) swap(fresh map[string]item[T]) {
	m.mu.Lock()
	old := m.items
	m.items = fresh
	m.mu.Unlock()
	for k := range old {
		if _, ok := fresh[k]; !ok {
			m.changed(k)
		}
	}
	for k := range fresh {
		m.changed(k)
	}
}

// eachEntry calls fn with every entry w delivers (nil once the watch has
// caught up) until ctx ends or the watch closes.
// EachEntry calls fn with each update of w until ctx ends or w closes.
func EachEntry(ctx context.Context, w jetstream.KeyWatcher, fn func(jetstream.KeyValueEntry)) {
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

// Apply applies e, a watch's update, to the mirror and tells of it.
func (m *Mirror[T]) Apply(e jetstream.KeyValueEntry) {
	m.mu.Lock()
	m.applyTo(m.items, e)
	m.mu.Unlock()
	m.changed(e.Key())
}

// applyTo applies e to items (locked by the caller when they are the
// mirror's own).
func (m *Mirror[T]) applyTo(items map[string]item[T], e jetstream.KeyValueEntry) {
	var v T
	var err error
	put := e.Operation() == jetstream.KeyValuePut
	if put {
		v, err = m.cfg.Decode(e.Key(), e.Value())
	}
	if put && err == nil {
		items[e.Key()] = item[T]{v: v, at: e.Created(), rev: e.Revision()}
	} else {
		delete(items, e.Key())
	}
	if err != nil && m.cfg.OnInvalid != nil {
		m.cfg.OnInvalid(e.Key(), err)
	}
}

func (m *Mirror[T]) changed(key string) {
	if m.cfg.OnChange != nil {
		m.cfg.OnChange(key)
	}
}

// SetCheckEvery sets how often the mirror looks for values that vanished
// unannounced; call it before Run.
func (m *Mirror[T]) SetCheckEvery(d time.Duration) { m.cfg.CheckEvery = d }

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

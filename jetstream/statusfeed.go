package jetstream

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clinicrelay/clinicrelay/services"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// StatusFeed follows STATUS from now on and hands every new status to a
// callback: one watch per web process feeds all its live status pages.
type StatusFeed struct {
	JS     jetstream.JetStream
	Logger *slog.Logger
}

// Run calls fn with each status written from now until ctx ends. A watch
// that ends (the bucket was re-created, say) is started again; updates
// missed meanwhile are not replayed, which the pages cover by re-reading the
// status now and then.
func (f *StatusFeed) Run(ctx context.Context, fn func(services.Status)) error {
	log := f.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for ctx.Err() == nil {
		if err := f.watch(ctx, fn); err != nil && ctx.Err() == nil {
			log.Warn("status feed", "err", err.Error())
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

func (f *StatusFeed) watch(ctx context.Context, fn func(services.Status)) error {
	kv, err := f.JS.KeyValue(ctx, subjects.BucketStatus)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var st services.Status
			if json.Unmarshal(e.Value(), &st) == nil && subjects.StatusKey(st.ClinicID, st.RequestID) == e.Key() {
				fn(st)
			}
		}
	}
}

package readmodel

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	cjs "github.com/clinicrelay/clinicrelay/jetstream"
	"github.com/clinicrelay/clinicrelay/subjects"
)

// StatusFeed follows STATUS from now on and hands the key of every new
// status to a callback: one watch per web process feeds all its live status
// pages, which read the status themselves if one of them shows it. The feed
// decodes nothing: most statuses written are on no open page.
type StatusFeed struct {
	JS     jetstream.JetStream
	Logger *slog.Logger
}

// Run calls fn with the key of each status written from now until ctx
// ends. A watch that ends (the bucket was re-created, say) is started again;
// updates missed meanwhile are not replayed, which the pages cover by
// re-reading their status now and then.
func (f *StatusFeed) Run(ctx context.Context, fn func(key string)) error {
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

func (f *StatusFeed) watch(ctx context.Context, fn func(string)) error {
	kv, err := f.JS.KeyValue(ctx, subjects.BucketStatus)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	cjs.EachEntry(ctx, w, func(e jetstream.KeyValueEntry) {
		if e != nil && e.Operation() == jetstream.KeyValuePut {
			fn(e.Key())
		}
	})
	return nil
}

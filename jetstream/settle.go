package jetstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// attemptTimeout bounds one attempt of a settled publish: a server that is
// up answers a publish in milliseconds, so an attempt unanswered for this
// long is sent again rather than waited on.
const attemptTimeout = time.Second

// settle publishes m with Nats-Msg-Id id until the server answers: a
// publish left unanswered (timed out, or the connection dropped with it in
// flight) may have been stored, so it is sent again with the same id, and
// the stream's dedupe window turns a copy already stored into the first
// one's ack. A publish the connection could not send (reconnecting) is
// tried again the same way. The server's answer, ack or API error, is
// final; ctx's end stops it with the last error.
func settle(ctx context.Context, js jetstream.JetStream, m *nats.Msg, id string, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	opts = append(opts, jetstream.WithMsgID(id))
	wait := 10 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		ack, err := js.PublishMsg(actx, m, opts...)
		cancel()
		var apiErr *jetstream.APIError
		if err == nil || errors.As(err, &apiErr) || ctx.Err() != nil {
			return ack, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// newMsgID is a fresh Nats-Msg-Id for one settled write.
func newMsgID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

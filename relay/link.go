package relay

import (
	"context"
	"sync"
)

// link is the state of the web front's NATS connection as a context: done
// while the connection is down, a fresh one once it is back. The web front
// derives request contexts from it, so a request waiting on NATS when the
// connection drops is answered at once instead of at its timeout.
type link struct {
	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
}

func newLink() *link {
	l := &link{}
	l.up()
	return l
}

// current is the context of the connection as it is now.
func (l *link) current() context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ctx
}

func (l *link) up() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx == nil || l.ctx.Err() != nil {
		l.ctx, l.cancel = context.WithCancel(context.Background())
	}
}

func (l *link) down() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cancel()
}

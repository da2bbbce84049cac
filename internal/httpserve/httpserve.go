// Package httpserve runs an http.Server until its context ends and stops it
// without the 5-second wait net/http gives a connection that has sent
// nothing yet. The web front and the agent's console both serve through it.
package httpserve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// Serve serves srv on ln until ctx ends, then shuts it down, giving requests
// in flight up to grace. Connections that have sent nothing yet (spares a
// client or a browser dialled ahead of need) are closed at once: net/http
// counts them idle only after 5 s, and Shutdown would wait for them.
// It returns nil after a shutdown that ctx asked for.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	var mu sync.Mutex
	fresh := map[net.Conn]bool{}
	next := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		mu.Lock()
		if st == http.StateNew {
			fresh[c] = true
		} else {
			delete(fresh, c)
		}
		mu.Unlock()
		if next != nil {
			next(c, st)
		}
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(sctx) }()
	mu.Lock()
	for c := range fresh {
		c.Close()
	}
	mu.Unlock()
	if err := <-done; err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

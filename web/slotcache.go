package web

import (
	"sync"
	"time"
)

// slotCache keeps the slots API's rendered answers. One is served again
// until its clinic's catalog version changes, or for at most slotCacheFor,
// so that slots which have started drop out: under load the slots API then
// costs what writing the bytes costs, not rendering them.
type slotCache struct {
	mu sync.Mutex
	m  map[string]cachedSlots
}

type cachedSlots struct {
	version uint64
	until   time.Time
	body    []byte
}

const (
	slotCacheFor  = time.Second
	slotCacheSize = 4096 // answers kept; past it the cache starts over
)

func (c *slotCache) get(key string, version uint64, now time.Time) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || e.version != version || !now.Before(e.until) {
		return nil, false
	}
	return e.body, true
}

func (c *slotCache) put(key string, version uint64, now time.Time, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= slotCacheSize {
		c.m = map[string]cachedSlots{}
	}
	c.m[key] = cachedSlots{version: version, until: now.Add(slotCacheFor), body: body}
}

package grpctrace

import (
	"sync"
	"sync/atomic"
)

// maxCached bounds each cache: a server with an unknown-service handler
// sees method names chosen by its clients.
const maxCached = 1024

// cache holds values derived once from a string key (a method name, a
// target). Reads are a lock-free map lookup; the rare insert replaces the
// map with a copy. Past maxCached entries values are derived on every call
// and not kept.
type cache[V any] struct {
	m  atomic.Pointer[map[string]V]
	mu sync.Mutex
}

func (c *cache[V]) get(key string, derive func(string) V) V {
	if mp := c.m.Load(); mp != nil {
		if v, ok := (*mp)[key]; ok {
			return v
		}
	}
	v := derive(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	var n int
	if old != nil {
		if cached, ok := (*old)[key]; ok {
			return cached
		}
		n = len(*old)
	}
	if n >= maxCached {
		return v
	}
	next := make(map[string]V, n+1)
	if old != nil {
		for k, e := range *old {
			next[k] = e
		}
	}
	next[key] = v
	c.m.Store(&next)
	return v
}

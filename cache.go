package grpctrace

import (
	"sync"
	"sync/atomic"
)

// maxCached bounds each cache, whatever names reach it.
const maxCached = 1024

// cache holds values derived once from a string key (a method name, a
// target). Reads are a lock-free map lookup; the rare insert replaces the
// map with a copy. Past maxCached entries nothing more is kept.
type cache[V any] struct {
	m  atomic.Pointer[map[string]V]
	mu sync.Mutex
}

func (c *cache[V]) lookup(key string) (V, bool) {
	if mp := c.m.Load(); mp != nil {
		v, ok := (*mp)[key]
		return v, ok
	}
	var zero V
	return zero, false
}

// add keeps v for key, unless a value is kept already: it returns the value
// kept, or v when the cache is full.
func (c *cache[V]) add(key string, v V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	var n int
	if old != nil {
		if kept, ok := (*old)[key]; ok {
			return kept
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

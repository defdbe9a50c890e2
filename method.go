package grpctrace

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/opentracing/opentracing-go"
)

// method holds what grpctrace derives from a full method name. It is
// computed once per method and shared by every RPC of that method.
type method struct {
	full          string
	operationName string
	// tags are rpc.service and rpc.method, already boxed so that starting a
	// span does not convert them again.
	tags []opentracing.Tag
}

// maxCachedMethods bounds the cache: a server with an unknown-service
// handler sees method names chosen by its clients.
const maxCachedMethods = 1024

// methodCache maps full method names to their derived data. Reads are a
// lock-free map lookup; the map is replaced, copied, on the rare insert.
type methodCache struct {
	m  atomic.Pointer[map[string]*method]
	mu sync.Mutex
}

func (c *config) method(fullMethod string) *method {
	if mp := c.methods.m.Load(); mp != nil {
		if m, ok := (*mp)[fullMethod]; ok {
			return m
		}
	}
	m := c.newMethod(fullMethod)
	c.methods.mu.Lock()
	defer c.methods.mu.Unlock()
	old := c.methods.m.Load()
	var n int
	if old != nil {
		if cached, ok := (*old)[fullMethod]; ok {
			return cached
		}
		n = len(*old)
	}
	if n >= maxCachedMethods {
		return m
	}
	next := make(map[string]*method, n+1)
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	next[fullMethod] = m
	c.methods.m.Store(&next)
	return m
}

func (c *config) newMethod(fullMethod string) *method {
	name := fullMethod
	if c.operationName != nil {
		name = c.operationName(fullMethod)
	}
	service, meth := splitMethod(fullMethod)
	m := &method{full: fullMethod, operationName: name}
	if service != "" {
		m.tags = append(m.tags, opentracing.Tag{Key: tagRPCService, Value: service})
	}
	if meth != "" {
		m.tags = append(m.tags, opentracing.Tag{Key: tagRPCMethod, Value: meth})
	}
	return m
}

// splitMethod splits "/package.Service/Method" into its service and method.
// A malformed name yields what can be recognised, possibly nothing.
func splitMethod(fullMethod string) (service, method string) {
	name := strings.TrimPrefix(fullMethod, "/")
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}

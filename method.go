package grpctrace

import "strings"

// method holds what grpctrace derives from a full method name. It is
// computed once per method and shared by every RPC of that method.
type method struct {
	full          string
	operationName string
	// rec is what the recorder's spans of the method start with
	// (recorder.forMethod).
	rec any
}

// method returns what is derived from fullMethod. It is kept when cache is
// set, for a name the door knows is served: a server's stats handler sees
// names chosen by its clients before gRPC knows whether it serves them,
// and those must not fill the cache in place of real methods.
func (c *config) method(fullMethod string, cache bool) *method {
	if m, ok := c.methods.lookup(fullMethod); ok {
		return m
	}
	m := c.newMethod(fullMethod)
	if cache {
		m = c.methods.add(fullMethod, m)
	}
	return m
}

func (c *config) newMethod(fullMethod string) *method {
	name := c.rec.defaultName(fullMethod)
	if c.operationName != nil {
		name = c.operationName(fullMethod)
	}
	service, meth := splitMethod(fullMethod)
	return &method{full: fullMethod, operationName: name, rec: c.rec.forMethod(fullMethod, service, meth)}
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

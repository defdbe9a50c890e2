package grpctrace

import (
	"strings"

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

func (c *config) method(fullMethod string) *method {
	return c.methods.get(fullMethod, c.newMethod)
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

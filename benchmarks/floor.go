package benchmarks

import (
	"context"
	"strings"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

// FloorOperation names the floor's spans, as a gRPC method would.
const FloorOperation = "/grpctrace.testpb.TestService/Unary"

// The floor is what one traced RPC costs the tracer itself, without gRPC
// and without any instrumentation library: a client span with its kind,
// its span context injected into fresh metadata, extracted from it, a
// server span child of it with its kind, and the two finishes. No tag but
// the kind, no status, no peer. No instrumentation can trace an RPC for
// less, so an instrumentation's overhead above the untraced base is
// measured against it.
//
// Floor names, as they appear in benchmark names (impl=NAME): the floor
// through the OpenTracing API, which the OpenTracing contenders use, and
// through the OpenTelemetry API, which otelgrpc and grpctrace's
// OpenTelemetry path use.
const (
	FloorOpenTracing = "opentracing"
	FloorOTel        = "otel"
)

// FloorNames lists the floors, each measured with every tracer.
var FloorNames = []string{FloorOpenTracing, FloorOTel}

// Floor returns one floor RPC of the named API with t's tracer.
func Floor(name string, t *Tracer) func() {
	switch name {
	case FloorOpenTracing:
		ot := t.OT
		return func() { openTracingFloor(ot) }
	case FloorOTel:
		tracer := t.Provider.Tracer("github.com/c2e00e20/grpctrace/benchmarks")
		prop := t.Propagator
		return func() { otelFloor(tracer, prop) }
	}
	panic("benchmarks: unknown floor " + name)
}

// FloorOf returns the name of the floor a contender's overhead is measured
// against: the floor of the API it uses.
func FloorOf(contender string) string {
	if IsOTel(contender) {
		return FloorOTel
	}
	return FloorOpenTracing
}

// openTracingFloor is one floor RPC through the OpenTracing API; it returns
// the metadata, for tests.
func openTracingFloor(t opentracing.Tracer) *floorCarrier {
	client := t.StartSpan(FloorOperation, ext.SpanKindRPCClient)
	md := newFloorCarrier()
	_ = t.Inject(client.Context(), opentracing.TextMap, md)
	parent, _ := t.Extract(opentracing.TextMap, md)
	server := t.StartSpan(FloorOperation, opentracing.ChildOf(parent), ext.SpanKindRPCServer)
	server.Finish()
	client.Finish()
	return md
}

// otelFloor is one floor RPC through the OpenTelemetry API.
func otelFloor(t trace.Tracer, prop propagation.TextMapPropagator) *floorCarrier {
	ctx, client := t.Start(context.Background(), FloorOperation, trace.WithSpanKind(trace.SpanKindClient))
	md := newFloorCarrier()
	prop.Inject(ctx, md)
	ctx = prop.Extract(context.Background(), md)
	_, server := t.Start(ctx, FloorOperation, trace.WithSpanKind(trace.SpanKindServer))
	server.End()
	client.End()
	return md
}

// floorCarrier is fresh gRPC metadata as cheaply as it can be had: the map,
// and one array that backs the values of up to len(vals) keys. It is an
// OpenTracing TextMap reader and writer and an OpenTelemetry TextMapCarrier,
// so that neither API needs an adapter.
type floorCarrier struct {
	md   metadata.MD
	vals [4]string
	n    int
}

func newFloorCarrier() *floorCarrier {
	return &floorCarrier{md: make(metadata.MD, 4)}
}

// Set implements opentracing.TextMapWriter and propagation.TextMapCarrier.
func (c *floorCarrier) Set(key, val string) {
	key = strings.ToLower(key)
	if c.n < len(c.vals) {
		c.vals[c.n] = val
		c.md[key] = c.vals[c.n : c.n+1 : c.n+1]
		c.n++
		return
	}
	c.md[key] = []string{val}
}

// ForeachKey implements opentracing.TextMapReader.
func (c *floorCarrier) ForeachKey(handler func(key, val string) error) error {
	for k, vs := range c.md {
		for _, v := range vs {
			if err := handler(k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// Get implements propagation.TextMapCarrier.
func (c *floorCarrier) Get(key string) string {
	if vs := c.md[strings.ToLower(key)]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// Keys implements propagation.TextMapCarrier.
func (c *floorCarrier) Keys() []string {
	keys := make([]string, 0, len(c.md))
	for k := range c.md {
		keys = append(keys, k)
	}
	return keys
}

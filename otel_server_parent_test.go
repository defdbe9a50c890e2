package grpctrace_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/c2e00e20/grpctrace"
)

// serveOTelUnary runs one unary RPC through the OpenTelemetry server
// interceptor under ctx with the incoming metadata md, and returns the
// handler's baggage and the one span recorded.
func serveOTelUnary(t *testing.T, ctx context.Context, md metadata.MD, opts ...grpctrace.Option) (baggage.Baggage, otelSpanData) {
	t.Helper()
	tp := newOTelTP()
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	opts = append(opts, grpctrace.WithTracerProvider(tp), grpctrace.WithPropagators(prop))
	var bag baggage.Baggage
	_, err := grpctrace.UnaryServerInterceptor(opts...)(metadata.NewIncomingContext(ctx, md), nil,
		&grpc.UnaryServerInfo{FullMethod: "/pkg.Svc/M"},
		func(ctx context.Context, _ any) (any, error) { bag = baggage.FromContext(ctx); return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	spans := tp.snapshot()
	if len(spans) != 1 || !spans[0].Ended {
		t.Fatalf("%d spans, want 1 ended", len(spans))
	}
	return bag, spans[0]
}

// A caller's baggage reaches the handler even when it sends no usable
// trace context, as the propagator alone would deliver it.
func TestOTelBaggageWithoutTraceContext(t *testing.T) {
	for name, md := range map[string]metadata.MD{
		"no traceparent":      {"baggage": {"user=alice"}},
		"corrupt traceparent": {"traceparent": {"garbage"}, "baggage": {"user=alice"}},
	} {
		t.Run(name, func(t *testing.T) {
			bag, span := serveOTelUnary(t, context.Background(), md)
			if got := bag.Member("user").Value(); got != "alice" {
				t.Errorf("handler's baggage user=%q, want alice", got)
			}
			if span.Parent.IsValid() {
				t.Errorf("span has parent %v, want a root", span.Parent)
			}
		})
	}
}

// A server span with no remote parent starts a new trace, as on the
// OpenTracing path, even when the context already carries a span (another
// tracing layer's ahead of grpctrace); a public endpoint's always does.
func TestOTelServerSpanWithoutRemoteParentIsRoot(t *testing.T) {
	outer := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), outer)
	for name, opts := range map[string][]grpctrace.Option{
		"private": nil,
		"public":  {grpctrace.WithPublicEndpoint()},
	} {
		t.Run(name, func(t *testing.T) {
			_, span := serveOTelUnary(t, ctx, metadata.MD{}, opts...)
			if span.Parent.IsValid() || span.SpanContext.TraceID() == outer.TraceID() {
				t.Errorf("span joined the context's span %v (parent %v), want a new trace", outer, span.Parent)
			}
		})
	}
}

package hardening

import (
	"context"
	"testing"
	"time"

	otbridge "go.opentelemetry.io/otel/bridge/opentracing"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// endedSpans is a span processor handing every ended span to a channel.
type endedSpans chan sdktrace.ReadOnlySpan

func (endedSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (e endedSpans) OnEnd(s sdktrace.ReadOnlySpan)                 { e <- s }
func (endedSpans) Shutdown(context.Context) error                  { return nil }
func (endedSpans) ForceFlush(context.Context) error                { return nil }

// TestOuterInterceptorMixedCaseTraceparentJoined: an interceptor before
// grpctrace's server interceptor rebuilds the incoming context with
// metadata.NewIncomingContext and a hand-built MD whose key is mixed-case
// ("Traceparent"), as metadata.MD literals allow. Under the OpenTelemetry
// OpenTracing bridge with the W3C trace context propagator, and on the
// OpenTelemetry path with that propagator, the server span must join that
// trace: its trace ID and its parent's span ID are the header's.
func TestOuterInterceptorMixedCaseTraceparentJoined(t *testing.T) {
	for _, path := range tracePaths {
		t.Run(string(path), func(t *testing.T) { outerInterceptorMixedCase(t, path) })
	}
}

func outerInterceptorMixedCase(t *testing.T, path tracePath) {
	const traceID, spanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	ended := make(endedSpans, 8)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(ended))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	var opt []grpctrace.Option
	if path == pathOpenTelemetry {
		opt = []grpctrace.Option{grpctrace.WithTracerProvider(tp), grpctrace.WithPropagators(propagation.TraceContext{})}
	} else {
		bt, _ := otbridge.NewTracerPair(tp.Tracer("github.com/c2e00e20/grpctrace/hardening"))
		bt.SetTextMapPropagator(propagation.TraceContext{})
		opt = []grpctrace.Option{grpctrace.WithTracer(bt)}
	}

	outer := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx = metadata.NewIncomingContext(ctx, metadata.MD{"Traceparent": []string{"00-" + traceID + "-" + spanID + "-01"}})
		return h(ctx, req)
	}
	addr := serveTestService(t, grpc.ChainUnaryInterceptor(outer, grpctrace.UnaryServerInterceptor(opt...)))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// The client is not traced: the only trace is the one the outer
	// interceptor puts in.
	if _, err := testpb.NewTestServiceClient(conn).Unary(context.Background(), &testpb.Request{}); err != nil {
		t.Fatal(err)
	}

	var s sdktrace.ReadOnlySpan
	select {
	case s = <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("no span ended within 10 s")
	}
	if want := spanName(path, "Unary"); s.Name() != want || s.SpanKind() != trace.SpanKindServer {
		t.Fatalf("ended span %q of kind %v, want the server span %q", s.Name(), s.SpanKind(), want)
	}
	if got := s.SpanContext().TraceID().String(); got != traceID {
		t.Errorf("server span's trace ID %s, want the header's %s", got, traceID)
	}
	if got := s.Parent().SpanID().String(); got != spanID {
		t.Errorf("server span's parent span ID %s, want the header's %s", got, spanID)
	}
}

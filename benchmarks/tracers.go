package benchmarks

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/mocktracer"
	otbridge "go.opentelemetry.io/otel/bridge/opentracing"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Tracer names, as they appear in benchmark names (tracer=NAME).
const (
	TracerNoop   = "noop"
	TracerMock   = "mock"
	TracerBridge = "bridge"
)

// TracerNames lists the tracers every contender is measured with.
var TracerNames = []string{TracerNoop, TracerMock, TracerBridge}

// Tracer is the one tracing back end that every instrumented side of a run
// shares. The OpenTracing contenders use OT; the OpenTelemetry ones
// (otelgrpc, grpctrace-otel, grpctrace-otel-stats) use Provider and
// Propagator, the closest equivalent:
//
//   - noop: opentracing.NoopTracer; the OpenTelemetry contenders get
//     OpenTelemetry's no-op provider.
//   - mock: the OpenTracing mocktracer, which keeps every finished span;
//     the OpenTelemetry contenders get the OpenTelemetry SDK with a span
//     processor that keeps every ended span in memory, the SDK's
//     counterpart of a mock tracer.
//   - bridge: the OpenTelemetry SDK (AlwaysSample, a span processor that
//     drops ended spans) behind the OpenTracing bridge, with the W3C trace
//     context propagator; the OpenTelemetry contenders get the same SDK
//     provider and propagator directly.
type Tracer struct {
	Name       string
	OT         opentracing.Tracer
	Provider   trace.TracerProvider
	Propagator propagation.TextMapPropagator

	// kept is the SDK's in-memory store for the OpenTelemetry contenders
	// in the mock column, dropped the bridge's dropping processor.
	kept    *keepSpans
	dropped *dropSpans
}

// NewTracer returns a fresh tracer of the given name (see TracerNames).
func NewTracer(name string) *Tracer {
	w3c := propagation.TraceContext{}
	switch name {
	case TracerNoop:
		return &Tracer{Name: name, OT: opentracing.NoopTracer{}, Provider: tracenoop.NewTracerProvider(), Propagator: w3c}
	case TracerMock:
		kept := new(keepSpans)
		return &Tracer{
			Name:       name,
			OT:         mocktracer.New(),
			Provider:   sdkProvider(kept),
			Propagator: w3c,
			kept:       kept,
		}
	case TracerBridge:
		dropped := new(dropSpans)
		tp := sdkProvider(dropped)
		return &Tracer{Name: name, OT: bridge(tp, w3c), Provider: tp, Propagator: w3c, dropped: dropped}
	}
	panic("benchmarks: unknown tracer " + name)
}

// Reset forgets the spans the tracer keeps in memory, so that a long
// benchmark's memory stays flat. Benchmarks call it every ResetEvery
// iterations.
func (t *Tracer) Reset() {
	if m, ok := t.OT.(*mocktracer.MockTracer); ok {
		m.Reset()
	}
	if t.kept != nil {
		t.kept.reset()
	}
}

// ResetEvery is how often, in iterations, benchmarks reset the tracer.
const ResetEvery = 1024

// sdkProvider is the OpenTelemetry SDK sampling every span and handing the
// ended ones to p alone.
func sdkProvider(p sdktrace.SpanProcessor) *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(p),
	)
}

// bridge is an OpenTracing tracer backed by tp, propagating with prop.
func bridge(tp trace.TracerProvider, prop propagation.TextMapPropagator) opentracing.Tracer {
	bt, _ := otbridge.NewTracerPair(tp.Tracer("github.com/c2e00e20/grpctrace/benchmarks"))
	bt.SetTextMapPropagator(prop)
	return bt
}

// dropSpans is a span processor that drops every span, counting the ended
// ones so that tests can tell the SDK really recorded them.
type dropSpans struct{ ended atomic.Int64 }

func (*dropSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (d *dropSpans) OnEnd(sdktrace.ReadOnlySpan)                   { d.ended.Add(1) }
func (*dropSpans) Shutdown(context.Context) error                  { return nil }
func (*dropSpans) ForceFlush(context.Context) error                { return nil }

// keepSpans is a span processor that keeps every ended span in memory.
type keepSpans struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (*keepSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (*keepSpans) Shutdown(context.Context) error                  { return nil }
func (*keepSpans) ForceFlush(context.Context) error                { return nil }

func (k *keepSpans) OnEnd(s sdktrace.ReadOnlySpan) {
	k.mu.Lock()
	k.spans = append(k.spans, s)
	k.mu.Unlock()
}

func (k *keepSpans) reset() {
	k.mu.Lock()
	k.spans = nil
	k.mu.Unlock()
}

func (k *keepSpans) ended() []sdktrace.ReadOnlySpan {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]sdktrace.ReadOnlySpan(nil), k.spans...)
}

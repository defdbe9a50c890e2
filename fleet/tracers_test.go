package fleet

// The tracers a fleet runs, each set up as a real deployment would and
// recording in memory: mocktracer, jaeger-client-go, and the OpenTelemetry
// SDK behind its OpenTracing bridge. A fleetTracer reports the spans it
// finished with their trace, span and parent IDs, so that a test can check
// that a server span is its client span's child.
//
// Entry points (kept stable, other files of the package use them):
//
//	fleetTracers: name and constructor of each tracer
//	newMockTracer(t), newJaegerTracer(t), newBridgeTracer(t) *fleetTracer
//	(*fleetTracer).IDs(sc) / Finished() / FinishedSpan(ids) / FinishedChildren(parent, kind) / RoundTrip(items)

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"
	"github.com/opentracing/opentracing-go/mocktracer"
	"github.com/uber/jaeger-client-go"
	otelbridge "go.opentelemetry.io/otel/bridge/opentracing"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// server, connection, stream and tracer the tests start must be closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Span kinds as finishedSpan reports them: ext's values, which the
// OpenTelemetry SDK's SpanKind.String also gives.
var (
	kindClient = string(ext.SpanKindRPCClientEnum)
	kindServer = string(ext.SpanKindRPCServerEnum)
)

// spanIDs identifies a span in its tracer's own notation.
type spanIDs struct{ Trace, Span string }

// finishedSpan is a span a tracer finished.
type finishedSpan struct {
	Name string
	// Kind is the span.kind ("client", "server"; "" or "internal" for
	// other spans).
	Kind string
	spanIDs
	// Parent is the span ID of the parent, "" for a root.
	Parent string
}

// fleetTracer is an OpenTracing tracer with access to what it recorded.
type fleetTracer struct {
	Name   string
	Tracer opentracing.Tracer
	// OTel is, for the bridge, the OpenTelemetry TracerProvider paired
	// with it (its tracers' spans are the bridge's); nil otherwise.
	OTel trace.TracerProvider

	// finishedFrom converts the spans the tracer finished, from the
	// index given on: the tracers' lists only grow, so Finished converts
	// each span once however often a test asks.
	finishedFrom func(from int) []finishedSpan
	ids          func(opentracing.SpanContext) (spanIDs, bool)
	warnings     func() []string

	mu       sync.Mutex
	finished []finishedSpan
}

// fleetTracers lists the tracers every fleet test runs with.
var fleetTracers = []struct {
	name string
	new  func(testing.TB) *fleetTracer
}{
	{"mocktracer", newMockTracer},
	{"jaeger", newJaegerTracer},
	{"otel-bridge", newBridgeTracer},
}

// IDs returns the trace and span IDs of one of the tracer's span contexts;
// false for nil or a foreign context.
func (ft *fleetTracer) IDs(sc opentracing.SpanContext) (spanIDs, bool) {
	if sc == nil {
		return spanIDs{}, false
	}
	return ft.ids(sc)
}

// Finished returns every span the tracer has finished so far, in order.
func (ft *fleetTracer) Finished() []finishedSpan {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.finished = append(ft.finished, ft.finishedFrom(len(ft.finished))...)
	return ft.finished[:len(ft.finished):len(ft.finished)]
}

// FinishedSpan returns the finished span with these IDs.
func (ft *fleetTracer) FinishedSpan(ids spanIDs) (finishedSpan, bool) {
	for _, s := range ft.Finished() {
		if s.spanIDs == ids {
			return s, true
		}
	}
	return finishedSpan{}, false
}

// FinishedChildren returns the finished spans of the kind ("" for any)
// whose parent is the span with these IDs.
func (ft *fleetTracer) FinishedChildren(parent spanIDs, kind string) []finishedSpan {
	var out []finishedSpan
	for _, s := range ft.Finished() {
		if s.Trace == parent.Trace && s.Parent == parent.Span && (kind == "" || s.Kind == kind) {
			out = append(out, s)
		}
	}
	return out
}

// Warnings returns what the tracer warned about (the bridge's warning
// handler); nil for tracers that have none.
func (ft *fleetTracer) Warnings() []string {
	if ft.warnings == nil {
		return nil
	}
	return ft.warnings()
}

// RoundTrip sets the baggage items on a new span, injects its context as
// HTTPHeaders into an http.Header and extracts it back, without gRPC: the
// baggage as this tracer itself delivers it to a server, the reference
// for what a handler should read after a gRPC hop.
func (ft *fleetTracer) RoundTrip(items map[string]string) (map[string]string, error) {
	span := ft.Tracer.StartSpan("fleet.roundtrip")
	defer span.Finish()
	for k, v := range items {
		span.SetBaggageItem(k, v)
	}
	h := http.Header{}
	if err := ft.Tracer.Inject(span.Context(), opentracing.HTTPHeaders, opentracing.HTTPHeadersCarrier(h)); err != nil {
		return nil, fmt.Errorf("inject: %w", err)
	}
	sc, err := ft.Tracer.Extract(opentracing.HTTPHeaders, opentracing.HTTPHeadersCarrier(h))
	if err != nil {
		return nil, fmt.Errorf("extract: %w", err)
	}
	got := map[string]string{}
	sc.ForeachBaggageItem(func(k, v string) bool {
		got[k] = v
		return true
	})
	return got, nil
}

// newMockTracer is opentracing-go's mocktracer, with its default
// propagators (HTTPHeaders URL-escapes baggage values; extraction
// lowercases baggage keys).
func newMockTracer(testing.TB) *fleetTracer {
	mt := mocktracer.New()
	return &fleetTracer{
		Name:   "mocktracer",
		Tracer: mt,
		finishedFrom: func(from int) []finishedSpan {
			spans := mt.FinishedSpans()[from:]
			out := make([]finishedSpan, len(spans))
			for i, s := range spans {
				out[i] = finishedSpan{
					Name:    s.OperationName,
					Kind:    kindTag(s.Tag(string(ext.SpanKind))),
					spanIDs: spanIDs{strconv.Itoa(s.SpanContext.TraceID), strconv.Itoa(s.SpanContext.SpanID)},
				}
				if s.ParentID != 0 {
					out[i].Parent = strconv.Itoa(s.ParentID)
				}
			}
			return out
		},
		ids: func(sc opentracing.SpanContext) (spanIDs, bool) {
			msc, ok := sc.(mocktracer.MockSpanContext)
			if !ok {
				return spanIDs{}, false
			}
			return spanIDs{strconv.Itoa(msc.TraceID), strconv.Itoa(msc.SpanID)}, true
		},
	}
}

// newJaegerTracer is jaeger-client-go sampling everything into an
// in-memory reporter, with its default propagation for both formats
// (uber-trace-id, baggage under uberctx- with URL-escaped values in
// HTTPHeaders; extraction lowercases keys). It is closed when the test
// ends.
func newJaegerTracer(t testing.TB) *fleetTracer {
	reporter := jaeger.NewInMemoryReporter()
	tracer, closer := jaeger.NewTracer("fleet", jaeger.NewConstSampler(true), reporter)
	t.Cleanup(func() { _ = closer.Close() })
	return &fleetTracer{
		Name:   "jaeger",
		Tracer: tracer,
		finishedFrom: func(from int) []finishedSpan {
			spans := reporter.GetSpans()[from:]
			out := make([]finishedSpan, 0, len(spans))
			for _, os := range spans {
				s := os.(*jaeger.Span)
				sc := s.SpanContext()
				fs := finishedSpan{
					Name:    s.OperationName(),
					Kind:    kindTag(s.Tags()[string(ext.SpanKind)]),
					spanIDs: spanIDs{sc.TraceID().String(), sc.SpanID().String()},
				}
				if sc.ParentID() != 0 {
					fs.Parent = sc.ParentID().String()
				}
				out = append(out, fs)
			}
			return out
		},
		ids: func(sc opentracing.SpanContext) (spanIDs, bool) {
			jsc, ok := sc.(jaeger.SpanContext)
			if !ok {
				return spanIDs{}, false
			}
			return spanIDs{jsc.TraceID().String(), jsc.SpanID().String()}, true
		},
	}
}

// newBridgeTracer is the OpenTelemetry SDK (sampling everything, spans
// recorded in memory) behind the OpenTracing bridge, as a service moving to
// OpenTelemetry runs it: NewTracerPair, so that the bridge's SDK tracer is
// the wrapper whose deferred context setup makes opentracing.ContextWithSpan
// put the span in the context as OpenTelemetry's current span too, and W3C
// trace context and baggage as the wire format. Nothing global is set. The
// provider is shut down when the test ends.
func newBridgeTracer(t testing.TB) *fleetTracer {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	bridge, wrapper := otelbridge.NewTracerPair(tp.Tracer("fleet"))
	bridge.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	var (
		mu       sync.Mutex
		warnings []string
	)
	bridge.SetWarningHandler(func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		warnings = append(warnings, msg)
	})
	return &fleetTracer{
		Name:   "otel-bridge",
		Tracer: bridge,
		OTel:   wrapper,
		finishedFrom: func(from int) []finishedSpan {
			spans := rec.Ended()[from:]
			out := make([]finishedSpan, len(spans))
			for i, s := range spans {
				out[i] = finishedSpan{
					Name:    s.Name(),
					Kind:    s.SpanKind().String(),
					spanIDs: spanIDs{s.SpanContext().TraceID().String(), s.SpanContext().SpanID().String()},
				}
				if s.Parent().IsValid() {
					out[i].Parent = s.Parent().SpanID().String()
				}
			}
			return out
		},
		ids: func(sc opentracing.SpanContext) (spanIDs, bool) {
			// The bridge's span context embeds OpenTelemetry's.
			osc, ok := sc.(interface {
				TraceID() trace.TraceID
				SpanID() trace.SpanID
			})
			if !ok {
				return spanIDs{}, false
			}
			return spanIDs{osc.TraceID().String(), osc.SpanID().String()}, true
		},
		warnings: func() []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), warnings...)
		},
	}
}

// kindTag turns a span.kind tag's value (ext.SpanKindEnum or a string)
// into a string; "" when absent.
func kindTag(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

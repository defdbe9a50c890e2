// Package spanlog records finished spans as JSON lines, one per span,
// written to the kernel when the span finishes, so that a test reads every
// span a process finished even after the process was killed. It also
// builds what the hardening tests and the fault helper trace with, for
// each of grpctrace's two paths, both wrapped to catch a span finished
// twice: the OpenTelemetry SDK behind its OpenTracing bridge, with the W3C
// trace context and baggage propagators (Tracer), and the SDK's tracer
// provider itself, for WithTracerProvider, with those propagators
// (TracerProvider, Propagator).
package spanlog

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opentracing/opentracing-go"
	otbridge "go.opentelemetry.io/otel/bridge/opentracing"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"google.golang.org/grpc/codes"
)

// Span is a finished span as recorded.
type Span struct {
	PID        int            `json:"pid"`
	TraceID    string         `json:"trace_id"`
	SpanID     string         `json:"span_id"`
	ParentID   string         `json:"parent_id,omitempty"`
	Name       string         `json:"name"`
	Kind       string         `json:"kind"` // client, server, internal, ...
	Start      time.Time      `json:"start"`
	End        time.Time      `json:"end"`
	Attributes map[string]any `json:"attributes,omitempty"`
	Events     []Event        `json:"events,omitempty"`
	// Links are the span's links (OpenTelemetry path: a public
	// endpoint's link to its caller).
	Links []Link `json:"links,omitempty"`
	// Status is the span's OpenTelemetry status code ("Unset", "Error",
	// "Ok") and StatusDescription its description.
	Status            string `json:"status,omitempty"`
	StatusDescription string `json:"status_description,omitempty"`
	// Twice is set on the record of a second Finish of the same span,
	// which the tracer otherwise ignores.
	Twice bool `json:"twice,omitempty"`
}

// Event is a span's log event.
type Event struct {
	Name       string         `json:"name"`
	Time       time.Time      `json:"time"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// Link is a span's link to another span.
type Link struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
}

// Code returns the gRPC status code grpctrace tagged the span with, and
// false when there is none: the OpenTracing path's rpc.grpc.status_code
// (a number), or the OpenTelemetry path's rpc.response.status_code (the
// code's canonical name, "NOT_FOUND").
func (s Span) Code() (codes.Code, bool) {
	switch v := s.Attributes["rpc.grpc.status_code"].(type) {
	case float64: // read back from JSON
		return codes.Code(v), true
	case int64:
		return codes.Code(v), true
	}
	if name, ok := s.Attributes["rpc.response.status_code"].(string); ok {
		return CodeOf(name)
	}
	return 0, false
}

// canonicalCodes are gRPC's status codes by the names its specification
// (and OpenTelemetry's rpc.response.status_code) gives them.
var canonicalCodes = map[string]codes.Code{
	"OK":                  codes.OK,
	"CANCELLED":           codes.Canceled,
	"UNKNOWN":             codes.Unknown,
	"INVALID_ARGUMENT":    codes.InvalidArgument,
	"DEADLINE_EXCEEDED":   codes.DeadlineExceeded,
	"NOT_FOUND":           codes.NotFound,
	"ALREADY_EXISTS":      codes.AlreadyExists,
	"PERMISSION_DENIED":   codes.PermissionDenied,
	"RESOURCE_EXHAUSTED":  codes.ResourceExhausted,
	"FAILED_PRECONDITION": codes.FailedPrecondition,
	"ABORTED":             codes.Aborted,
	"OUT_OF_RANGE":        codes.OutOfRange,
	"UNIMPLEMENTED":       codes.Unimplemented,
	"INTERNAL":            codes.Internal,
	"UNAVAILABLE":         codes.Unavailable,
	"DATA_LOSS":           codes.DataLoss,
	"UNAUTHENTICATED":     codes.Unauthenticated,
}

// CodeOf returns the code a canonical name ("NOT_FOUND") names, and false
// for a name that is none.
func CodeOf(name string) (codes.Code, bool) {
	c, ok := canonicalCodes[name]
	return c, ok
}

// HasEvent reports whether the span logged an event named name.
func (s Span) HasEvent(name string) bool {
	for _, e := range s.Events {
		if e.Name == name {
			return true
		}
	}
	return false
}

// FromSDK converts an ended SDK span.
func FromSDK(s sdktrace.ReadOnlySpan) Span {
	out := Span{
		PID:     os.Getpid(),
		TraceID: s.SpanContext().TraceID().String(),
		SpanID:  s.SpanContext().SpanID().String(),
		Name:    s.Name(),
		Kind:    s.SpanKind().String(),
		Start:   s.StartTime(),
		End:     s.EndTime(),
	}
	if p := s.Parent(); p.IsValid() {
		out.ParentID = p.SpanID().String()
	}
	if attrs := s.Attributes(); len(attrs) > 0 {
		out.Attributes = make(map[string]any, len(attrs))
		for _, a := range attrs {
			out.Attributes[string(a.Key)] = a.Value.AsInterface()
		}
	}
	for _, e := range s.Events() {
		ev := Event{Name: e.Name, Time: e.Time}
		if len(e.Attributes) > 0 {
			ev.Attributes = make(map[string]any, len(e.Attributes))
			for _, a := range e.Attributes {
				ev.Attributes[string(a.Key)] = a.Value.AsInterface()
			}
		}
		out.Events = append(out.Events, ev)
	}
	for _, l := range s.Links() {
		out.Links = append(out.Links, Link{TraceID: l.SpanContext.TraceID().String(), SpanID: l.SpanContext.SpanID().String()})
	}
	if st := s.Status(); st.Code != 0 || st.Description != "" {
		out.Status, out.StatusDescription = st.Code.String(), st.Description
	}
	return out
}

// File is a span processor that appends every ended span to a file as one
// JSON line, with one write(2) per span, before the span's Finish returns:
// once Finish has returned, the span survives the process being killed.
type File struct {
	mu  sync.Mutex
	f   *os.File
	err error
}

// Create opens (creating or truncating) the file spans are written to.
func Create(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &File{f: f}, nil
}

// Write appends one span.
func (w *File) Write(s Span) {
	line, err := json.Marshal(s)
	if err == nil {
		line = append(line, '\n')
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil && w.f != nil {
		_, err = w.f.Write(line)
	}
	if err != nil && w.err == nil {
		w.err = err
	}
}

// OnStart implements sdktrace.SpanProcessor.
func (*File) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd implements sdktrace.SpanProcessor.
func (w *File) OnEnd(s sdktrace.ReadOnlySpan) { w.Write(FromSDK(s)) }

// ForceFlush implements sdktrace.SpanProcessor; spans are never buffered.
func (*File) ForceFlush(context.Context) error { return nil }

// Shutdown implements sdktrace.SpanProcessor.
func (w *File) Shutdown(context.Context) error { return w.Close() }

// Close closes the file and returns the first write error.
func (w *File) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		if err := w.f.Close(); err != nil && w.err == nil {
			w.err = err
		}
		w.f = nil
	}
	return w.err
}

// Read reads every span of a file. A line that does not parse is an
// error: each span is written whole, so even a killed writer leaves none.
func Read(path string) ([]Span, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var spans []Span
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for n := 1; sc.Scan(); n++ {
		var s Span
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return spans, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		spans = append(spans, s)
	}
	return spans, sc.Err()
}

// Memory is a span processor keeping ended spans in memory, converted as
// File records them.
type Memory struct {
	mu      sync.Mutex
	spans   []Span
	changed chan struct{} // closed and replaced on every span
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{changed: make(chan struct{})} }

func (*Memory) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (m *Memory) OnEnd(s sdktrace.ReadOnlySpan)                 { m.Write(FromSDK(s)) }
func (*Memory) ForceFlush(context.Context) error                { return nil }
func (*Memory) Shutdown(context.Context) error                  { return nil }

// Write records one span.
func (m *Memory) Write(s Span) {
	m.mu.Lock()
	m.spans = append(m.spans, s)
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

// Spans returns the spans recorded so far.
func (m *Memory) Spans() []Span {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Span(nil), m.spans...)
}

// Reset forgets the spans recorded so far.
func (m *Memory) Reset() {
	m.mu.Lock()
	m.spans = nil
	m.mu.Unlock()
}

// Wait waits until ok holds for the spans recorded, at most d, and returns
// them; the error says what was there when time ran out.
func (m *Memory) Wait(d time.Duration, ok func([]Span) bool) ([]Span, error) {
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for {
		m.mu.Lock()
		spans := append([]Span(nil), m.spans...)
		changed := m.changed
		m.mu.Unlock()
		if ok(spans) {
			return spans, nil
		}
		select {
		case <-changed:
		case <-timeout.C:
			return spans, fmt.Errorf("%d spans after %v, not the ones awaited", len(spans), d)
		}
	}
}

// Writer is where Tracer reports a span finished twice.
type Writer interface{ Write(Span) }

// Tracer returns the OpenTelemetry SDK, sampling every span and handing it
// to processors, behind the OpenTracing bridge with the W3C trace context
// and baggage propagators. A second Finish of a span is written to twice,
// as a record with Twice set. Shut the provider down when done.
func Tracer(twice Writer, processors ...sdktrace.SpanProcessor) (opentracing.Tracer, *sdktrace.TracerProvider) {
	opts := []sdktrace.TracerProviderOption{sdktrace.WithSampler(sdktrace.AlwaysSample())}
	for _, p := range processors {
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	bt, _ := otbridge.NewTracerPair(tp.Tracer("github.com/c2e00e20/grpctrace/hardening"))
	bt.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return &onceTracer{Tracer: bt, twice: twice}, tp
}

// onceTracer counts each span's finishes: the SDK silently ignores a
// second one, which is a bug of the instrumentation worth seeing.
type onceTracer struct {
	opentracing.Tracer
	twice Writer
}

func (t *onceTracer) StartSpan(name string, opts ...opentracing.StartSpanOption) opentracing.Span {
	return &onceSpan{Span: t.Tracer.StartSpan(name, opts...), tracer: t, name: name}
}

type onceSpan struct {
	opentracing.Span
	tracer   *onceTracer
	name     string
	finishes atomic.Int32
}

func (s *onceSpan) Finish() { s.FinishWithOptions(opentracing.FinishOptions{}) }

func (s *onceSpan) FinishWithOptions(o opentracing.FinishOptions) {
	if s.finishes.Add(1) > 1 {
		if s.tracer.twice != nil {
			s.tracer.twice.Write(Span{PID: os.Getpid(), Name: s.name, Twice: true, End: time.Now()})
		}
		return
	}
	s.Span.FinishWithOptions(o)
}

func (s *onceSpan) Tracer() opentracing.Tracer { return s.tracer }

// TracerProvider returns the OpenTelemetry SDK's tracer provider,
// sampling every span and handing it to processors, for grpctrace's
// WithTracerProvider, wrapped so that a second End of a span is written to
// twice, as a record with Twice set (the SDK silently ignores it). Shut the
// SDK's provider, the second result, down when done.
func TracerProvider(twice Writer, processors ...sdktrace.SpanProcessor) (trace.TracerProvider, *sdktrace.TracerProvider) {
	opts := []sdktrace.TracerProviderOption{sdktrace.WithSampler(sdktrace.AlwaysSample())}
	for _, p := range processors {
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	return &onceProvider{sdk: tp, twice: twice}, tp
}

// Propagator is what the hardening tests propagate with on the
// OpenTelemetry path, as the bridge of Tracer does: W3C trace context and
// W3C baggage.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// onceProvider hands out tracers whose spans count their ends.
type onceProvider struct {
	embedded.TracerProvider
	sdk   *sdktrace.TracerProvider
	twice Writer
}

func (p *onceProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return &onceOTelTracer{Tracer: p.sdk.Tracer(name, opts...), twice: p.twice}
}

// onceOTelTracer embeds the SDK's tracer (and with it the interface's
// embedded.Tracer).
type onceOTelTracer struct {
	trace.Tracer
	twice Writer
}

// Start starts the SDK's span and puts its wrapper in the context in its
// place, so that whoever takes the span from the context ends the
// wrapper.
func (t *onceOTelTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	ctx, s := t.Tracer.Start(ctx, name, opts...)
	w := &onceOTelSpan{Span: s, name: name, twice: t.twice}
	return trace.ContextWithSpan(ctx, w), w
}

type onceOTelSpan struct {
	trace.Span
	name     string
	twice    Writer
	finishes atomic.Int32
}

func (s *onceOTelSpan) End(opts ...trace.SpanEndOption) {
	if s.finishes.Add(1) > 1 {
		if s.twice != nil {
			s.twice.Write(Span{PID: os.Getpid(), Name: s.name, Twice: true, End: time.Now()})
		}
		return
	}
	s.Span.End(opts...)
}

// ErrNoSpan is returned by Find when no span matches.
var ErrNoSpan = errors.New("spanlog: no such span")

// Find returns the only span for which match holds.
func Find(spans []Span, match func(Span) bool) (Span, error) {
	var found []Span
	for _, s := range spans {
		if match(s) {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return Span{}, ErrNoSpan
	case 1:
		return found[0], nil
	}
	return Span{}, fmt.Errorf("spanlog: %d matching spans, want 1", len(found))
}

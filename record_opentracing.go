package grpctrace

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"
	"github.com/opentracing/opentracing-go/log"
	"google.golang.org/grpc/metadata"
)

// wireFormat is the format span contexts travel in. gRPC metadata are
// HTTP/2 headers, and the other OpenTracing integrations of gRPC
// (opentracing-contrib/go-grpc, go-grpc-middleware) use HTTPHeaders too:
// tracers escape baggage values for it (mocktracer and jaeger-client-go
// URL-escape them), and some use other header names per format, so the
// same format is what lets a trace and its baggage cross between services
// traced by different libraries.
const wireFormat = opentracing.HTTPHeaders

// otRecorder records through the OpenTracing API.
type otRecorder struct {
	tracer opentracing.Tracer // nil: opentracing.GlobalTracer(), per RPC
	kind   opentracing.Tag
}

func newOTRecorder(t opentracing.Tracer, s side) *otRecorder {
	r := &otRecorder{tracer: t, kind: ext.SpanKindRPCServer}
	if s == clientSide {
		r.kind = ext.SpanKindRPCClient
	}
	return r
}

// forMethod returns the tags every span of the method starts with, boxed
// once.
func (r *otRecorder) forMethod(_, service, method string) any {
	tags := []tag{{tagComponent, componentName}, {tagRPCSystem, rpcSystemGRPC}}
	if service != "" {
		tags = append(tags, tag{tagRPCService, service})
	}
	if method != "" {
		tags = append(tags, tag{tagRPCMethod, method})
	}
	return tags
}

// forTarget returns a client's tags for the server it calls.
func (r *otRecorder) forTarget(target string) any { return targetTags(target) }

// defaultName is the full method, "/pkg.Service/Method", as the other
// OpenTracing integrations of gRPC name their spans.
func (r *otRecorder) defaultName(fullMethod string) string { return fullMethod }

// noopSpan is what a NoopTracer starts.
var noopSpan = opentracing.NoopTracer{}.StartSpan("")

func (r *otRecorder) noopContext(ctx context.Context) context.Context {
	if opentracing.SpanFromContext(ctx) != nil {
		return ctx
	}
	return opentracing.ContextWithSpan(ctx, noopSpan)
}

// otCall is a call with its OpenTracing span, allocated together.
type otCall struct {
	call call
	span otSpan
}

func (r *otRecorder) newCall() *call {
	t := r.tracer
	if t == nil {
		t = opentracing.GlobalTracer()
	}
	if _, noop := t.(opentracing.NoopTracer); noop {
		return nil
	}
	oc := &otCall{span: otSpan{tracer: t, kind: r.kind}}
	oc.call.rec = &oc.span
	return &oc.call
}

// otSpan is one OpenTracing span. It holds the single start option
// grpctrace gives the tracer, and what that option applies: a variadic
// slice of options escapes into the tracer, and the span is allocated
// anyway.
type otSpan struct {
	tracer opentracing.Tracer
	kind   opentracing.Tag
	span   opentracing.Span
	from   spanStart
	opts   [1]opentracing.StartSpanOption
	in     incomingCarrier
	// records are logs for the finish to stamp (see outcome).
	records []opentracing.LogRecord
}

// startOption applies a span's kind, parent, tags and start time. The kind
// and the parent are start options, never tags set later, because some
// tracers (the OpenTelemetry bridge) only read them at start.
type startOption struct{ s *otSpan }

func (o startOption) Apply(so *opentracing.StartSpanOptions) {
	from := &o.s.from
	if parent, ok := from.parent.(opentracing.SpanContext); ok {
		opentracing.ChildOf(parent).Apply(so)
	}
	o.s.kind.Apply(so)
	method, _ := from.method.([]tag)
	target, _ := from.target.([]tag)
	for _, tags := range [2][]tag{method, target} {
		for _, t := range tags {
			opentracing.Tag{Key: t.key, Value: t.value}.Apply(so)
		}
	}
	var buf [maxPeerTags]tag
	for _, t := range appendPeerTags(buf[:0], from.addr) {
		opentracing.Tag{Key: t.key, Value: t.value}.Apply(so)
	}
}

func (s *otSpan) localParent(ctx context.Context) (any, bool) {
	if p := opentracing.SpanFromContext(ctx); p != nil {
		return p.Context(), true
	}
	return nil, false
}

// extract reads the remote span context. A missing one is no error; a
// corrupt one, or a tracer that panics on hostile input, is returned as an
// error to record on the span, and the RPC goes on without a parent.
func (s *otSpan) extract(ctx context.Context) (parent any, err error) {
	defer func() {
		if r := recover(); r != nil {
			parent, err = nil, fmt.Errorf("tracer panicked extracting the span context: %v", r)
		}
	}()
	s.in = incomingCarrier{ctx: ctx}
	carrier := &s.in
	sc, err := s.tracer.Extract(wireFormat, carrier)
	if err != nil {
		// Tracers return a zero span context with their errors.
		sc = nil
	}
	if errors.Is(err, opentracing.ErrSpanContextNotFound) {
		err = nil
	}
	if cerr := carrier.corruption(); cerr != nil && err == nil {
		err = cerr
	}
	if sc == nil {
		return nil, err // not a nil SpanContext in an any
	}
	return sc, err
}

func (s *otSpan) start(ctx context.Context, name string, from spanStart) context.Context {
	s.from = from
	s.opts[0] = startOption{s}
	s.span = s.tracer.StartSpan(name, s.opts[:]...)
	return opentracing.ContextWithSpan(ctx, s.span)
}

func (s *otSpan) inject(md metadata.MD) error {
	return s.tracer.Inject(s.span.Context(), wireFormat, MetadataCarrier(md))
}

func (s *otSpan) tag(key string, value any) { s.span.SetTag(key, value) }

func (s *otSpan) peer(addr net.Addr) {
	var buf [maxPeerTags]tag
	for _, t := range appendPeerTags(buf[:0], addr) {
		s.span.SetTag(t.key, t.value)
	}
}

// log logs the event as OpenTracing's conventions have it: an "event"
// field naming it, then the others.
func (s *otSpan) log(name string, fields []field) {
	out := make([]log.Field, 1, len(fields)+1)
	out[0] = log.String("event", name)
	for _, f := range fields {
		if f.numeric {
			out = append(out, log.Int64(f.key, f.num))
		} else {
			out = append(out, log.String(f.key, f.str))
		}
	}
	s.span.LogFields(out...)
}

// outcome tags the status. The error event is logged now, or, for a span
// that finishes at gRPC's end time, kept to be a log record of the finish,
// stamped with that time.
func (s *otSpan) outcome(e spanEnd) {
	s.span.SetTag(tagRPCStatusCode, uint32(e.code))
	if !e.isError {
		return
	}
	s.span.SetTag(tagError, true)
	fields := []log.Field{
		log.String("event", eventError),
		log.String("error.kind", e.code.String()),
		log.String("message", e.message),
	}
	if e.at.IsZero() {
		s.span.LogFields(fields...)
		return
	}
	s.records = []opentracing.LogRecord{{Timestamp: e.at, Fields: fields}}
}

func (s *otSpan) finish(at time.Time) {
	if at.IsZero() {
		s.span.Finish()
		return
	}
	s.span.FinishWithOptions(opentracing.FinishOptions{FinishTime: at, LogRecords: s.records})
}

// logUntrusted records the identity of a trace that a public endpoint
// refused to join, so that the caller's trace and the server's new one can
// be correlated by hand, without letting anything the caller sent reach the
// server's trace.
//
// OpenTracing span contexts are opaque, so the identity is what the tracer
// itself writes for the remote context: it is injected into a scratch
// carrier and logged, less anything that carries baggage (the baggage items'
// own keys, and keys that name baggage, as the W3C, Jaeger and OpenTracing
// propagators do).
func (s *otSpan) logUntrusted(parent any) {
	remote, ok := parent.(opentracing.SpanContext)
	if !ok {
		return
	}
	scratch := metadata.MD{}
	if err := s.tracer.Inject(remote, wireFormat, MetadataCarrier(scratch)); err != nil {
		s.span.LogFields(log.String("event", eventUntrustedParent), log.String("message", err.Error()))
		return
	}
	var baggageKeys []string
	remote.ForeachBaggageItem(func(k, _ string) bool {
		baggageKeys = append(baggageKeys, strings.ToLower(k))
		return true
	})
	keys := MetadataCarrier(scratch).Keys()
	sort.Strings(keys)
	fields := []log.Field{log.String("event", eventUntrustedParent)}
	for _, key := range keys {
		if carriesBaggage(key, baggageKeys) {
			continue
		}
		fields = append(fields, log.String(key, MetadataCarrier(scratch).Get(key)))
	}
	s.span.LogFields(fields...)
}

func carriesBaggage(key string, baggageKeys []string) bool {
	if strings.Contains(key, "baggage") || strings.HasPrefix(key, "uberctx-") {
		return true
	}
	for _, b := range baggageKeys {
		if strings.HasSuffix(key, b) {
			return true
		}
	}
	return false
}

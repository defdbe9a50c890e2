package grpctrace

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// scopeName is the instrumentation scope of grpctrace's OpenTelemetry
// spans.
const scopeName = "github.com/c2e00e20/grpctrace"

// Attribute keys of the OpenTelemetry RPC conventions, as otelgrpc writes
// them, so that mixed fleets read alike.
const (
	attrRPCMethod     = "rpc.method"
	attrRPCSystemName = "rpc.system.name"
	attrStatusCode    = "rpc.response.status_code"
	attrServerAddress = "server.address"
	attrServerPort    = "server.port"
)

// otelRecorder records through the OpenTelemetry API.
type otelRecorder struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator // nil: otel.GetTextMapPropagator(), per RPC
	noop   bool
	server bool
	kind   trace.SpanStartOption
	// servers holds, per server address (a server's own, or an attempt's
	// peer), the attributes that name it: a server sees few.
	servers cache[*serverName]
}

// serverName names a server: its attributes, and the start option that
// sets them.
type serverName struct {
	attrs []attribute.KeyValue
	opt   trace.SpanStartOption
}

func newOTelRecorder(tp trace.TracerProvider, p propagation.TextMapPropagator, s side) *otelRecorder {
	r := &otelRecorder{tracer: tp.Tracer(scopeName), prop: p, server: s == serverSide, kind: trace.WithSpanKind(trace.SpanKindServer)}
	if s == clientSide {
		r.kind = trace.WithSpanKind(trace.SpanKindClient)
	}
	_, r.noop = tp.(noop.TracerProvider)
	return r
}

// otelCall is a call with its OpenTelemetry span, allocated together.
type otelCall struct {
	call call
	span otelSpan
}

func (r *otelRecorder) newCall() *call {
	if r.noop {
		return nil
	}
	oc := &otelCall{span: otelSpan{r: r}}
	oc.call.rec = &oc.span
	return &oc.call
}

// noopContext returns ctx: OpenTelemetry's SpanFromContext never returns
// nil.
func (r *otelRecorder) noopContext(ctx context.Context) context.Context { return ctx }

// defaultName is the method as OpenTelemetry's RPC conventions name it,
// "pkg.Service/Method".
func (r *otelRecorder) defaultName(fullMethod string) string {
	return strings.TrimPrefix(fullMethod, "/")
}

// forMethod returns the start option with the method's attributes.
func (r *otelRecorder) forMethod(fullMethod, _, _ string) any {
	attrs := []attribute.KeyValue{attribute.String(attrRPCSystemName, rpcSystemGRPC)}
	if name, ok := strings.CutPrefix(fullMethod, "/"); ok {
		attrs = append(attrs, attribute.String(attrRPCMethod, name))
	}
	return trace.WithAttributes(attrs...)
}

// forTarget returns the start option naming the server a client calls:
// server.address and server.port from the target's endpoint.
func (r *otelRecorder) forTarget(target string) any {
	endpoint, host, port, ok := targetEndpoint(target)
	if endpoint == "" {
		return nil
	}
	if !ok {
		return trace.WithAttributes(attribute.String(attrServerAddress, endpoint))
	}
	return trace.WithAttributes(attribute.String(attrServerAddress, host), attribute.Int(attrServerPort, int(port)))
}

// serverAttrs returns what names a server by an address: server.address,
// and server.port when the address is host:port, derived once per address.
func (r *otelRecorder) serverAttrs(a net.Addr) *serverName {
	s := a.String()
	if n, ok := r.servers.lookup(s); ok {
		return n
	}
	attrs := addrAttrs(s)
	return r.servers.add(s, &serverName{attrs: attrs, opt: trace.WithAttributes(attrs...)})
}

func addrAttrs(s string) []attribute.KeyValue {
	host, port, err := "", "", error(nil)
	if strings.IndexByte(s, ':') >= 0 { // else no host:port, and no error to allocate
		host, port, err = net.SplitHostPort(s)
	}
	p, perr := strconv.Atoi(port)
	if host == "" || err != nil || perr != nil {
		return []attribute.KeyValue{attribute.String(attrServerAddress, s)}
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
	}
	return []attribute.KeyValue{attribute.String(attrServerAddress, host), attribute.Int(attrServerPort, p)}
}

// otelSpan is one OpenTelemetry span. It holds the start options it gives
// the tracer, which reads them during Start: the span is allocated anyway,
// a slice of options of its own would be one allocation more.
type otelSpan struct {
	r    *otelRecorder
	span trace.Span
	ctx  context.Context // carrying the span, as Start returned it
	// extracted is what the propagators made of a server's incoming
	// metadata: the caller's baggage, and the remote span context if any.
	extracted context.Context
	in        incomingCarrier
	opts      [5]trace.SpanStartOption
}

func (s *otelSpan) propagator() propagation.TextMapPropagator {
	if s.r.prop != nil {
		return s.r.prop
	}
	return otel.GetTextMapPropagator()
}

// localParent reports whether ctx carries a span; the span starts under
// ctx itself.
func (s *otelSpan) localParent(ctx context.Context) (any, bool) {
	return nil, trace.SpanContextFromContext(ctx).IsValid()
}

// extract reads what the propagators make of the incoming metadata: the
// caller's baggage, which the handler's context then carries, and the
// remote span context, the parent (as the context itself). A propagator
// that panics on hostile input is returned as an error, and the RPC goes
// on without a parent or baggage.
func (s *otelSpan) extract(ctx context.Context) (parent any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.extracted, parent, err = nil, nil, fmt.Errorf("propagator panicked extracting the span context: %v", r)
		}
	}()
	s.in = incomingCarrier{ctx: ctx}
	s.extracted = s.propagator().Extract(ctx, &s.in)
	err = s.in.corruption()
	if sc := trace.SpanContextFromContext(s.extracted); !sc.IsValid() || !sc.IsRemote() {
		return nil, err
	}
	return s.extracted, err
}

// start starts the span. A client's is the child of the span in ctx. A
// server's is the child of the remote span context, under the extracted
// context (its baggage); without one, or on a public endpoint, it starts a
// new trace, as on the OpenTracing path, linked to the caller's context
// where a public endpoint had one, and a public endpoint passes no
// baggage on.
func (s *otelSpan) start(ctx context.Context, name string, from spanStart) context.Context {
	parent := ctx
	if s.extracted != nil && !from.public {
		parent = s.extracted
	}
	opts := append(s.opts[:0], s.r.kind)
	if o, ok := from.method.(trace.SpanStartOption); ok {
		opts = append(opts, o)
	}
	if o, ok := from.target.(trace.SpanStartOption); ok {
		opts = append(opts, o)
	}
	if from.local != nil {
		opts = append(opts, s.r.serverAttrs(from.local).opt)
	}
	if s.r.server && from.parent == nil {
		opts = append(opts, trace.WithNewRoot())
	}
	if untrusted, ok := from.untrusted.(context.Context); ok {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: trace.SpanContextFromContext(untrusted)}))
	}
	s.ctx, s.span = s.r.tracer.Start(parent, name, opts...)
	return s.ctx
}

// inject writes the span context and the caller's baggage.
func (s *otelSpan) inject(md metadata.MD) error {
	s.propagator().Inject(s.ctx, MetadataCarrier(md))
	return nil
}

func (s *otelSpan) tag(key string, value any) {
	switch v := value.(type) {
	case bool:
		s.span.SetAttributes(attribute.Bool(key, v))
	case int32:
		s.span.SetAttributes(attribute.Int(key, int(v)))
	case string:
		s.span.SetAttributes(attribute.String(key, v))
	default:
		s.span.SetAttributes(attribute.String(key, fmt.Sprint(v)))
	}
}

func (s *otelSpan) peer(addr net.Addr) { s.span.SetAttributes(s.r.serverAttrs(addr).attrs...) }

// log adds the event, its fields as attributes.
func (s *otelSpan) log(name string, fields []field) {
	attrs := make([]attribute.KeyValue, len(fields))
	for i, f := range fields {
		if f.numeric {
			attrs[i] = attribute.Int64(f.key, f.num)
		} else {
			attrs[i] = attribute.String(f.key, f.str)
		}
	}
	s.span.AddEvent(name, trace.WithAttributes(attrs...))
}

// logUntrusted does nothing: the span links the caller's context (start).
func (s *otelSpan) logUntrusted(any) {}

// outcome sets the status code attribute, and the span's status to Error,
// with the status message, when the classifier says so.
func (s *otelSpan) outcome(e spanEnd) {
	s.span.SetAttributes(statusAttr(e.code)...)
	if e.isError {
		s.span.SetStatus(otelcodes.Error, e.message)
	}
}

func (s *otelSpan) finish(at time.Time) {
	if at.IsZero() {
		s.span.End()
		return
	}
	s.span.End(trace.WithTimestamp(at))
}

// canonicalCodes are gRPC's status codes as its specification names them.
var canonicalCodes = [...]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}

// statusAttrs are the status code attributes, made once: SetAttributes
// copies them.
var statusAttrs = func() (a [len(canonicalCodes)][]attribute.KeyValue) {
	for c, name := range canonicalCodes {
		a[c] = []attribute.KeyValue{attribute.String(attrStatusCode, name)}
	}
	return a
}()

func statusAttr(c codes.Code) []attribute.KeyValue {
	if int(c) < len(statusAttrs) {
		return statusAttrs[c]
	}
	return []attribute.KeyValue{attribute.String(attrStatusCode, "CODE("+strconv.Itoa(int(c))+")")}
}

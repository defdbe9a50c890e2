package grpctrace

import (
	"context"
	"net/url"
	"strings"

	"github.com/opentracing/opentracing-go"
	"go.opentelemetry.io/otel/trace"
)

// Keys of the fields LogFields returns.
const (
	LogFieldTraceID = "trace_id"
	LogFieldSpanID  = "span_id"
)

// TraceIDs returns the trace ID and span ID of the span in ctx, for
// correlating log lines with traces; both are empty when ctx carries no
// span, or a span whose IDs TraceIDs cannot read. It never panics.
//
// It looks, in order, for:
//
//  1. A valid OpenTelemetry span context (trace.SpanContextFromContext):
//     what WithTracerProvider puts in the handler's and the client's
//     context, and what the OpenTelemetry OpenTracing bridge puts there
//     too when its tracer is the one NewTracerPair returns (its
//     ContextWithSpanHook). The IDs are in OpenTelemetry's notation:
//     32 and 16 lowercase hex digits.
//  2. An OpenTracing span (opentracing.SpanFromContext): its context is
//     injected, in the HTTPHeaders format, into a scratch
//     opentracing.TextMapCarrier with the span's own tracer, and the IDs
//     are read from the first of the well-known headers below found (keys
//     compared case-insensitively), as the tracer wrote them.
//
// The headers read from an OpenTracing span's context are:
//
//   - W3C trace context: "traceparent" (version-trace-span-flags, the
//     trace ID 32 hex digits and the span ID 16, not all zeros);
//   - Jaeger: "uber-trace-id" (trace:span:parent:flags, hex; the value may
//     be URL-escaped);
//   - B3 multi-header: "x-b3-traceid" and "x-b3-spanid";
//   - opentracing-go's mocktracer: "mockpfx-ids-traceid" and
//     "mockpfx-ids-spanid" (decimal).
//
// An OpenTracing tracer that propagates in another format, fails to
// inject, or panics doing so gives empty IDs.
func TraceIDs(ctx context.Context) (traceID, spanID string) {
	if ctx == nil {
		return "", ""
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String(), sc.SpanID().String()
	}
	span := opentracing.SpanFromContext(ctx)
	if span == nil {
		return "", ""
	}
	return openTracingIDs(span)
}

// LogFields returns the IDs of the span in ctx as key/value pairs,
// []any{"trace_id", traceID, "span_id", spanID} (see TraceIDs), or nil when
// TraceIDs gives none. It suits go-grpc-middleware v2's
// logging.WithFieldsFromContext, whose logging.Fields is an []any:
//
//	logging.WithFieldsFromContext(func(ctx context.Context) logging.Fields {
//		return grpctrace.LogFields(ctx)
//	})
func LogFields(ctx context.Context) []any {
	t, s := TraceIDs(ctx)
	if t == "" || s == "" {
		return nil
	}
	return []any{LogFieldTraceID, t, LogFieldSpanID, s}
}

// openTracingIDs reads the IDs of an OpenTracing span from what its tracer
// injects (see TraceIDs); empty when it cannot.
func openTracingIDs(span opentracing.Span) (traceID, spanID string) {
	defer func() {
		if recover() != nil {
			traceID, spanID = "", ""
		}
	}()
	tracer, sc := span.Tracer(), span.Context()
	if tracer == nil || sc == nil {
		return "", ""
	}
	carrier := opentracing.TextMapCarrier{}
	if err := tracer.Inject(sc, opentracing.HTTPHeaders, carrier); err != nil {
		return "", ""
	}
	h := make(map[string]string, len(carrier))
	for k, v := range carrier {
		h[strings.ToLower(k)] = v
	}
	if t, s, ok := parseTraceparent(h["traceparent"]); ok {
		return t, s
	}
	if t, s, ok := parseUberTraceID(h["uber-trace-id"]); ok {
		return t, s
	}
	if t, s := h["x-b3-traceid"], h["x-b3-spanid"]; t != "" && s != "" {
		return t, s
	}
	if t, s := h["mockpfx-ids-traceid"], h["mockpfx-ids-spanid"]; t != "" && s != "" {
		return t, s
	}
	return "", ""
}

// parseTraceparent reads a W3C traceparent header: version-trace-span-flags.
func parseTraceparent(v string) (traceID, spanID string, ok bool) {
	parts := strings.Split(strings.TrimSpace(v), "-")
	if len(parts) < 4 || len(parts[1]) != 32 || len(parts[2]) != 16 {
		return "", "", false
	}
	if !nonZeroHex(parts[1]) || !nonZeroHex(parts[2]) {
		return "", "", false
	}
	return strings.ToLower(parts[1]), strings.ToLower(parts[2]), true
}

// parseUberTraceID reads a Jaeger uber-trace-id header:
// trace:span:parent:flags.
func parseUberTraceID(v string) (traceID, spanID string, ok bool) {
	if strings.Contains(v, "%") {
		if u, err := url.QueryUnescape(v); err == nil {
			v = u
		}
	}
	parts := strings.Split(v, ":")
	if len(parts) != 4 || !nonZeroHex(parts[0]) || !nonZeroHex(parts[1]) {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// nonZeroHex reports whether s is hex digits, not all zeros.
func nonZeroHex(s string) bool {
	nonZero := false
	for _, c := range s {
		switch {
		case c == '0':
		case '1' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
			nonZero = true
		default:
			return false
		}
	}
	return nonZero
}

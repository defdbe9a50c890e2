// Package probe has the server interceptors the hardening tests install
// after grpctrace's: they tag the span grpctrace gives the handler with what
// the handler itself returned and saw, before grpctrace finishes the span,
// so that a test can check the span against the handler's own outcome,
// even in another process. The span is the OpenTracing one in the context
// (opentracing.SpanFromContext) or, when there is none, the OpenTelemetry
// one (trace.SpanFromContext): grpctrace's two paths.
package probe

import (
	"context"

	"github.com/opentracing/opentracing-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Tags the probes set.
const (
	// TagCode is the status code the handler returned.
	TagCode = "test.handler.code"
	// TagContext is the handler's context error when it returned, "" for
	// none.
	TagContext = "test.handler.context"
)

func tag(ctx context.Context, err error) {
	ctxErr := ""
	if err := ctx.Err(); err != nil {
		ctxErr = err.Error()
	}
	if span := opentracing.SpanFromContext(ctx); span != nil {
		span.SetTag(TagCode, uint32(status.Code(err)))
		span.SetTag(TagContext, ctxErr)
		return
	}
	trace.SpanFromContext(ctx).SetAttributes(
		attribute.Int64(TagCode, int64(status.Code(err))),
		attribute.String(TagContext, ctxErr),
	)
}

// Unary tags unary RPCs.
func Unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	tag(ctx, err)
	return resp, err
}

// Stream tags streaming RPCs.
func Stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	tag(ss.Context(), err)
	return err
}

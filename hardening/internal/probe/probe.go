// Package probe has the server interceptors the hardening tests install
// after grpctrace's: they tag the span grpctrace gives the handler with what
// the handler itself returned and saw, before grpctrace finishes the span,
// so that a test can check the span against the handler's own outcome,
// even in another process.
package probe

import (
	"context"

	"github.com/opentracing/opentracing-go"
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
	span := opentracing.SpanFromContext(ctx)
	if span == nil {
		return
	}
	span.SetTag(TagCode, uint32(status.Code(err)))
	ctxErr := ""
	if err := ctx.Err(); err != nil {
		ctxErr = err.Error()
	}
	span.SetTag(TagContext, ctxErr)
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

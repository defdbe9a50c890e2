package grpctrace

import (
	"context"
	"io"

	"google.golang.org/grpc"
)

// WrappedServerStream is a grpc.ServerStream whose context is replaced, so
// that a stream handler sees values (such as the span) that interceptors
// added to it. The server stream interceptor hands its handler one that also
// records the client's half-close and failed receives and sends on the span.
//
// Like the stream it wraps, it may be used by one goroutine sending and one
// receiving at the same time, and not after the handler has returned.
type WrappedServerStream struct {
	grpc.ServerStream
	ctx  context.Context
	call *call // nil when built by WrapServerStream
}

// WrapServerStream returns ss with its context replaced by ctx; a nil ctx
// keeps ss's own.
func WrapServerStream(ss grpc.ServerStream, ctx context.Context) *WrappedServerStream {
	if ctx == nil {
		ctx = ss.Context()
	}
	return &WrappedServerStream{ServerStream: ss, ctx: ctx}
}

// Context returns the replaced context.
func (w *WrappedServerStream) Context() context.Context { return w.ctx }

// RecvMsg receives a message from the client. io.EOF, the client's
// half-close, and other errors are logged on the span.
func (w *WrappedServerStream) RecvMsg(m any) error {
	err := w.ServerStream.RecvMsg(m)
	if w.call == nil {
		return err
	}
	switch {
	case err == nil:
		w.call.received++
		w.call.message(received, w.call.received, m, unknownSizes)
	case err == io.EOF:
		w.call.event(eventClientHalfClose)
	default:
		w.call.event(eventRecvError, strField("message", err.Error()))
	}
	return err
}

// SendMsg sends a message to the client; a failure is logged on the span.
func (w *WrappedServerStream) SendMsg(m any) error {
	err := w.ServerStream.SendMsg(m)
	if w.call == nil {
		return err
	}
	if err == nil {
		w.call.sent++
		w.call.message(sent, w.call.sent, m, unknownSizes)
	} else {
		w.call.event(eventSendError, strField("message", err.Error()))
	}
	return err
}

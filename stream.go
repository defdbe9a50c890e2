package grpctrace

import (
	"context"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// StreamServerInterceptor returns an interceptor that traces streaming RPCs
// on the server. The handler gets a *WrappedServerStream whose Context
// carries the server span; the span finishes when the handler returns, or
// panics, with the handler's status.
func StreamServerInterceptor(opts ...Option) grpc.StreamServerInterceptor {
	cfg := newConfig(serverSide, opts)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		c, noopCtx := cfg.startServerInterceptor(ss.Context(), info.FullMethod)
		if c == nil {
			if noopCtx != nil {
				ss = WrapServerStream(ss, noopCtx)
			}
			return handler(srv, ss)
		}
		returned := false
		defer c.endIfPanicking(&returned, nil)
		ctx := c.serverContext()
		err := handler(srv, &WrappedServerStream{ServerStream: ss, ctx: ctx, call: c})
		returned = true
		c.end(err, nil, nil)
		return err
	}
}

// StreamClientInterceptor returns an interceptor that traces streaming RPCs
// on the client. The span finishes exactly once, when the RPC really ends:
//
//   - RecvMsg returns io.EOF (status OK) or an error (its status);
//   - for an RPC whose server does not stream, RecvMsg returns the single
//     response (gRPC has then read the status too);
//   - SendMsg fails with an error other than io.EOF, or Header fails;
//   - the stream cannot be created;
//   - the call's context is done, unless a RecvMsg is under way: the status
//     it returns wins over the cancellation;
//   - the caller drops the stream without doing any of the above: once the
//     garbage collector finds it unreachable, the span finishes with an
//     "abandoned" error, so it neither stays open in the tracer nor reads
//     as OK. That end runs on a goroutine of grpctrace's own, never on the
//     runtime's cleanup goroutine.
//
// io.EOF from SendMsg ends nothing: it means the status is to be read with
// RecvMsg. No goroutine is started per stream, but for the end of a
// cancelled one (context.AfterFunc's) or of an abandoned one.
//
// The stream's Context is the one gRPC gives, less grpctrace's record of
// the call: calls made under it are calls of their own, never attempts of
// this one.
func StreamClientInterceptor(opts ...Option) grpc.StreamClientInterceptor {
	cfg := newConfig(clientSide, opts)
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, callOpts ...grpc.CallOption) (grpc.ClientStream, error) {
		c := cfg.startClientInterceptor(ctx, method, cc)
		if c == nil {
			return streamer(ctx, desc, cc, method, callOpts...)
		}
		returned := false
		defer c.endIfPanicking(&returned, nil)
		ctx = context.WithValue(c.clientContext(ctx), attemptsKey{}, c)
		cs, err := streamer(ctx, desc, cc, method, callOpts...)
		returned = true
		if err != nil {
			c.end(err, nil, nil)
			return nil, err
		}
		return newClientStream(ctx, cs, c, desc.ServerStreams), nil
	}
}

// clientStream is the stream handed to the caller. Everything that decides
// the end lives in streamEnd, which must never point back here: the GC
// cleanup that catches abandoned streams watches this object.
//
// Each method that can block keeps the wrapper alive until it returns: a
// caller blocked in RecvMsg may hold no other reference to it, and the
// cleanup must not call an RPC abandoned while it is still being waited on.
type clientStream struct {
	grpc.ClientStream
	end *streamEnd

	ctxOnce sync.Once
	ctx     context.Context
}

// streamEnd is the end-of-stream state machine of one client stream.
type streamEnd struct {
	*call
	serverStreams bool
	// state counts the RecvMsg calls under way, plus ctxDoneBit once the
	// call's context is done.
	state atomic.Int32
}

const ctxDoneBit = 1 << 30

func newClientStream(ctx context.Context, cs grpc.ClientStream, c *call, serverStreams bool) *clientStream {
	e := &streamEnd{call: c, serverStreams: serverStreams}
	if ctx.Done() != nil {
		// Set before the stream is handed out; never called by the watch.
		e.unwatch = context.AfterFunc(ctx, e.contextDone)
	}
	w := &clientStream{ClientStream: cs, end: e}
	runtime.AddCleanup(w, (*streamEnd).abandoned, e)
	return w
}

// finish ends the span with err, unless it has ended already.
func (e *streamEnd) finish(err error) {
	if e.ended.Load() {
		return
	}
	e.call.end(err, nil, nil)
}

// contextDone runs, on its own goroutine, when the call's context is done.
// A RecvMsg under way will return the RPC's status shortly and ends the
// span itself; otherwise the cancellation is the end.
func (e *streamEnd) contextDone() {
	defer e.recoverLogged(false)
	if e.state.Or(ctxDoneBit) == 0 {
		e.call.end(e.contextError(), nil, nil)
	}
}

func (e *streamEnd) contextError() error {
	return status.FromContextError(e.ctx.Err()).Err()
}

// abandoned runs on the runtime's cleanup goroutine: the end, with the
// tracer's and the decorators' code, goes to a goroutine of its own.
func (e *streamEnd) abandoned() {
	if !e.ended.Load() {
		e.endLater(status.Error(codes.Unknown, abandonedStreamReason))
	}
}

// logMessage logs a message of the caller's: a redactor that panics ends
// the span, and the panic goes on to the caller, as its own would.
func (e *streamEnd) logMessage(dir direction, seq int64, m any) {
	if !e.cfg.messageEvents && !e.cfg.logPayloads {
		return
	}
	returned := false
	defer e.endIfPanicking(&returned, nil)
	e.message(dir, seq, m, unknownSizes)
	returned = true
}

// Context returns the stream's context without the call in it.
func (w *clientStream) Context() context.Context {
	w.ctxOnce.Do(func() { w.ctx = context.WithValue(w.ClientStream.Context(), attemptsKey{}, (*call)(nil)) })
	return w.ctx
}

// RecvMsg receives a message and ends the span when the RPC is over.
func (w *clientStream) RecvMsg(m any) error {
	e := w.end
	e.state.Add(1)
	err := w.ClientStream.RecvMsg(m)
	var over bool
	var rpcErr error
	switch {
	case err == nil:
		e.received++
		e.logMessage(received, e.received, m)
		// Without server streaming, gRPC has read the status along with
		// the single response: nil means the RPC succeeded.
		over = !e.serverStreams
	case err == io.EOF:
		over = true
	default:
		over, rpcErr = true, err
	}
	if over {
		e.finish(rpcErr)
	}
	if e.state.Add(-1) == ctxDoneBit {
		// The context was done while this RecvMsg was under way, and it
		// did not end the RPC.
		e.finish(e.contextError())
	}
	runtime.KeepAlive(w)
	return err
}

// SendMsg sends a message. io.EOF ends nothing: the RPC is over, and its
// status is for RecvMsg to return. Any other error is the RPC's end.
func (w *clientStream) SendMsg(m any) error {
	e := w.end
	err := w.ClientStream.SendMsg(m)
	switch {
	case err == nil:
		e.sent++
		e.logMessage(sent, e.sent, m)
	case err != io.EOF:
		e.finish(err)
	}
	runtime.KeepAlive(w)
	return err
}

// CloseSend half-closes the stream; the RPC goes on until RecvMsg reports
// its end.
func (w *clientStream) CloseSend() error {
	err := w.ClientStream.CloseSend()
	if err != nil {
		w.end.event(eventCloseSend, strField("message", err.Error()))
	} else if w.end.cfg.messageEvents {
		w.end.event(eventCloseSend)
	}
	runtime.KeepAlive(w)
	return err
}

// Header returns the server's header metadata. An error ends the RPC.
func (w *clientStream) Header() (metadata.MD, error) {
	md, err := w.ClientStream.Header()
	if err != nil {
		w.end.finish(err)
	}
	runtime.KeepAlive(w)
	return md, err
}

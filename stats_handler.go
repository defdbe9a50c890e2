package grpctrace

import (
	"context"
	"runtime"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// NewServerHandler returns a stats.Handler that traces a server's RPCs,
// for grpc.StatsHandler. It is the same tracing as the server interceptors
// (same spans, tags and options) from gRPC's own view of the RPC:
//
//   - the span starts when gRPC tags the RPC (TagRPC, just before it begins
//     it), so that the handler's context carries it, and finishes at the
//     end time gRPC reports (stats.End), or later if a log of the span or a
//     SpanDecorator came after it: no log is stamped after the finish. An
//     RPC gRPC never begins, for a method or service the server does not
//     have, ends with status Unimplemented when gRPC answers it so;
//   - a panic in grpctrace's work here, a payload redactor's included, is
//     logged on the span and the RPC goes on: it happens on gRPC's own
//     goroutines, where it would crash the server;
//   - with WithMessageEvents, a message event carries the compressed size
//     and the size on the wire (with gRPC's framing) next to the
//     uncompressed one, as gRPC measured them;
//   - with WithPayloadLogging, the payloads are the messages gRPC decoded
//     and encoded.
//
// The handler's context carries the span as the tracing API puts it there:
// trace.ContextWithSpan with WithTracerProvider, with the caller's baggage;
// opentracing.ContextWithSpan otherwise (tracers' context hooks run, so
// under the OpenTelemetry bridge the span is OpenTelemetry's current one
// too). The client's half-close is not seen, and RPCInfo.Request and
// Response are nil for a SpanDecorator.
//
// Installed together with the server interceptors, the handler makes the
// span and the interceptors leave the RPC to it.
func NewServerHandler(opts ...Option) stats.Handler {
	return &serverHandler{cfg: newConfig(serverSide, opts)}
}

// NewClientHandler returns a stats.Handler that traces a client's RPCs, for
// grpc.WithStatsHandler: one span per attempt, so that gRPC's retries,
// which the interceptors see as one call, show as the attempts they are.
// Each attempt span is tagged with whether gRPC retried transparently
// (grpc.transparent_retry) and with the address the attempt went to; its
// span context is what the server receives.
//
// Installed together with the client interceptors, the interceptor's span
// is the call and the attempt spans are its children, numbered
// (grpc.attempt, from 1; grpc.retry on the retries). Put the interceptor first in the chain, so that
// the other client interceptors see the call span. Message events and
// payload logging behave as for NewServerHandler, and RPCInfo.Request and
// Response are nil for a SpanDecorator.
func NewClientHandler(opts ...Option) stats.Handler {
	return &clientHandler{cfg: newConfig(clientSide, opts)}
}

type serverHandler struct{ cfg *config }

// handled is what a server stats handler marks the contexts of its RPCs
// with (handledKey); its life is the RPC context's.
type handled struct{ cfg *config }

// TagRPC starts the RPC's span and returns the handler's context, which
// carries it: gRPC fixes the handler's context here, before it knows
// whether it serves the method. An RPC it never begins (a method or service
// the server does not have) ends when gRPC writes its status without
// beginning it; should gRPC drop such an RPC without a word, its span ends
// once the garbage collector finds the RPC's context unreachable.
func (h *serverHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) (tagged context.Context) {
	c, noopCtx := h.cfg.startServer(ctx, info.FullMethodName, false)
	if c == nil {
		if noopCtx != nil {
			return noopCtx
		}
		return ctx
	}
	tagged = ctx
	defer c.recoverLogged(true)
	mark := &handled{h.cfg}
	tagged = context.WithValue(h.cfg.withCall(c.serverContext(), c), handledKey{}, mark)
	dropped := runtime.AddCleanup(mark, (*call).droppedUnbegun, c)
	c.unwatch = func() bool { dropped.Stop(); return true }
	return tagged
}

// droppedUnbegun runs, on the runtime's cleanup goroutine, once an RPC
// gRPC never began and never wrote a status for is gone.
func (c *call) droppedUnbegun() {
	c.endLater(status.FromContextError(c.ctx.Err()).Err())
}

func (h *serverHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if c := h.cfg.ownCall(ctx); c != nil {
		c.handleGuarded(s)
	}
}

func (*serverHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (*serverHandler) HandleConn(context.Context, stats.ConnStats) {}

type clientHandler struct{ cfg *config }

// TagRPC starts the span of an attempt and returns the attempt's context,
// which carries the span and outgoing metadata holding its span context.
func (h *clientHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) (tagged context.Context) {
	c := h.cfg.startClient(ctx, info.FullMethodName, nil)
	if c == nil {
		if h.cfg.ownCall(ctx) != nil {
			// ctx is that of another RPC of this handler's (a call made
			// under a stream's context): its events are not this RPC's.
			return h.cfg.withCall(ctx, nil)
		}
		return ctx
	}
	tagged = ctx
	defer c.recoverLogged(true)
	if call, _ := ctx.Value(attemptsKey{}).(*call); call != nil && !call.ended.Load() {
		// An attempt of the interceptor's call: ctx is the one the
		// interceptor called gRPC with.
		n := call.attempts.Add(1)
		c.rec.tag(tagAttempt, n)
		if n > 1 {
			c.rec.tag(tagRetry, true)
		}
	}
	tagged = h.cfg.withCall(c.clientContext(ctx), c)
	return tagged
}

func (h *clientHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if c := h.cfg.ownCall(ctx); c != nil {
		c.handleGuarded(s)
	}
}

func (*clientHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (*clientHandler) HandleConn(context.Context, stats.ConnStats) {}

// handleGuarded records one of gRPC's events on the call; a panic in
// grpctrace's or a redactor's code is logged on the span, and the RPC goes
// on (see recoverLogged).
func (c *call) handleGuarded(s stats.RPCStats) {
	defer c.recoverLogged(false)
	c.handle(s)
}

// handle records one of gRPC's events on the call.
func (c *call) handle(s stats.RPCStats) {
	switch s := s.(type) {
	case *stats.Begin:
		if !s.Client {
			c.begun = true
			c.unwatch()
			// gRPC serves the method: its name is no client's
			// invention (unless an unknown-service handler serves all).
			c.cfg.methods.add(c.method.full, c.method)
		}
		if s.IsTransparentRetryAttempt {
			c.rec.tag(tagTransparentRetry, true)
		}
	case *stats.OutTrailer:
		if !s.Client && !c.begun {
			// A status gRPC writes without beginning the RPC: the
			// one for a service or method it does not serve.
			c.end(status.Error(codes.Unimplemented, neverBegunReason), nil, nil)
		}
	case *stats.OutHeader:
		if s.Client && s.RemoteAddr != nil {
			c.rec.peer(s.RemoteAddr)
		}
	case *stats.InPayload:
		if c.cfg.messageEvents || c.cfg.logPayloads {
			c.received++
			c.message(received, c.received, s.Payload, sizes{s.Length, s.CompressedLength, s.WireLength})
		}
	case *stats.OutPayload:
		if c.cfg.messageEvents || c.cfg.logPayloads {
			c.sent++
			c.message(sent, c.sent, s.Payload, sizes{s.Length, s.CompressedLength, s.WireLength})
		}
	case *stats.InHeader:
		if s.Client && c.cfg.messageEvents {
			c.event(eventHeaderReceived)
		}
	case *stats.InTrailer:
		if s.Client && c.cfg.messageEvents {
			c.event(eventTrailerReceived)
		}
	case *stats.End:
		c.endAt(s.Error, nil, nil, s.EndTime)
	}
}

// Tags and events only the stats handlers record.
const (
	tagAttempt           = "grpc.attempt"
	tagRetry             = "grpc.retry"
	tagTransparentRetry  = "grpc.transparent_retry"
	eventHeaderReceived  = "header received"
	eventTrailerReceived = "trailer received"
	neverBegunReason     = "grpctrace: gRPC answered without beginning the RPC (unknown service or method)"
)

package grpctrace

import (
	"context"
	"time"

	"github.com/opentracing/opentracing-go"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
)

// NewServerHandler returns a stats.Handler that traces a server's RPCs,
// for grpc.StatsHandler. It is the same tracing as the server interceptors
// (same spans, tags and options) from gRPC's own view of the RPC:
//
//   - the span starts when gRPC begins the RPC (stats.Begin) and finishes
//     when gRPC ends it (stats.End), at the times gRPC reports; an RPC for
//     an unknown method, which gRPC tags and never begins, gets no span;
//   - with WithMessageEvents, a message event carries the compressed size
//     and the size on the wire (with gRPC's framing) next to the
//     uncompressed one, as gRPC measured them;
//   - with WithPayloadLogging, the payloads are the messages gRPC decoded
//     and encoded.
//
// The handler's context answers opentracing.SpanFromContext with the span;
// tracers' ContextWithSpan hooks (the OpenTelemetry bridge's, which would
// also make the span visible to OpenTelemetry's API) are not run, since gRPC
// has fixed the handler's context before the span starts: use the
// interceptors where handlers need that. The client's half-close is not
// seen, and RPCInfo.Request and Response are nil for a SpanDecorator.
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

// TagRPC prepares the RPC's call and makes it the RPC's context; nothing is
// started yet.
func (h *serverHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if c := h.cfg.newCall(ctx, info.FullMethodName, handlerFront); c != nil {
		c.ctx = c
		return c
	}
	return ctx
}

func (h *serverHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	c, _ := ctx.Value(handlerCallKey{}).(*call)
	if c == nil {
		return
	}
	if b, ok := s.(*stats.Begin); ok {
		c.startServerSpan(c, b.BeginTime)
		return
	}
	if c.span != nil {
		c.handle(s)
	}
}

func (*serverHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (*serverHandler) HandleConn(context.Context, stats.ConnStats) {}

type clientHandler struct{ cfg *config }

// TagRPC starts the span of an attempt and returns the attempt's context,
// whose outgoing metadata carries the span context.
func (h *clientHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	c := h.cfg.newCall(ctx, info.FullMethodName, handlerFront)
	if c == nil {
		return ctx
	}
	parent, ok := c.clientParent(ctx)
	if !ok {
		return ctx
	}
	c.startSpan(parent, nil, nil, time.Time{})
	if call, ok := ctx.Value(interceptorCallKey{}).(*call); ok && call.cfg.side == clientSide {
		n := call.attempts.Add(1)
		c.span.SetTag(tagAttempt, n)
		if n > 1 {
			c.span.SetTag(tagRetry, true)
		}
	}
	ctx = c.injectInto(c)
	c.ctx = ctx
	if len(c.cfg.decorators) > 0 {
		// Decorators are promised a context carrying their span.
		c.ctx = opentracing.ContextWithSpan(ctx, c.span)
	}
	return ctx
}

func (h *clientHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if c, _ := ctx.Value(handlerCallKey{}).(*call); c != nil {
		c.handle(s)
	}
}

func (*clientHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (*clientHandler) HandleConn(context.Context, stats.ConnStats) {}

// handle records one of gRPC's events on a started call.
func (c *call) handle(s stats.RPCStats) {
	switch s := s.(type) {
	case *stats.Begin:
		if s.IsTransparentRetryAttempt {
			c.span.SetTag(tagTransparentRetry, true)
		}
	case *stats.OutHeader:
		if s.Client && s.RemoteAddr != nil {
			var buf [maxPeerTags]opentracing.Tag
			for _, t := range appendPeerTags(buf[:0], &peer.Peer{Addr: s.RemoteAddr}) {
				c.span.SetTag(t.Key, t.Value)
			}
		}
	case *stats.InPayload:
		if c.cfg.messageEvents || c.cfg.logPayloads {
			c.received++
			c.statsMessage(received, c.received, s.Payload, s.Length, s.CompressedLength, s.WireLength)
		}
	case *stats.OutPayload:
		if c.cfg.messageEvents || c.cfg.logPayloads {
			c.sent++
			c.statsMessage(sent, c.sent, s.Payload, s.Length, s.CompressedLength, s.WireLength)
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

// statsMessage logs a message as gRPC measured it.
func (c *call) statsMessage(dir direction, seq int64, msg any, size, compressed, wire int) {
	if !c.cfg.messageEvents {
		size, compressed, wire = -1, -1, -1
	}
	c.logMessage(dir, seq, msg, size, compressed, wire)
}

// Tags and events only the stats handlers record.
const (
	tagAttempt           = "grpc.attempt"
	tagRetry             = "grpc.retry"
	tagTransparentRetry  = "grpc.transparent_retry"
	eventHeaderReceived  = "header received"
	eventTrailerReceived = "trailer received"
)

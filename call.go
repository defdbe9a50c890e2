package grpctrace

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"unicode/utf8"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/log"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// call is the core of grpctrace: one traced RPC on one side. It starts the
// span, records what happens to the RPC and finishes the span exactly once,
// whichever of the RPC's possible ends reaches it first. The interceptors
// only translate gRPC's shapes into calls on it.
type call struct {
	cfg    *config
	method *method
	ctx    context.Context // the RPC's context, carrying the span
	span   opentracing.Span
	ended  atomic.Bool

	// peerTags backs the server's peer tags, given at start.
	peerTags [4]opentracing.Tag
	// refs backs the start options' references, and inject and values the
	// client's injection of its span context into metadata.
	refs   [1]opentracing.SpanReference
	inject injectCarrier
	values [6]string

	// Starting a span takes a variadic slice of options, which escapes
	// into the tracer. Keeping the one option and its slice inside the call,
	// which is allocated anyway, costs nothing more.
	start startOptions
	opts  [1]opentracing.StartSpanOption
}

// startOptions is the single StartSpanOption grpctrace gives a tracer: the
// span kind and the ChildOf reference are start options, never tags set
// later, because some tracers (the OpenTelemetry bridge) only read them at
// start.
type startOptions struct {
	cfg      *config
	method   *method
	parent   opentracing.SpanContext
	peerTags []opentracing.Tag
	refs     []opentracing.SpanReference // empty, with room for the parent
}

func (s *startOptions) Apply(o *opentracing.StartSpanOptions) {
	if s.parent != nil {
		if o.References == nil {
			o.References = s.refs
		}
		o.References = append(o.References, opentracing.SpanReference{
			Type:              opentracing.ChildOfRef,
			ReferencedContext: s.parent,
		})
	}
	s.cfg.spanKind.Apply(o)
	for _, t := range s.cfg.constTags {
		t.Apply(o)
	}
	for _, t := range s.method.tags {
		t.Apply(o)
	}
	for _, t := range s.peerTags {
		t.Apply(o)
	}
}

// newCall starts the span of one RPC; the peer's tags come from p on a
// server, from the cached tags of the target on a client.
func (cfg *config) newCall(tracer opentracing.Tracer, m *method, parent opentracing.SpanContext, p *peer.Peer, target []opentracing.Tag) *call {
	c := &call{cfg: cfg, method: m}
	peerTags := target
	if p != nil {
		peerTags = appendPeerTags(c.peerTags[:0], p)
	}
	c.start = startOptions{cfg: cfg, method: m, parent: parent, peerTags: peerTags, refs: c.refs[:0]}
	c.opts[0] = &c.start
	c.span = tracer.StartSpan(m.operationName, c.opts[:]...)
	c.start = startOptions{}
	c.opts[0] = nil
	return c
}

// startClient starts the client span of an RPC and returns the context to
// call gRPC with: it carries the span, and outgoing metadata holding the
// span context. It returns a nil call when the RPC is not to be traced.
func (cfg *config) startClient(ctx context.Context, fullMethod, target string) (context.Context, *call) {
	tracer := cfg.tracerFor(ctx, fullMethod)
	if tracer == nil {
		return ctx, nil
	}
	var parent opentracing.SpanContext
	if p := opentracing.SpanFromContext(ctx); p != nil {
		parent = p.Context()
	} else if cfg.parentRequired {
		return ctx, nil
	}
	c := cfg.newCall(tracer, cfg.method(fullMethod), parent, nil, cfg.targets.get(target, targetTags))

	// FromOutgoingContext returns a copy: the caller's metadata is never
	// touched.
	md, _ := metadata.FromOutgoingContext(ctx)
	if md == nil {
		md = make(metadata.MD, 4)
	}
	c.inject = injectCarrier{MetadataCarrier: MetadataCarrier(md), buf: c.values[:0]}
	if err := tracer.Inject(c.span.Context(), opentracing.TextMap, &c.inject); err != nil {
		c.span.LogFields(log.String("event", eventInjectFailed), log.String("message", err.Error()))
	}
	ctx = opentracing.ContextWithSpan(metadata.NewOutgoingContext(ctx, md), c.span)
	c.ctx = ctx
	return ctx, c
}

// startServer starts the server span of an RPC from the span context in the
// incoming metadata and returns the handler's context, which carries the
// span. It returns a nil call when the RPC is not to be traced.
func (cfg *config) startServer(ctx context.Context, fullMethod string) (context.Context, *call) {
	tracer := cfg.tracerFor(ctx, fullMethod)
	if tracer == nil {
		return ctx, nil
	}
	remote, extractErr := extract(tracer, incomingMetadata(ctx))
	if remote == nil && cfg.parentRequired {
		return ctx, nil
	}
	public := cfg.public != nil && cfg.public(ctx, fullMethod)
	parent := remote
	if public {
		parent = nil
	}
	c := cfg.newCall(tracer, cfg.method(fullMethod), parent, peerOf(ctx), nil)

	if extractErr != nil {
		c.span.LogFields(log.String("event", eventExtractFailed), log.String("message", extractErr.Error()))
	}
	if public && remote != nil {
		logUntrustedParent(tracer, c.span, remote)
	}
	ctx = opentracing.ContextWithSpan(ctx, c.span)
	c.ctx = ctx
	return ctx, c
}

func peerOf(ctx context.Context) *peer.Peer {
	p, _ := peer.FromContext(ctx)
	return p
}

// extract reads the remote span context. A missing one is no error; a
// corrupt one, or a tracer that panics on hostile input, is returned as an
// error to record on the span, and the RPC goes on without a parent.
func extract(tracer opentracing.Tracer, md metadata.MD) (sc opentracing.SpanContext, err error) {
	if len(md) == 0 {
		return nil, nil
	}
	defer func() {
		if r := recover(); r != nil {
			sc, err = nil, fmt.Errorf("tracer panicked extracting the span context: %v", r)
		}
	}()
	carrier := MetadataCarrier(md)
	sc, err = tracer.Extract(opentracing.TextMap, carrier)
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
	return sc, err
}

// end finishes the span with the RPC's outcome. Only the first call has an
// effect, so every place that can see an RPC end may call it.
func (c *call) end(err error, req, resp any) {
	if !c.ended.CompareAndSwap(false, true) {
		return
	}
	st, ok := status.FromError(err)
	if !ok {
		// What a gRPC server sends for a handler's plain error.
		st = status.FromContextError(err)
	}
	code := st.Code()
	c.span.SetTag(tagRPCStatusCode, uint32(code))
	if code != codes.OK && c.cfg.isError(code) {
		c.span.SetTag(tagError, true)
		c.span.LogFields(
			log.String("event", eventError),
			log.String("error.kind", code.String()),
			log.String("message", st.Message()),
		)
	}
	if len(c.cfg.decorators) > 0 {
		info := RPCInfo{
			FullMethod: c.method.full,
			Client:     c.cfg.side == clientSide,
			Request:    req,
			Response:   resp,
			Err:        err,
			Code:       code,
		}
		for _, d := range c.cfg.decorators {
			d(c.ctx, c.span, info)
		}
	}
	c.span.Finish()
}

// endPanic finishes the span of an RPC whose handler panicked with r.
func (c *call) endPanic(r any, req any) {
	c.end(status.Errorf(codes.Internal, "panic: %v", r), req, nil)
}

// event logs a named event without payload.
func (c *call) event(name string) {
	c.span.LogFields(log.String("event", name))
}

// messageError logs a failed RecvMsg or SendMsg that does not end the RPC by
// itself (its status comes from elsewhere).
func (c *call) messageError(name string, err error) {
	c.span.LogFields(log.String("event", name), log.String("message", err.Error()))
}

// direction is a message's direction, as seen from the span's side.
type direction string

const (
	sent     direction = "SENT"
	received direction = "RECEIVED"
)

// message logs one message, as far as the options ask for it: its number
// and size with message events, its text with payload logging.
func (c *call) message(dir direction, seq int64, msg any) {
	switch {
	case c.cfg.messageEvents && c.cfg.logPayloads:
		c.span.LogFields(
			log.String("event", eventMessage),
			log.String("message.type", string(dir)),
			log.Int64("message.id", seq),
			log.Int("message.uncompressed_size", messageSize(msg)),
			log.String("payload", formatPayload(msg)),
		)
	case c.cfg.messageEvents:
		c.span.LogFields(
			log.String("event", eventMessage),
			log.String("message.type", string(dir)),
			log.Int64("message.id", seq),
			log.Int("message.uncompressed_size", messageSize(msg)),
		)
	case c.cfg.logPayloads:
		c.span.LogFields(
			log.String("event", eventMessage),
			log.String("message.type", string(dir)),
			log.Int64("message.id", seq),
			log.String("payload", formatPayload(msg)),
		)
	}
}

func messageSize(msg any) int {
	if m, ok := msg.(proto.Message); ok && m != nil {
		return proto.Size(m)
	}
	return 0
}

// maxPayloadBytes caps a logged payload: a span is not the place for bulk
// data, and tracers buffer logs in memory.
const maxPayloadBytes = 4 << 10

func formatPayload(msg any) string {
	var s string
	if m, ok := msg.(proto.Message); ok && m != nil {
		s = prototext.MarshalOptions{}.Format(m)
	} else {
		s = fmt.Sprint(msg)
	}
	if len(s) <= maxPayloadBytes {
		return s
	}
	cut := maxPayloadBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(truncated)"
}

// Event names grpctrace logs on spans.
const (
	eventError            = "error"
	eventMessage          = "message"
	eventExtractFailed    = "span context extraction failed"
	eventInjectFailed     = "span context injection failed"
	eventUntrustedParent  = "untrusted parent"
	eventClientHalfClose  = "client half-close"
	eventCloseSend        = "close send"
	eventRecvError        = "receive error"
	eventSendError        = "send error"
	tagError              = "error"
	abandonedStreamReason = "grpctrace: client stream abandoned: garbage collected before the RPC ended"
)

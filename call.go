package grpctrace

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
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

// call is the core of grpctrace: one traced RPC (or, for the client stats
// handler, one attempt of it) on one side. It starts the span, records what
// happens to the RPC and finishes the span exactly once, whichever of the
// RPC's possible ends reaches it first. The interceptors and the stats
// handlers only translate gRPC's shapes into calls on it.
//
// A call is also a context: the one it was created under, which it finds
// itself in (see Value). That puts it in the RPC's context without
// allocating, for the stats handler to find the interceptor's call and the
// handler's events to find their own.
//
// A call is allocated on every traced RPC and side (a unary RPC's only
// allocation of grpctrace's own, besides the client's outgoing metadata),
// so it holds, as buffers, what would otherwise be allocated apart (see
// serverCall and clientCall, which add each side's buffers), and is kept
// small: every byte is paid on every RPC.
type call struct {
	context.Context
	cfg    *config
	tracer opentracing.Tracer
	method *method
	ctx    context.Context // the RPC's context, carrying the span
	span   opentracing.Span

	ended atomic.Bool
	// attempts counts the attempts the client stats handler has started
	// under this interceptor call.
	attempts atomic.Int32
	// logMu orders the logs of messages and stream events, which may come
	// from other goroutines than the one ending the call (a client stream's
	// context watch, gRPC's stats events), before the span's finish: no log
	// reaches a finished span.
	logMu sync.Mutex
	front front
	// active: the call answers OpenTracing's active-span key with span.
	active bool

	// numbers of messages received and sent, for message events; each is
	// counted by one goroutine at a time.
	received, sent int64

	// What the span starts with, read by the start option (startOption):
	// starting a span takes a variadic slice of options, which escapes into
	// the tracer; keeping the option's data and the slice inside the call,
	// which is allocated anyway, costs nothing more. refs holds the parent
	// reference, if any (a nil ReferencedContext: none), for the tracer to
	// append to.
	opts     [1]opentracing.StartSpanOption
	refs     [1]opentracing.SpanReference
	peerTags []opentracing.Tag
	at       time.Time

	// inject is the client's carrier for injecting its span context into
	// metadata, kept in its clientCall.
	inject *injectCarrier
}

// serverCall is a server's call with room for its peer's tags.
type serverCall struct {
	call
	peerBuf [maxPeerTags]opentracing.Tag
}

// clientCall is a client's call with its injection carrier and room for
// the values injected: tracers set one to four keys (and one per baggage
// item, beyond which the carrier allocates).
type clientCall struct {
	call
	inject injectCarrier
	values [4]string
}

// front is the front end that made a call.
type front uint8

const (
	interceptorFront front = iota
	handlerFront
)

// Context keys under which a call finds itself.
type (
	interceptorCallKey struct{}
	handlerCallKey     struct{}
)

// Value returns the call itself for the key of its front end, and its span
// for OpenTracing's key once activated (see activate) or, for a server call
// made by the stats handler, once started: that handler starts the span
// after gRPC has fixed the handler's context, so the context answers for
// the span instead of carrying it.
func (c *call) Value(key any) any {
	switch key {
	case interceptorCallKey{}:
		// Only the client stats handler looks for it; a server call,
		// the handler's context, does not answer for it, so that the
		// handler's own outgoing calls never find it.
		if c.front == interceptorFront && c.cfg.side == clientSide {
			return c
		}
	case handlerCallKey{}:
		if c.front == handlerFront {
			return c
		}
	case activeSpanKey:
		if c.active || c.front == handlerFront && c.cfg.side == serverSide && c.span != nil {
			return c.span
		}
	}
	return c.Context.Value(key)
}

// activate returns the call as a context carrying its started span, as
// opentracing.ContextWithSpan would, without a context layer of its own:
// the call answers for the span itself. The tracer's context hook (the
// OpenTelemetry bridge's makes the span OpenTelemetry's current one too)
// runs on the context the call was created under, so it sees what the
// RPC's context held before grpctrace (on a client, not the outgoing
// metadata injected after). It must be called before the call is handed to
// anything else.
func (c *call) activate() context.Context {
	if activeSpanKey == nil {
		// The probe found no key: an opentracing-go release that stores
		// the span differently.
		return opentracing.ContextWithSpan(c, c.span)
	}
	if t, ok := c.span.Tracer().(opentracing.TracerContextWithSpanExtension); ok {
		c.Context = t.ContextWithSpanHook(c.Context, c.span)
	}
	c.active = true
	return c
}

// activeSpanKey is the key opentracing.ContextWithSpan stores a span under,
// learnt by asking opentracing.SpanFromContext to read a probing context.
var activeSpanKey = func() any {
	var p keyProbe
	opentracing.SpanFromContext(&p)
	return p.key
}()

// startOption is the single StartSpanOption grpctrace gives a tracer: the
// span kind and the ChildOf reference are start options, never tags set
// later, because some tracers (the OpenTelemetry bridge) only read them at
// start. Being one pointer, it fits in an interface without allocating.
type startOption struct{ c *call }

func (s startOption) Apply(o *opentracing.StartSpanOptions) {
	c := s.c
	if c.refs[0].ReferencedContext != nil {
		if o.References == nil {
			o.References = c.refs[:0]
		}
		o.References = append(o.References, c.refs[0])
	}
	if !c.at.IsZero() {
		o.StartTime = c.at
	}
	c.cfg.spanKind.Apply(o)
	for _, t := range c.cfg.constTags {
		t.Apply(o)
	}
	for _, t := range c.method.tags {
		t.Apply(o)
	}
	for _, t := range c.peerTags {
		t.Apply(o)
	}
}

// newCall prepares the call of one RPC under ctx, or returns nil when the
// RPC is not to be traced. Its span is not started yet.
func (cfg *config) newCall(ctx context.Context, fullMethod string, f front) *call {
	tracer := cfg.tracerFor(ctx, fullMethod)
	if tracer == nil {
		return nil
	}
	var c *call
	if cfg.side == serverSide {
		s := &serverCall{}
		c = &s.call
		c.peerTags = s.peerBuf[:0]
	} else {
		cc := &clientCall{}
		c = &cc.call
		cc.inject.buf = cc.values[:0]
		c.inject = &cc.inject
	}
	c.Context, c.cfg, c.tracer, c.method, c.front = ctx, cfg, tracer, cfg.method(fullMethod), f
	return c
}

// startSpan starts the call's span. The peer's tags come from p on a
// server, from the cached tags of the target on a client.
func (c *call) startSpan(parent opentracing.SpanContext, p *peer.Peer, target []opentracing.Tag, at time.Time) {
	if p != nil {
		c.peerTags = appendPeerTags(c.peerTags[:0], p)
	} else {
		c.peerTags = target
	}
	if parent != nil {
		c.refs[0] = opentracing.SpanReference{Type: opentracing.ChildOfRef, ReferencedContext: parent}
	}
	c.at = at
	c.opts[0] = startOption{c}
	c.span = c.tracer.StartSpan(c.method.operationName, c.opts[:]...)
}

// clientParent returns the span context a client span is the child of, and
// false when the RPC is not to be traced for want of one.
func (c *call) clientParent(ctx context.Context) (opentracing.SpanContext, bool) {
	if p := opentracing.SpanFromContext(ctx); p != nil {
		return p.Context(), true
	}
	return nil, !c.cfg.parentRequired
}

// injectInto returns ctx with outgoing metadata carrying the span context:
// a copy of ctx's outgoing metadata, so the caller's is never touched.
func (c *call) injectInto(ctx context.Context) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	if md == nil {
		md = make(metadata.MD, 4)
	}
	c.inject.MetadataCarrier = MetadataCarrier(md)
	if err := c.tracer.Inject(c.span.Context(), opentracing.TextMap, c.inject); err != nil {
		c.span.LogFields(log.String("event", eventInjectFailed), log.String("message", err.Error()))
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// startClient starts the client span of an RPC made through the
// interceptors and returns the context to call gRPC with: it carries the
// span, and outgoing metadata holding the span context. It returns a nil
// call when the RPC is not to be traced.
func (cfg *config) startClient(ctx context.Context, fullMethod, target string) (context.Context, *call) {
	c := cfg.newCall(ctx, fullMethod, interceptorFront)
	if c == nil {
		return ctx, nil
	}
	parent, ok := c.clientParent(ctx)
	if !ok {
		return ctx, nil
	}
	c.startSpan(parent, nil, cfg.targets.get(target, targetTags), time.Time{})
	ctx = c.injectInto(c.activate())
	c.ctx = ctx
	return ctx, c
}

// startServer starts the server span of an RPC made through the
// interceptors and returns the handler's context, which carries the span.
// It returns a nil call when the RPC is not to be traced, or when the stats
// handler traces it already.
func (cfg *config) startServer(ctx context.Context, fullMethod string) (context.Context, *call) {
	if h, ok := ctx.Value(handlerCallKey{}).(*call); ok && h.span != nil {
		return ctx, nil
	}
	c := cfg.newCall(ctx, fullMethod, interceptorFront)
	if c == nil || !c.startServerSpan(ctx, time.Time{}) {
		return ctx, nil
	}
	ctx = c.activate()
	c.ctx = ctx
	return ctx, c
}

// startServerSpan starts a server span, child of the span context in ctx's
// incoming metadata; it reports false, starting nothing, when a parent is
// required and there is none.
func (c *call) startServerSpan(ctx context.Context, at time.Time) bool {
	remote, extractErr := extract(c.tracer, incomingMetadata(ctx))
	if remote == nil && c.cfg.parentRequired {
		return false
	}
	public := c.cfg.public != nil && c.cfg.public(ctx, c.method.full)
	parent := remote
	if public {
		parent = nil
	}
	c.startSpan(parent, peerOf(ctx), nil, at)
	if extractErr != nil {
		c.span.LogFields(log.String("event", eventExtractFailed), log.String("message", extractErr.Error()))
	}
	if public && remote != nil {
		logUntrustedParent(c.tracer, c.span, remote)
	}
	return true
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
func (c *call) end(err error, req, resp any) { c.endAt(err, req, resp, time.Time{}) }

// endAt is end with the time the RPC ended, when gRPC reports it.
func (c *call) endAt(err error, req, resp any, at time.Time) {
	if !c.ended.CompareAndSwap(false, true) {
		return
	}
	// A log under way completes first; later ones see ended and drop. The
	// lock is only a barrier: decorators and the tracer's Finish, which
	// may export synchronously, must not hold up a stream's other
	// goroutine.
	c.logMu.Lock()
	//lint:ignore SA2001 an empty critical section is the barrier
	c.logMu.Unlock()
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
	if at.IsZero() {
		c.span.Finish()
	} else {
		c.span.FinishWithOptions(opentracing.FinishOptions{FinishTime: at})
	}
}

// endIfPanicking is deferred around a handler or an invoker: unless it
// returned, it is panicking, and the span finishes with the panic as an
// Internal error before the panic goes on unchanged, as it would untraced.
// Or its goroutine is exiting through runtime.Goexit (a test's t.FailNow,
// for one), which recover does not stop: the span finishes, and the exit
// goes on.
func (c *call) endIfPanicking(returned *bool, req any) {
	if *returned {
		return
	}
	r := recover()
	if r == nil && !nilPanicsRecoverNil {
		// Since Go 1.21 panic(nil) panics with a *runtime.PanicNilError,
		// so nil here is a Goexit.
		c.end(status.Error(codes.Unknown, goexitReason), req, nil)
		return
	}
	c.end(status.Errorf(codes.Internal, "panic: %v", r), req, nil)
	panic(r)
}

// nilPanicsRecoverNil reports that the program runs with
// GODEBUG=panicnil=1, under which recover returns nil for panic(nil) too,
// as before Go 1.21. A nil then cannot tell a Goexit from a nil panic, and
// endIfPanicking goes on panicking, as grpctrace did before it knew
// Goexits: swallowing the panic would turn it into a success.
var nilPanicsRecoverNil = func() (recoveredNil bool) {
	defer func() { recoveredNil = recover() == nil }()
	panic(nil)
}()

// event logs a named event without payload.
func (c *call) event(name string) {
	c.log(log.String("event", name))
}

// messageError logs a failed RecvMsg or SendMsg that does not end the RPC by
// itself (its status comes from elsewhere).
func (c *call) messageError(name string, err error) {
	c.log(log.String("event", name), log.String("message", err.Error()))
}

// log logs fields on the span unless the call has ended: a stream's
// messages and events may race with its end, and a finished span must not
// be touched again.
func (c *call) log(fields ...log.Field) {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	if !c.ended.Load() {
		c.span.LogFields(fields...)
	}
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
	if !c.cfg.messageEvents && !c.cfg.logPayloads {
		return
	}
	size := -1
	if c.cfg.messageEvents {
		size = messageSize(msg)
	}
	c.logMessage(dir, seq, msg, size, -1, -1)
}

// logMessage logs a message event; a negative size is one not known.
func (c *call) logMessage(dir direction, seq int64, msg any, size, compressed, wire int) {
	var buf [7]log.Field
	fields := append(buf[:0],
		log.String("event", eventMessage),
		log.String("message.type", string(dir)),
		log.Int64("message.id", seq))
	if size >= 0 {
		fields = append(fields, log.Int("message.uncompressed_size", size))
	}
	if compressed >= 0 {
		fields = append(fields, log.Int("message.compressed_size", compressed), log.Int("message.wire_size", wire))
	}
	if c.cfg.logPayloads {
		if text, ok := c.payload(msg); ok {
			fields = append(fields, log.String("payload", text))
		}
	}
	c.log(fields...)
}

func messageSize(msg any) int {
	if m, ok := msg.(proto.Message); ok && m != nil {
		return proto.Size(m)
	}
	return 0
}

// defaultPayloadLimit caps a logged payload: a span is not the place for
// bulk data, and tracers buffer logs in memory.
const defaultPayloadLimit = 4 << 10

// payload returns the text to log for msg, after the redactor, cut to the
// limit; false when the redactor dropped it.
func (c *call) payload(msg any) (string, bool) {
	if c.cfg.redact != nil {
		if msg = c.cfg.redact(c.ctx, c.method.full, msg); msg == nil {
			return "", false
		}
	}
	var s string
	if m, ok := msg.(proto.Message); ok && m != nil {
		s = prototext.MarshalOptions{}.Format(m)
	} else {
		s = fmt.Sprint(msg)
	}
	limit := c.cfg.payloadLimit
	if len(s) <= limit {
		return s, true
	}
	for limit > 0 && !utf8.RuneStart(s[limit]) {
		limit--
	}
	return s[:limit] + truncatedMark, true
}

// truncatedMark ends a payload cut to the limit.
const truncatedMark = "…(truncated)"

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
	goexitReason          = "grpctrace: goroutine exited (runtime.Goexit) before the RPC returned"
)

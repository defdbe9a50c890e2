package grpctrace

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// call is the core of grpctrace: the state of one traced RPC (or, for the
// client stats handler, one attempt of it) on one side, from the start of
// its span to its end. It records what happens to the RPC and finishes the
// span exactly once, whichever of the RPC's possible ends reaches it first.
// The doors (the interceptors and the stats handlers) only translate gRPC's
// shapes into calls on it; it records through a span of the recorder
// (record.go), and knows no tracing API.
//
// A door that must find its call again later stores it in the RPC's
// context under a key of its own constructor's (withCall) and reads it
// back with ownCall: no door finds another's call, not even one of the
// same kind installed twice on a server or a connection. The two questions
// doors ask across each other go through keys of their own: attemptsKey
// and handledKey.
type call struct {
	cfg    *config // the door's: who made the call
	method *method
	rec    span
	// ctx is the RPC's context as grpctrace hands it on, carrying the
	// span: redactors and decorators get it.
	ctx context.Context

	ended atomic.Bool
	// logMu orders the logs of messages and stream events, which may come
	// from other goroutines than the one ending the call (a client stream's
	// context watch, gRPC's stats events), before the span's end: no log
	// reaches a finished span, and the finish is stamped no earlier than
	// the last log (lastLog).
	logMu   sync.Mutex
	lastLog int64 // Unix nanoseconds

	// numbers of messages received and sent, for message events; each is
	// counted by one goroutine at a time.
	received, sent int64
	// attempts counts the attempts the client stats handler has started
	// for this interceptor call.
	attempts atomic.Int32
	// unwatch stops the watch a door set up to end the call (a
	// context.AfterFunc, a GC cleanup), if any; the end calls it.
	unwatch func() bool
	// begun: gRPC began the RPC (the server stats handler's call).
	begun bool
}

// callKey is the context key of the call a door stores in the RPC's
// context: one key per constructor.
type callKey struct{ cfg *config }

// withCall returns ctx holding c as cfg's door's call; a nil c hides the
// call of another RPC of the same door's from this one.
func (cfg *config) withCall(ctx context.Context, c *call) context.Context {
	return context.WithValue(ctx, callKey{cfg}, c)
}

// ownCall returns the call cfg's door stored in ctx.
func (cfg *config) ownCall(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{cfg}).(*call)
	return c
}

// attemptsKey holds, in the context a client interceptor calls gRPC with,
// the interceptor's call: the client stats handler numbers its attempts.
type attemptsKey struct{}

// handledKey marks the context of a server RPC that a server stats handler
// traces: the server interceptors then leave it to the handler.
type handledKey struct{}

// newCall returns the call of one RPC under ctx, or nil when the RPC is not
// to be traced: the filter's and the recorder's decision, made once per
// RPC; noop reports the recorder's (the tracer records nothing). Its span
// is not started yet. cacheMethod says whether the method name is known to
// be served (see config.method).
func (cfg *config) newCall(ctx context.Context, fullMethod string, cacheMethod bool) (c *call, noop bool) {
	if cfg.filter != nil && !cfg.filter(ctx, fullMethod) {
		return nil, false
	}
	if c = cfg.rec.newCall(); c == nil {
		return nil, true
	}
	c.cfg, c.method, c.ctx = cfg, cfg.method(fullMethod, cacheMethod), ctx
	return c, false
}

// start starts the span under ctx as from says, completed with the call's
// side and method; the call's context carries it from then on. A tracer
// that panics starting it leaves the RPC untraced: false.
func (c *call) start(ctx context.Context, from spanStart) (started bool) {
	defer func() {
		if r := recover(); r != nil {
			started = false
		}
	}()
	from.method = c.method.rec
	c.ctx = c.rec.start(ctx, c.method.operationName, from)
	return true
}

// startClient starts the span of a client call or attempt under ctx: child
// of the span ctx carries, if any. It returns nil when the RPC is not to be
// traced. target names the server, if the door knows it (forTarget's).
func (cfg *config) startClient(ctx context.Context, fullMethod string, target any) *call {
	c, _ := cfg.newCall(ctx, fullMethod, true)
	if c == nil {
		return nil
	}
	parent, ok := c.rec.localParent(ctx)
	if !ok && cfg.parentRequired {
		return nil
	}
	if !c.start(ctx, spanStart{parent: parent, target: target}) {
		return nil
	}
	return c
}

// clientContext returns the context to call gRPC with: the call's, which
// carries the span, with outgoing metadata holding the span context, a copy
// of ctx's (the caller's, the call started under), so that the caller's is
// never touched. It is the call's context from then on.
func (c *call) clientContext(ctx context.Context) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	if md == nil {
		md = make(metadata.MD, 4)
	}
	c.inject(md)
	c.ctx = metadata.NewOutgoingContext(c.ctx, md)
	return c.ctx
}

// inject writes the span context into md. A tracer that fails, or panics,
// is logged on the span; the RPC goes on without it.
func (c *call) inject(md metadata.MD) {
	defer func() {
		if r := recover(); r != nil {
			c.event(eventInjectFailed, strField("message", fmt.Sprintf("panic injecting the span context: %v", r)))
		}
	}()
	if err := c.rec.inject(md); err != nil {
		c.event(eventInjectFailed, strField("message", err.Error()))
	}
}

// startServer starts a server span under ctx, child of the span context
// in ctx's incoming metadata. It returns nil
// when the RPC is not to be traced, or when a parent is required and there
// is none; then, when the reason is a tracer that records nothing, also the
// handler's context, carrying the tracer's no-op span (see
// recorder.noopContext). A traced RPC's handler context comes from
// serverContext, inside the door's guard.
func (cfg *config) startServer(ctx context.Context, fullMethod string, cacheMethod bool) (*call, context.Context) {
	c, noop := cfg.newCall(ctx, fullMethod, cacheMethod)
	if noop {
		return nil, cfg.rec.noopContext(ctx)
	}
	if c == nil {
		return nil, nil
	}
	sent, extractErr := c.rec.extract(ctx)
	if sent == nil && cfg.parentRequired {
		return nil, nil
	}
	from := spanStart{parent: sent}
	if cfg.public != nil && cfg.public(ctx, fullMethod) {
		from.parent, from.untrusted, from.public = nil, sent, true
	}
	if p, ok := peer.FromContext(ctx); ok {
		from.addr, from.local = p.Addr, p.LocalAddr
	}
	if !c.start(ctx, from) {
		return nil, nil
	}
	if extractErr != nil {
		c.event(eventExtractFailed, strField("message", extractErr.Error()))
	}
	if from.public && sent != nil {
		c.logUntrusted(sent)
	}
	return c, nil
}

// logUntrusted logs the identity of the remote parent a public endpoint
// did not join; a tracer that panics doing so is logged, and the RPC goes
// on.
func (c *call) logUntrusted(sent any) {
	defer c.recoverLogged(false)
	c.rec.logUntrusted(sent)
}

// serverContext returns the handler's context: the context the call
// started under, carrying the span, as start made it.
func (c *call) serverContext() context.Context { return c.ctx }

// end finishes the span with the RPC's outcome. Only the first call has an
// effect, so every place that can see an RPC end may call it.
func (c *call) end(err error, req, resp any) { c.endAt(err, req, resp, time.Time{}) }

// endAt is end with the time the RPC ended, when gRPC reports it (zero:
// now). The span finishes then, or at its last log if that came later: a
// message event racing the end is stamped when it was logged.
func (c *call) endAt(err error, req, resp any, at time.Time) {
	if !c.ended.CompareAndSwap(false, true) {
		return
	}
	if c.unwatch != nil {
		c.unwatch()
	}
	// A log under way completes first; later ones see ended and drop. The
	// lock is only a barrier: decorators and the tracer's Finish, which
	// may export synchronously, must not hold up a stream's other
	// goroutine.
	c.logMu.Lock()
	last := c.lastLog
	c.logMu.Unlock()
	if !at.IsZero() && last > at.UnixNano() {
		at = time.Unix(0, last)
	}
	st, ok := status.FromError(err)
	if !ok {
		// What a gRPC server sends for a handler's plain error.
		st = status.FromContextError(err)
	}
	code := st.Code()
	c.rec.outcome(spanEnd{
		code:    code,
		isError: code != codes.OK && c.cfg.isError(code),
		message: st.Message(),
		at:      at,
	})
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
			c.decorate(d, info)
		}
		// Decorators log "now": the span finishes no earlier.
		if now := time.Now(); !at.IsZero() && now.After(at) {
			at = now
		}
	}
	c.rec.finish(at)
}

// decorate runs one decorator; a panic in it is logged on the span, which
// still finishes, and the RPC goes on.
func (c *call) decorate(d SpanDecorator, info RPCInfo) {
	defer func() {
		if r := recover(); r != nil {
			c.rec.log(eventDecoratorPanicked, []field{strField("message", fmt.Sprint(r))})
		}
	}()
	d(c.ctx, info)
}

// endIfPanicking is deferred around everything grpctrace and the code it
// wraps do for an RPC once its span started: unless that returned
// (*returned), it is panicking, and the span finishes with the panic as an
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

// recoverLogged is deferred around grpctrace's work on goroutines where a
// panic has nowhere to go: gRPC's, running the stats handlers' callbacks
// (a panic there would crash the process, and no recovery interceptor can
// catch it), and grpctrace's own. The panic is logged on the span, and the
// RPC goes on; with end, where the span could not be set up to end later
// (a context for the RPC could not be made), the span ends now, Internal.
func (c *call) recoverLogged(end bool) {
	r := recover()
	if r == nil {
		return
	}
	msg := fmt.Sprint(r)
	c.event(eventPanicked, strField("message", msg))
	if end {
		c.end(status.Error(codes.Internal, "grpctrace: panic: "+msg), nil, nil)
	}
}

// endLater ends the call with err on a goroutine of grpctrace's own: for
// the runtime's cleanup goroutine, which runs the program's cleanups one at
// a time, so that a slow tracer holds up none of them.
func (c *call) endLater(err error) {
	go func() {
		defer c.recoverLogged(false)
		c.end(err, nil, nil)
	}()
}

// event logs a named event with fields on the span unless the call has
// ended: a stream's messages and events may race with its end, and a
// finished span must not be touched again.
func (c *call) event(name string, fields ...field) {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	if c.ended.Load() {
		return
	}
	c.rec.log(name, fields)
	c.lastLog = time.Now().UnixNano()
}

// direction is a message's direction, as seen from the span's side.
type direction string

const (
	sent     direction = "SENT"
	received direction = "RECEIVED"
)

// sizes are a message's sizes as gRPC measured them; negative: not known.
type sizes struct{ uncompressed, compressed, wire int }

var unknownSizes = sizes{-1, -1, -1}

// message logs one message, as far as the options ask for it: its number
// and sizes with message events (the uncompressed size measured here when
// gRPC did not say), its text with payload logging. The door calls it
// inside its guard: a redactor runs there.
func (c *call) message(dir direction, seq int64, msg any, sz sizes) {
	cfg := c.cfg
	if !cfg.messageEvents && !cfg.logPayloads {
		return
	}
	fields := make([]field, 0, 6)
	fields = append(fields,
		strField("message.type", string(dir)),
		numField("message.id", seq))
	if cfg.messageEvents {
		if sz.uncompressed < 0 {
			sz.uncompressed = messageSize(msg)
		}
		fields = append(fields, numField("message.uncompressed_size", int64(sz.uncompressed)))
		if sz.compressed >= 0 {
			fields = append(fields,
				numField("message.compressed_size", int64(sz.compressed)),
				numField("message.wire_size", int64(sz.wire)))
		}
	}
	if cfg.logPayloads {
		if text, ok := c.payload(msg); ok {
			fields = append(fields, strField("payload", text))
		}
	}
	c.event(eventMessage, fields...)
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
	eventError             = "error"
	eventMessage           = "message"
	eventExtractFailed     = "span context extraction failed"
	eventInjectFailed      = "span context injection failed"
	eventUntrustedParent   = "untrusted parent"
	eventDecoratorPanicked = "span decorator panicked"
	eventPanicked          = "grpctrace recovered a panic"
	eventClientHalfClose   = "client half-close"
	eventCloseSend         = "close send"
	eventRecvError         = "receive error"
	eventSendError         = "send error"
	tagError               = "error"
	abandonedStreamReason  = "grpctrace: client stream abandoned: garbage collected before the RPC ended"
	goexitReason           = "grpctrace: goroutine exited (runtime.Goexit) before the RPC returned"
)

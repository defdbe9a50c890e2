package grpctrace

import (
	"context"

	"github.com/opentracing/opentracing-go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
)

// Option configures an interceptor or a stats handler. Options are applied
// once, when the interceptor or handler is built; a nil Option, or an option given a nil argument, is
// ignored so that callers can pass optional settings straight through.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// Filter decides, once per RPC, whether the RPC is traced. Returning false
// lets the RPC run exactly as it would without grpctrace.
type Filter func(ctx context.Context, fullMethod string) bool

// SpanDecorator adds tags or logs to a span. It runs once per traced RPC,
// after grpctrace has recorded the status and just before the span
// finishes, on the goroutine that ended the RPC. ctx carries the span, for
// the tracing API in use: opentracing.SpanFromContext(ctx), or
// trace.SpanFromContext(ctx) with WithTracerProvider. A decorator that
// panics is logged on the span; the span still finishes and the RPC goes on.
type SpanDecorator func(ctx context.Context, rpc RPCInfo)

// RPCInfo describes the RPC a SpanDecorator is called for.
type RPCInfo struct {
	// FullMethod is the gRPC method, "/package.Service/Method".
	FullMethod string
	// Client is true for the client side of the RPC, false for the server side.
	Client bool
	// Request and Response are the unary request and response messages; they
	// are nil for streaming RPCs and Response is nil when the RPC failed.
	Request, Response any
	// Err is the RPC's error exactly as gRPC returned it, nil on success.
	Err error
	// Code is the RPC's status code.
	Code codes.Code
}

// WithTracer sets the OpenTracing tracer. By default grpctrace uses
// opentracing.GlobalTracer(), looked up on every RPC so that a tracer
// registered after the interceptor was built is still used. With
// WithTracerProvider, grpctrace records through OpenTelemetry instead, and
// WithTracer has no effect.
//
// When the tracer is an opentracing.NoopTracer nothing is recorded or sent;
// a server handler's context carries the NoopTracer's span.
func WithTracer(t opentracing.Tracer) Option {
	return optionFunc(func(c *config) {
		if t != nil {
			c.tracer = t
		}
	})
}

// WithTracerProvider records spans through the OpenTelemetry API, with the
// tracer tp gives for grpctrace, instead of through OpenTracing (WithTracer
// and the global OpenTracing tracer are then not used). Span contexts and
// baggage travel through the propagators (WithPropagators). To use
// OpenTelemetry's global provider, pass otel.GetTracerProvider(). With
// noop.NewTracerProvider() (go.opentelemetry.io/otel/trace/noop) grpctrace
// records and sends nothing, and passes no incoming trace context or
// baggage on to handlers.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) {
		if tp != nil {
			c.tracerProvider = tp
		}
	})
}

// WithPropagators sets how the OpenTelemetry path (WithTracerProvider)
// carries span contexts and baggage in gRPC metadata. By default grpctrace
// uses otel.GetTextMapPropagator(), looked up on every RPC, which
// propagates nothing until the program sets one (otel.SetTextMapPropagator):
// then every server span starts a trace of its own. It has no effect
// without WithTracerProvider: OpenTracing tracers propagate themselves.
func WithPropagators(p propagation.TextMapPropagator) Option {
	return optionFunc(func(c *config) {
		if p != nil {
			c.propagators = p
		}
	})
}

// WithFilter traces only the RPCs for which f returns true. f is called once
// per RPC, before anything else is done.
func WithFilter(f Filter) Option {
	return optionFunc(func(c *config) {
		if f != nil {
			c.filter = f
		}
	})
}

// WithOperationName names spans. The default is the full method,
// "/package.Service/Method", on OpenTracing, and the full method without
// its leading slash, "package.Service/Method", on OpenTelemetry (as
// otelgrpc names spans). The result is cached per method, so f must be a
// pure function of its argument.
func WithOperationName(f func(fullMethod string) string) Option {
	return optionFunc(func(c *config) {
		if f != nil {
			c.operationName = f
		}
	})
}

// WithSpanDecorator calls d on every traced RPC just before its span
// finishes. Several decorators run in the order they were given.
func WithSpanDecorator(d SpanDecorator) Option {
	return optionFunc(func(c *config) {
		if d != nil {
			c.decorators = append(c.decorators, d)
		}
	})
}

// WithPayloadLogging logs request and response messages on the span, in
// text form (Protocol Buffers text format for proto messages), each cut to
// 4 KiB (see WithPayloadLimit) after WithPayloadRedactor's hook. It is off by
// default: payloads often hold data that must not leave the service.
func WithPayloadLogging() Option {
	return optionFunc(func(c *config) { c.logPayloads = true })
}

// WithPayloadLimit sets how many bytes of each payload's text
// WithPayloadLogging logs; longer texts are cut, at a character boundary,
// and marked "…(truncated)". Values below 1 are ignored.
func WithPayloadLimit(bytes int) Option {
	return optionFunc(func(c *config) {
		if bytes > 0 {
			c.payloadLimit = bytes
		}
	})
}

// PayloadRedactor decides what WithPayloadLogging logs of a message: msg
// itself, a copy with fields masked or cleared (never modify msg: gRPC and
// the application still use it), or nil to log no payload.
type PayloadRedactor func(ctx context.Context, fullMethod string, msg any) any

// WithPayloadRedactor passes every payload through r before it is logged.
// It has no effect without WithPayloadLogging.
func WithPayloadRedactor(r PayloadRedactor) Option {
	return optionFunc(func(c *config) {
		if r != nil {
			c.redact = r
		}
	})
}

// WithMessageEvents records an event per message, unary RPCs' included,
// with its direction, sequence number and size: a span log on OpenTracing,
// a span event on OpenTelemetry. It is off by default, and when off
// grpctrace does no work per message.
func WithMessageEvents() Option {
	return optionFunc(func(c *config) { c.messageEvents = true })
}

// WithParentRequired traces an RPC only when it is already part of a trace.
// On the client, the call's context must carry a span; on the server, the
// incoming metadata must carry a span context the tracer can extract.
func WithParentRequired() Option {
	return optionFunc(func(c *config) { c.parentRequired = true })
}

// WithPublicEndpoint marks a server as facing untrusted clients: every
// server span starts a new trace, incoming baggage is dropped, and the
// incoming trace identity is kept so that the two traces can still be
// correlated: logged on the span (event "untrusted parent") on OpenTracing,
// a link to the caller's span on OpenTelemetry. It has no effect on
// client interceptors.
func WithPublicEndpoint() Option {
	return WithPublicEndpointFunc(func(context.Context, string) bool { return true })
}

// WithPublicEndpointFunc is WithPublicEndpoint decided per RPC: f returns
// true when the caller is untrusted. The context carries the peer
// (google.golang.org/grpc/peer), so f can trust, for example, clients with
// an authenticated mTLS identity and distrust the rest.
func WithPublicEndpointFunc(f func(ctx context.Context, fullMethod string) bool) Option {
	return optionFunc(func(c *config) {
		if f != nil {
			c.public = f
		}
	})
}

// WithErrorClassifier decides which status codes mark a span as an error
// (tag error=true and an "error" log event). Every span is tagged with its
// status code either way. By default, following the OpenTelemetry RPC
// conventions, a client treats every non-OK code as an error, and a server
// only Unknown, DeadlineExceeded, Unimplemented, Internal, Unavailable and
// DataLoss: the other codes report a problem with the request, not with the
// server.
func WithErrorClassifier(isError func(codes.Code) bool) Option {
	return optionFunc(func(c *config) {
		if isError != nil {
			c.isError = isError
		}
	})
}

// config is built once per constructor and read-only afterwards.
type config struct {
	side           side
	tracer         opentracing.Tracer // nil: opentracing.GlobalTracer() per RPC
	tracerProvider trace.TracerProvider
	propagators    propagation.TextMapPropagator // nil: otel.GetTextMapPropagator() per RPC
	filter         Filter
	operationName  func(string) string
	decorators     []SpanDecorator
	logPayloads    bool
	payloadLimit   int
	redact         PayloadRedactor
	messageEvents  bool
	parentRequired bool
	public         func(context.Context, string) bool
	isError        func(codes.Code) bool

	rec     recorder
	methods cache[*method]
	targets cache[any]
}

func newConfig(s side, opts []Option) *config {
	c := &config{side: s}
	for _, o := range opts {
		if o != nil {
			o.apply(c)
		}
	}
	if c.isError == nil {
		c.isError = defaultIsError(s)
	}
	if c.payloadLimit == 0 {
		c.payloadLimit = defaultPayloadLimit
	}
	if c.tracerProvider != nil {
		c.rec = newOTelRecorder(c.tracerProvider, c.propagators, s)
	} else {
		c.rec = newOTRecorder(c.tracer, s)
	}
	return c
}

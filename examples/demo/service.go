// Package demo is grpctrace's runnable demo as a library: a traced gRPC
// server and client for the test service, the calls the demo makes (every
// RPC shape, a failure and a panic, under one parent span), an
// OpenTelemetry SDK tracer, behind the OpenTracing bridge or used natively,
// that records in memory and exports over OTLP, and a terminal rendering of
// the recorded traces as trees and waterfalls.
//
// The command in ../cmd/demo puts these together; the end-to-end tests use
// them with other tracers.
package demo

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/opentracing/opentracing-go"
	otlog "github.com/opentracing/opentracing-go/log"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// BaggageKey is the baggage item the demo's client sets on its root span.
// It travels with the trace to the server, whose handlers read it and tag
// their span with it as BaggageTag.
const BaggageKey = "demo.user"

// BaggageTag is the tag with which the server's handlers record the
// BaggageKey baggage they received.
const BaggageTag = "demo.baggage.user"

// EventPanicRecovered is the event the server's recovery handler logs on
// the span of an RPC whose handler panicked.
const EventPanicRecovered = "panic recovered"

// Options configure the grpctrace interceptors of a demo server or client.
type Options struct {
	// Tracer records the spans through OpenTracing. Nil means
	// opentracing.GlobalTracer(). It is not used with TracerProvider.
	Tracer opentracing.Tracer
	// TracerProvider, if not nil, makes grpctrace record natively through
	// OpenTelemetry (WithTracerProvider), propagating with Propagators
	// (WithPropagators; nil means otel.GetTextMapPropagator()).
	TracerProvider trace.TracerProvider
	Propagators    propagation.TextMapPropagator
	// MessageEvents logs an event per stream message (WithMessageEvents).
	MessageEvents bool
	// Payloads logs the request and response messages (WithPayloadLogging).
	Payloads bool
}

func (o Options) grpctrace() []grpctrace.Option {
	var opts []grpctrace.Option
	if o.Tracer != nil {
		opts = append(opts, grpctrace.WithTracer(o.Tracer))
	}
	if o.TracerProvider != nil {
		opts = append(opts, grpctrace.WithTracerProvider(o.TracerProvider), grpctrace.WithPropagators(o.Propagators))
	}
	if o.MessageEvents {
		opts = append(opts, grpctrace.WithMessageEvents())
	}
	if o.Payloads {
		opts = append(opts, grpctrace.WithPayloadLogging())
	}
	return opts
}

// NewServer returns a gRPC server for the test service, traced by
// grpctrace's server interceptors chained with go-grpc-middleware's
// recovery interceptor. grpctrace comes first, so that its span covers the
// recovery and the recovery handler can log on it; a handler's panic
// becomes an Internal error, which grpctrace records as the RPC's status.
func NewServer(o Options, extra ...grpc.ServerOption) *grpc.Server {
	rec := recovery.WithRecoveryHandlerContext(recoverPanic)
	opts := append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(
			grpctrace.UnaryServerInterceptor(o.grpctrace()...),
			recovery.UnaryServerInterceptor(rec),
		),
		grpc.ChainStreamInterceptor(
			grpctrace.StreamServerInterceptor(o.grpctrace()...),
			recovery.StreamServerInterceptor(rec),
		),
	}, extra...)
	srv := grpc.NewServer(opts...)
	testpb.RegisterTestServiceServer(srv, Service{Server: testpb.NewServer()})
	return srv
}

// recoverPanic turns a handler's panic into an Internal error, after
// logging it, with the stack, on the RPC's span: the OpenTracing span in
// ctx, or else the OpenTelemetry one.
func recoverPanic(ctx context.Context, p any) error {
	if span := opentracing.SpanFromContext(ctx); span != nil {
		span.LogFields(
			otlog.String("event", EventPanicRecovered),
			otlog.String("panic", fmt.Sprint(p)),
			otlog.String("stack", string(debug.Stack())),
		)
	} else {
		trace.SpanFromContext(ctx).AddEvent(EventPanicRecovered, trace.WithAttributes(
			attribute.String("panic", fmt.Sprint(p)),
			attribute.String("stack", string(debug.Stack())),
		))
	}
	return status.Errorf(codes.Internal, "panic: %v", p)
}

// Dial returns a client connection to target traced by grpctrace's client
// interceptors.
func Dial(target string, o Options, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(o.grpctrace()...)),
		grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(o.grpctrace()...)),
	}, extra...)
	return grpc.NewClient(target, opts...)
}

// Service is the test service with handlers that, before doing what the
// request asks, read the BaggageKey baggage item from their span (or, on
// the OpenTelemetry path, from their context) and tag the span with it:
// proof that baggage set on the client reached the handler.
type Service struct {
	*testpb.Server
}

// noteBaggage tags the span in ctx with the baggage the client sent: the
// OpenTracing span's baggage item, or, without an OpenTracing span, the
// OpenTelemetry baggage in ctx on the OpenTelemetry span.
func noteBaggage(ctx context.Context) {
	if span := opentracing.SpanFromContext(ctx); span != nil {
		if v := span.BaggageItem(BaggageKey); v != "" {
			span.SetTag(BaggageTag, v)
		}
		return
	}
	if v := baggage.FromContext(ctx).Member(BaggageKey).Value(); v != "" {
		trace.SpanFromContext(ctx).SetAttributes(attribute.String(BaggageTag, v))
	}
}

// Unary implements testpb.TestServiceServer.
func (s Service) Unary(ctx context.Context, req *testpb.Request) (*testpb.Response, error) {
	noteBaggage(ctx)
	return s.Server.Unary(ctx, req)
}

// ServerStream implements testpb.TestServiceServer.
func (s Service) ServerStream(req *testpb.Request, stream testpb.TestService_ServerStreamServer) error {
	noteBaggage(stream.Context())
	return s.Server.ServerStream(req, stream)
}

// ClientStream implements testpb.TestServiceServer.
func (s Service) ClientStream(stream testpb.TestService_ClientStreamServer) error {
	noteBaggage(stream.Context())
	return s.Server.ClientStream(stream)
}

// Bidi implements testpb.TestServiceServer.
func (s Service) Bidi(stream testpb.TestService_BidiServer) error {
	noteBaggage(stream.Context())
	return s.Server.Bidi(stream)
}

package grpctrace_test

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/c2e00e20/grpctrace"
)

// otelFuzzMD builds incoming metadata from fuzz input: lines of
// "key: value", keys of any case, repeated or not, with the W3C headers
// the propagators read among them as often as chance has it.
func otelFuzzMD(text string) metadata.MD {
	md := metadata.MD{}
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" {
			continue
		}
		md[k] = append(md[k], strings.TrimPrefix(v, " "))
	}
	return md
}

// FuzzServerExtractOTel gives arbitrary incoming metadata to a server traced
// through OpenTelemetry (the unary interceptor, the stream interceptor or
// the stats handler; W3C trace context and baggage) and checks that tracing
// never changes the RPC: the handler runs once with its result returned
// unchanged, the metadata is not modified, one span ends, once, with the
// handler's status. The oracle for the parent is the propagator itself,
// reading the metadata as gRPC would deliver it (keys lowercased) from an
// http.Header: the span joins exactly the trace it accepts, and a public
// endpoint joins none and passes no baggage on.
func FuzzServerExtractOTel(f *testing.F) {
	f.Add("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\nbaggage: user=alice", uint8(0), false)
	f.Add("Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\ntracestate: a=b", uint8(1), true)
	f.Add("traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\nbaggage: %zz=1", uint8(2), false)
	f.Add("traceparent: garbage\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", uint8(0), false)
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	f.Fuzz(func(t *testing.T, text string, front uint8, public bool) {
		md := otelFuzzMD(text)
		before := md.Copy()
		tp := newOTelTP()
		opts := []grpctrace.Option{grpctrace.WithTracerProvider(tp), grpctrace.WithPropagators(prop)}
		if public {
			opts = append(opts, grpctrace.WithPublicEndpoint())
		}
		var handlerErr error
		if len(text)%2 == 1 {
			handlerErr = status.Error(codes.NotFound, "fuzzed")
		}
		const fullMethod = "/fuzz.Service/Method"
		ctx := metadata.NewIncomingContext(context.Background(), md)

		calls := 0
		var handlerBaggage baggage.Baggage
		handler := func(ctx context.Context) error {
			calls++
			if !trace.SpanFromContext(ctx).SpanContext().IsValid() {
				t.Fatal("the handler's context carries no span")
			}
			handlerBaggage = baggage.FromContext(ctx)
			return handlerErr
		}
		switch front % 3 {
		case 0:
			resp, err := grpctrace.UnaryServerInterceptor(opts...)(ctx, "request", &grpc.UnaryServerInfo{FullMethod: fullMethod},
				func(ctx context.Context, _ any) (any, error) { return "response", handler(ctx) })
			if resp != "response" || err != handlerErr {
				t.Fatalf("interceptor returned %v, %v; the handler returned response, %v", resp, err, handlerErr)
			}
		case 1:
			err := grpctrace.StreamServerInterceptor(opts...)(nil, &otelFuzzStream{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: fullMethod},
				func(_ any, ss grpc.ServerStream) error { return handler(ss.Context()) })
			if err != handlerErr {
				t.Fatalf("interceptor returned %v; the handler returned %v", err, handlerErr)
			}
		case 2:
			h := grpctrace.NewServerHandler(opts...)
			ctx = h.TagRPC(ctx, &stats.RPCTagInfo{FullMethodName: fullMethod})
			h.HandleRPC(ctx, &stats.Begin{BeginTime: time.Now()})
			err := handler(ctx)
			h.HandleRPC(ctx, &stats.End{Error: err, EndTime: time.Now()})
		}
		if calls != 1 {
			t.Fatalf("handler ran %d times", calls)
		}
		if !reflect.DeepEqual(md, before) {
			t.Fatalf("incoming metadata modified:\nbefore %q\nafter  %q", before, md)
		}
		spans := tp.snapshot()
		if len(spans) != 1 || !spans[0].Ended {
			t.Fatalf("%d spans, want 1 ended", len(spans))
		}
		span := spans[0]
		if got, want := span.Attrs["rpc.response.status_code"], map[bool]string{true: "NOT_FOUND", false: "OK"}[handlerErr != nil]; got != want {
			t.Errorf("span status code %v, want %v", got, want)
		}

		header := http.Header{}
		for k, vs := range md {
			if len(header.Values(k)) > 0 {
				// Two keys alike but for case: gRPC itself merges them in
				// map order, and the first value read is chance.
				return
			}
			for _, v := range vs {
				header.Add(k, v)
			}
		}
		accepted := trace.SpanContextFromContext(prop.Extract(context.Background(), propagation.HeaderCarrier(header)))
		switch {
		case public:
			if span.Parent.IsValid() {
				t.Errorf("public endpoint joined the caller's trace (parent %v)", span.Parent)
			}
			if handlerBaggage.Len() != 0 {
				t.Errorf("caller's baggage reached the public endpoint's handler: %v", handlerBaggage)
			}
		case accepted.IsValid():
			if span.Parent.TraceID() != accepted.TraceID() || span.Parent.SpanID() != accepted.SpanID() {
				t.Errorf("parent %v, want the one the propagator accepts, %v", span.Parent, accepted)
			}
		case span.Parent.IsValid():
			t.Errorf("joined %v, which the propagator does not accept from %q", span.Parent, map[string][]string(md))
		}
	})
}

// otelFuzzStream is a server stream with a context, and nothing else.
type otelFuzzStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *otelFuzzStream) Context() context.Context { return s.ctx }

package grpctrace_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/opentracing/opentracing-go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// fakeSpan is an OpenTracing span whose tracer injects what the test says.
type fakeSpan struct {
	opentracing.Span
	tracer opentracing.Tracer
}

func (s fakeSpan) Tracer() opentracing.Tracer { return s.tracer }

// fakeTracer injects headers, or fails with err, or panics.
type fakeTracer struct {
	opentracing.NoopTracer
	headers map[string]string
	err     error
	panics  bool
}

func (f fakeTracer) Inject(_ opentracing.SpanContext, _ any, carrier any) error {
	if f.panics {
		panic("fakeTracer: inject")
	}
	if f.err != nil {
		return f.err
	}
	w := carrier.(opentracing.TextMapWriter)
	for k, v := range f.headers {
		w.Set(k, v)
	}
	return nil
}

func withFakeSpan(ctx context.Context, f fakeTracer) context.Context {
	return opentracing.ContextWithSpan(ctx, fakeSpan{Span: opentracing.NoopTracer{}.StartSpan("fake"), tracer: f})
}

func TestTraceIDsFormats(t *testing.T) {
	const (
		tid = "4bf92f3577b34da6a3ce929d0e0e4736"
		sid = "00f067aa0ba902b7"
	)
	tests := []struct {
		name         string
		tracer       fakeTracer
		wantT, wantS string
	}{
		{"traceparent", fakeTracer{headers: map[string]string{"traceparent": "00-" + tid + "-" + sid + "-01"}}, tid, sid},
		{"Traceparent canonical key, upper-case hex", fakeTracer{headers: map[string]string{"Traceparent": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"}}, tid, sid},
		{"traceparent all zeros", fakeTracer{headers: map[string]string{"traceparent": "00-00000000000000000000000000000000-" + sid + "-01"}}, "", ""},
		{"traceparent short", fakeTracer{headers: map[string]string{"traceparent": "00-abc-" + sid + "-01"}}, "", ""},
		{"uber-trace-id", fakeTracer{headers: map[string]string{"uber-trace-id": "1f2e3d4c5b6a7980:0123456789abcdef:0:1"}}, "1f2e3d4c5b6a7980", "0123456789abcdef"},
		{"uber-trace-id escaped", fakeTracer{headers: map[string]string{"Uber-Trace-Id": "abc%3Adef%3A0%3A1"}}, "abc", "def"},
		{"uber-trace-id malformed", fakeTracer{headers: map[string]string{"uber-trace-id": "abc:xyz:0:1"}}, "", ""},
		{"b3", fakeTracer{headers: map[string]string{"X-B3-TraceId": tid, "X-B3-SpanId": sid}}, tid, sid},
		{"mocktracer", fakeTracer{headers: map[string]string{"mockpfx-ids-traceid": "43", "mockpfx-ids-spanid": "44"}}, "43", "44"},
		{"traceparent first", fakeTracer{headers: map[string]string{"traceparent": "00-" + tid + "-" + sid + "-01", "x-b3-traceid": "1", "x-b3-spanid": "2"}}, tid, sid},
		{"unknown format", fakeTracer{headers: map[string]string{"ot-tracer-traceid": "1", "ot-tracer-spanid": "2"}}, "", ""},
		{"nothing injected", fakeTracer{}, "", ""},
		{"inject fails", fakeTracer{err: errors.New("no")}, "", ""},
		{"inject panics", fakeTracer{panics: true}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := withFakeSpan(context.Background(), tt.tracer)
			gotT, gotS := grpctrace.TraceIDs(ctx)
			if gotT != tt.wantT || gotS != tt.wantS {
				t.Errorf("TraceIDs = %q, %q; want %q, %q", gotT, gotS, tt.wantT, tt.wantS)
			}
			fields := grpctrace.LogFields(ctx)
			if tt.wantT == "" {
				if fields != nil {
					t.Errorf("LogFields = %v, want nil", fields)
				}
			} else if fmt.Sprint(fields) != fmt.Sprint([]any{"trace_id", tt.wantT, "span_id", tt.wantS}) {
				t.Errorf("LogFields = %v", fields)
			}
		})
	}
}

func TestTraceIDsNoSpan(t *testing.T) {
	ctxs := map[string]context.Context{
		"background":           context.Background(),
		"invalid otel context": trace.ContextWithSpanContext(context.Background(), trace.SpanContext{}),
		"nil opentracing span": opentracing.ContextWithSpan(context.Background(), nil),
	}
	for name, ctx := range ctxs {
		if tid, sid := grpctrace.TraceIDs(ctx); tid != "" || sid != "" {
			t.Errorf("%s: TraceIDs = %q, %q; want empty", name, tid, sid)
		}
		if f := grpctrace.LogFields(ctx); f != nil {
			t.Errorf("%s: LogFields = %v, want nil", name, f)
		}
	}
}

// TestTraceIDsOTelFirst: a valid OpenTelemetry span context wins over an
// OpenTracing span in the same context.
func TestTraceIDsOTelFirst(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}})
	ctx := withFakeSpan(context.Background(), fakeTracer{headers: map[string]string{"x-b3-traceid": "1", "x-b3-spanid": "2"}})
	ctx = trace.ContextWithSpanContext(ctx, sc)
	if tid, sid := grpctrace.TraceIDs(ctx); tid != sc.TraceID().String() || sid != sc.SpanID().String() {
		t.Errorf("TraceIDs = %q, %q; want the OpenTelemetry span's", tid, sid)
	}
}

// ids is a trace and span ID pair as TraceIDs returns them.
type ids struct{ Trace, Span string }

func idsOf(ctx context.Context) ids {
	t, s := grpctrace.TraceIDs(ctx)
	return ids{t, s}
}

// correlationTracer is a tracer setup for TestTraceIDsRPC: its options and
// the IDs of the span it recorded, in TraceIDs' notation.
type correlationTracer struct {
	name string
	new  func(t *testing.T) (opts []grpctrace.Option, recorded func(t *testing.T, kind string) ids)
}

var correlationTracers = []correlationTracer{
	{"mocktracer", func(*testing.T) ([]grpctrace.Option, func(*testing.T, string) ids) {
		r := newRecorder()
		return []grpctrace.Option{grpctrace.WithTracer(r)}, func(t *testing.T, kind string) ids {
			r.waitSettled(t)
			s := r.span(t, testpb.TestService_Unary_FullMethodName, kind)
			return ids{strconv.Itoa(s.SpanContext.TraceID), strconv.Itoa(s.SpanContext.SpanID)}
		}
	}},
	{"otel", func(*testing.T) ([]grpctrace.Option, func(*testing.T, string) ids) {
		p := newOTelTP()
		opts := []grpctrace.Option{grpctrace.WithTracerProvider(p), grpctrace.WithPropagators(propagation.TraceContext{})}
		return opts, func(t *testing.T, kind string) ids {
			p.waitSettled(t)
			k := map[string]trace.SpanKind{"client": trace.SpanKindClient, "server": trace.SpanKindServer}[kind]
			s := p.find(t, strings.TrimPrefix(testpb.TestService_Unary_FullMethodName, "/"), k)
			return ids{s.SpanContext.TraceID().String(), s.SpanContext.SpanID().String()}
		}
	}},
}

// probeStats is a stats handler placed after grpctrace's: it records the
// IDs in the context gRPC hands it at the RPC's Begin.
type probeStats struct {
	mu  sync.Mutex
	got ids
}

func (p *probeStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (p *probeStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.Begin); ok {
		p.mu.Lock()
		p.got = idsOf(ctx)
		p.mu.Unlock()
	}
}

func (p *probeStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (p *probeStats) HandleConn(context.Context, stats.ConnStats) {}

func (p *probeStats) ids() ids {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got
}

// TestTraceIDsRPC reads the IDs in a handler and on the client (in an
// interceptor after grpctrace's, or a stats handler after grpctrace's) and
// compares them with the spans the tracer recorded.
func TestTraceIDsRPC(t *testing.T) {
	for _, tr := range correlationTracers {
		for _, mode := range []string{"interceptors", "stats-handlers"} {
			t.Run(tr.name+"/"+mode, func(t *testing.T) {
				opts, recorded := tr.new(t)
				var (
					mu      sync.Mutex
					handler ids
				)
				impl := &forwarder{unary: func(ctx context.Context, _ *testpb.Request) (*testpb.Response, error) {
					mu.Lock()
					handler = idsOf(ctx)
					mu.Unlock()
					return &testpb.Response{}, nil
				}}
				var client ids
				probe := &probeStats{}
				var sopts []grpc.ServerOption
				var dopts []grpc.DialOption
				if mode == "interceptors" {
					sopts = []grpc.ServerOption{grpc.UnaryInterceptor(grpctrace.UnaryServerInterceptor(opts...))}
					dopts = []grpc.DialOption{grpc.WithChainUnaryInterceptor(
						grpctrace.UnaryClientInterceptor(opts...),
						func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
							client = idsOf(ctx)
							return invoker(ctx, method, req, reply, cc, o...)
						},
					)}
				} else {
					sopts = []grpc.ServerOption{grpc.StatsHandler(grpctrace.NewServerHandler(opts...))}
					dopts = []grpc.DialOption{grpc.WithStatsHandler(grpctrace.NewClientHandler(opts...)), grpc.WithStatsHandler(probe)}
				}
				conn := serveBuf(t, impl, sopts...).dial(t, dopts...)
				if _, err := testpb.NewTestServiceClient(conn).Unary(t.Context(), &testpb.Request{}); err != nil {
					t.Fatal(err)
				}
				if mode != "interceptors" {
					client = probe.ids()
				}
				wantServer, wantClient := recorded(t, "server"), recorded(t, "client")
				mu.Lock()
				defer mu.Unlock()
				if handler != wantServer {
					t.Errorf("in the handler: %+v, want the server span's %+v", handler, wantServer)
				}
				if client != wantClient {
					t.Errorf("on the client: %+v, want the client span's %+v", client, wantClient)
				}
				if wantServer.Trace != wantClient.Trace || wantServer.Span == wantClient.Span || wantServer.Trace == "" {
					t.Errorf("server %+v and client %+v: want one trace, two spans", wantServer, wantClient)
				}
			})
		}
	}
}

// ExampleLogFields: the fields for a context with a span, as
// go-grpc-middleware v2's logging interceptor adds them to a log line, and
// none without a span.
func ExampleLogFields() {
	// Give this to go-grpc-middleware v2's logging interceptor, placed after
	// grpctrace's in the chain (Example_middlewareChain shows the chain):
	// logging.WithFieldsFromContext(fieldsFromContext).
	fieldsFromContext := func(ctx context.Context) logging.Fields {
		return grpctrace.LogFields(ctx)
	}

	// What the logging interceptor adds for a span with these IDs:
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	}))
	fmt.Println(fieldsFromContext(ctx))
	fmt.Println(fieldsFromContext(context.Background()) == nil)
	// Output:
	// [trace_id 4bf92f3577b34da6a3ce929d0e0e4736 span_id 00f067aa0ba902b7]
	// true
}

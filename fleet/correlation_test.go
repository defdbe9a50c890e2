package fleet

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
	"github.com/opentracing/opentracing-go"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/test/bufconn"
)

// correlationProbe reads grpctrace.TraceIDs in a context and the IDs of the
// OpenTracing span there in the tracer's own notation.
type correlationProbe struct {
	mu     sync.Mutex
	got    spanIDs // TraceIDs
	want   spanIDs // the tracer's IDs of the span in the context
	wantOK bool
	otel   bool // the context carried a valid OpenTelemetry span context
}

func (p *correlationProbe) read(ft *fleetTracer, ctx context.Context) {
	t, s := grpctrace.TraceIDs(ctx)
	var want spanIDs
	var ok bool
	if span := opentracing.SpanFromContext(ctx); span != nil {
		want, ok = ft.IDs(span.Context())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got, p.want, p.wantOK = spanIDs{t, s}, want, ok
	p.otel = trace.SpanContextFromContext(ctx).IsValid()
}

func (p *correlationProbe) result() (got, want spanIDs, wantOK, otel bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got, p.want, p.wantOK, p.otel
}

// correlationService's Unary reads the IDs in its handler's context.
type correlationService struct {
	testpb.UnimplementedTestServiceServer
	ft    *fleetTracer
	probe *correlationProbe
}

func (s *correlationService) Unary(ctx context.Context, _ *testpb.Request) (*testpb.Response, error) {
	s.probe.read(s.ft, ctx)
	return &testpb.Response{}, nil
}

// beginProbe is a client stats handler placed after grpctrace's: it reads
// the IDs in the context gRPC gives it at the RPC's Begin.
type beginProbe struct {
	ft    *fleetTracer
	probe *correlationProbe
}

func (b beginProbe) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (b beginProbe) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.Begin); ok {
		b.probe.read(b.ft, ctx)
	}
}

func (beginProbe) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (beginProbe) HandleConn(context.Context, stats.ConnStats) {}

// waitFinished waits for the tracer to finish the span with these IDs.
func waitFinished(t *testing.T, ft *fleetTracer, ids spanIDs) finishedSpan {
	t.Helper()
	deadline := time.Now().Add(serverEndTimeout)
	for {
		if s, ok := ft.FinishedSpan(ids); ok {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("span %+v never finished; finished: %+v", ids, ft.Finished())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestTraceIDs checks grpctrace.TraceIDs with every fleet tracer, in a
// handler and on the client (an interceptor after grpctrace's, or a stats
// handler after grpctrace's), against the spans the tracer recorded.
func TestTraceIDs(t *testing.T) {
	for _, tc := range fleetTracers {
		for _, s := range []side{sideGrpctrace, sideGrpctraceStats} {
			t.Run(tc.name+"/"+string(s), func(t *testing.T) {
				ft := tc.new(t)
				server, client := &correlationProbe{}, &correlationProbe{}

				sopts, err := serverSideOptions(s, ft.Tracer)
				if err != nil {
					t.Fatal(err)
				}
				lis := bufconn.Listen(1 << 20)
				srv := grpc.NewServer(sopts...)
				testpb.RegisterTestServiceServer(srv, &correlationService{ft: ft, probe: server})
				served := make(chan struct{})
				go func() {
					defer close(served)
					_ = srv.Serve(lis)
				}()
				t.Cleanup(func() {
					srv.Stop()
					<-served
				})

				dopts, err := clientSideOptions(s, ft.Tracer)
				if err != nil {
					t.Fatal(err)
				}
				if s == sideGrpctrace {
					dopts = append(dopts, grpc.WithChainUnaryInterceptor(
						func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
							client.read(ft, ctx)
							return invoker(ctx, method, req, reply, cc, o...)
						}))
				} else {
					dopts = append(dopts, grpc.WithStatsHandler(beginProbe{ft: ft, probe: client}))
				}
				dopts = append(dopts,
					grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
					grpc.WithTransportCredentials(insecure.NewCredentials()),
				)
				conn, err := grpc.NewClient("passthrough:///bufnet", dopts...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = conn.Close() })
				if _, err := testpb.NewTestServiceClient(conn).Unary(t.Context(), &testpb.Request{}); err != nil {
					t.Fatal(err)
				}

				sGot, sWant, sOK, sOTel := server.result()
				cGot, cWant, cOK, cOTel := client.result()
				if !sOK || !cOK {
					t.Fatalf("no %s span in the handler (%v) or on the client (%v)", ft.Name, sOK, cOK)
				}
				if sGot != sWant {
					t.Errorf("in the handler: TraceIDs = %+v, want the span's %+v", sGot, sWant)
				}
				if cGot != cWant {
					t.Errorf("on the client: TraceIDs = %+v, want the span's %+v", cGot, cWant)
				}
				if ft.OTel != nil && (!sOTel || !cOTel) {
					t.Errorf("bridge: OpenTelemetry span context in the handler %v, on the client %v; want both (ContextWithSpanHook)", sOTel, cOTel)
				}
				serverSpan := waitFinished(t, ft, sWant)
				clientSpan := waitFinished(t, ft, cWant)
				if serverSpan.Kind != kindServer || clientSpan.Kind != kindClient {
					t.Errorf("span kinds: handler's %q, client's %q; want %q, %q", serverSpan.Kind, clientSpan.Kind, kindServer, kindClient)
				}
				if serverSpan.Trace != clientSpan.Trace || serverSpan.Parent != clientSpan.Span {
					t.Errorf("server span %+v is not the client span %+v's child", serverSpan, clientSpan)
				}
			})
		}
	}
}

// TestTraceIDsNoSpan: no span, empty IDs.
func TestTraceIDsNoSpan(t *testing.T) {
	if tid, sid := grpctrace.TraceIDs(t.Context()); tid != "" || sid != "" {
		t.Errorf("TraceIDs = %q, %q; want empty", tid, sid)
	}
	if f := grpctrace.LogFields(t.Context()); f != nil {
		t.Errorf("LogFields = %v, want nil", f)
	}
}

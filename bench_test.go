package grpctrace_test

import (
	"context"
	"net"
	"testing"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/mocktracer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// contender is one way of instrumenting both sides of a connection.
type contender struct {
	name    string
	tracer  func() opentracing.Tracer // nil: no instrumentation
	handler bool                      // the stats handlers instead of the interceptors
}

var (
	noop = func() opentracing.Tracer { return opentracing.NoopTracer{} }
	mock = func() opentracing.Tracer { return mocktracer.New() }
)

var contenders = []contender{
	{name: "base"},
	{name: "interceptors-noop", tracer: noop},
	{name: "interceptors-mock", tracer: mock},
	{name: "handlers-noop", tracer: noop, handler: true},
	{name: "handlers-mock", tracer: mock, handler: true},
}

// resetEvery bounds the mock tracer's memory: it keeps every finished span.
const resetEvery = 1024

func benchClient(b *testing.B, c contender) (testpb.TestServiceClient, func()) {
	b.Helper()
	var srvOpts []grpc.ServerOption
	dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	reset := func() {}
	if c.tracer != nil {
		tracer := c.tracer()
		if m, ok := tracer.(*mocktracer.MockTracer); ok {
			reset = m.Reset
		}
		opt := grpctrace.WithTracer(tracer)
		if c.handler {
			srvOpts = append(srvOpts, grpc.StatsHandler(grpctrace.NewServerHandler(opt)))
			dialOpts = append(dialOpts, grpc.WithStatsHandler(grpctrace.NewClientHandler(opt)))
		} else {
			srvOpts = append(srvOpts,
				grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(opt)),
				grpc.ChainStreamInterceptor(grpctrace.StreamServerInterceptor(opt)))
			dialOpts = append(dialOpts,
				grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(opt)),
				grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(opt)))
		}
	}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(srvOpts...)
	testpb.RegisterTestServiceServer(srv, testpb.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	dialOpts = append(dialOpts, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	conn, err := grpc.NewClient("passthrough:///bufnet", dialOpts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		conn.Close()
		srv.Stop()
		<-served
	})
	return testpb.NewTestServiceClient(conn), reset
}

// BenchmarkUnary measures one unary round trip.
func BenchmarkUnary(b *testing.B) {
	for _, c := range contenders {
		b.Run(c.name, func(b *testing.B) {
			client, reset := benchClient(b, c)
			ctx := context.Background()
			req := &testpb.Request{Value: "ping"}
			if _, err := client.Unary(ctx, req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := client.Unary(ctx, req); err != nil {
					b.Fatal(err)
				}
				if i%resetEvery == 0 {
					reset()
				}
			}
		})
	}
}

// BenchmarkBidiMessage measures one request and response on a bidi stream
// that stays open: the per-message cost.
func BenchmarkBidiMessage(b *testing.B) {
	for _, c := range contenders {
		b.Run(c.name, func(b *testing.B) {
			client, _ := benchClient(b, c)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s, err := client.Bidi(ctx)
			if err != nil {
				b.Fatal(err)
			}
			req := &testpb.Request{Value: "ping"}
			resp := new(testpb.Response)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.Send(req); err != nil {
					b.Fatal(err)
				}
				if err := s.RecvMsg(resp); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if err := s.CloseSend(); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Recv(); err == nil {
				b.Fatal("stream did not end after CloseSend")
			}
		})
	}
}

// BenchmarkBidiStream measures opening a bidi stream, one message each way,
// and closing it.
func BenchmarkBidiStream(b *testing.B) {
	for _, c := range contenders {
		b.Run(c.name, func(b *testing.B) {
			client, reset := benchClient(b, c)
			ctx := context.Background()
			req := &testpb.Request{Value: "ping"}
			resp := new(testpb.Response)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := client.Bidi(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Send(req); err != nil {
					b.Fatal(err)
				}
				if err := s.RecvMsg(resp); err != nil {
					b.Fatal(err)
				}
				if err := s.CloseSend(); err != nil {
					b.Fatal(err)
				}
				if err := s.RecvMsg(resp); err == nil {
					b.Fatal("stream did not end after CloseSend")
				}
				if i%resetEvery == 0 {
					reset()
				}
			}
		})
	}
}

package grpctrace_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"strings"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/mocktracer"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/test/bufconn"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// A traced server and client over an in-memory connection. Any OpenTracing
// tracer works the same way; the mock tracer lets the example print what was
// recorded.
func Example_clientAndServer() {
	tracer := mocktracer.New()

	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(grpctrace.WithTracer(tracer))),
		grpc.ChainStreamInterceptor(grpctrace.StreamServerInterceptor(grpctrace.WithTracer(tracer))),
	)
	testpb.RegisterTestServiceServer(srv, testpb.NewServer())
	go srv.Serve(lis)
	defer srv.Stop()

	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(grpctrace.WithTracer(tracer))),
		grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(grpctrace.WithTracer(tracer))),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	parent := tracer.StartSpan("checkout")
	ctx := opentracing.ContextWithSpan(context.Background(), parent)
	reply, err := testpb.NewTestServiceClient(conn).Unary(ctx, &testpb.Request{Value: "hello"})
	if err != nil {
		log.Fatal(err)
	}
	parent.Finish()
	fmt.Println("reply:", reply.GetValue())

	// Print the trace as a tree: the server span is the client span's child.
	spans := tracer.FinishedSpans()
	children := map[int][]*mocktracer.MockSpan{}
	for _, s := range spans {
		children[s.ParentID] = append(children[s.ParentID], s)
	}
	var print func(parentID, depth int)
	print = func(parentID, depth int) {
		for _, s := range children[parentID] {
			kind := s.Tag("span.kind")
			if kind == nil {
				kind = "-"
			}
			fmt.Printf("%s%s kind=%v status=%v\n", strings.Repeat("  ", depth), s.OperationName, kind, s.Tag("rpc.grpc.status_code"))
			print(s.SpanContext.SpanID, depth+1)
		}
	}
	print(0, 0)
	// Output:
	// reply: hello
	// checkout kind=- status=<nil>
	//   /grpctrace.testpb.TestService/Unary kind=client status=0
	//     /grpctrace.testpb.TestService/Unary kind=server status=0
}

// Health checks and reflection are usually not worth a span.
func ExampleWithFilter() {
	skip := grpctrace.WithFilter(func(_ context.Context, fullMethod string) bool {
		return !strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") &&
			!strings.HasPrefix(fullMethod, "/grpc.reflection.")
	})
	_ = grpc.NewServer(grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(skip)))
}

// A server reachable from the internet trusts the trace of its mTLS-
// authenticated callers only; the others start new traces.
func ExampleWithPublicEndpointFunc() {
	untrusted := func(ctx context.Context, _ string) bool {
		p, ok := peer.FromContext(ctx)
		if !ok {
			return true
		}
		info, ok := p.AuthInfo.(credentials.TLSInfo)
		return !ok || len(info.State.VerifiedChains) == 0
	}
	_ = grpc.NewServer(grpc.ChainUnaryInterceptor(
		grpctrace.UnaryServerInterceptor(grpctrace.WithPublicEndpointFunc(untrusted))))
}

type tenantKey struct{}

// An interceptor of one's own that adds a value to a stream's context, for
// the handler to read from stream.Context().
func ExampleWrapServerStream() {
	withTenant := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx := context.WithValue(ss.Context(), tenantKey{}, "acme")
		return handler(srv, grpctrace.WrapServerStream(ss, ctx))
	}
	_ = grpc.NewServer(grpc.ChainStreamInterceptor(grpctrace.StreamServerInterceptor(), withTenant))
}

// Span tags and logs of one's own, added once the RPC's outcome is known.
func ExampleWithSpanDecorator() {
	withTenant := grpctrace.WithSpanDecorator(func(ctx context.Context, rpc grpctrace.RPCInfo) {
		if tenant, ok := ctx.Value(tenantKey{}).(string); ok {
			opentracing.SpanFromContext(ctx).SetTag("tenant", tenant)
		}
	})
	_ = grpc.NewServer(grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(withTenant)))
}

// Recording through OpenTelemetry: the same constructors, given a tracer
// provider (here the global one) and the propagators.
func ExampleWithTracerProvider() {
	opts := []grpctrace.Option{
		grpctrace.WithTracerProvider(otel.GetTracerProvider()),
		grpctrace.WithPropagators(propagation.NewCompositeTextMapPropagator(
			propagation.TraceContext{}, propagation.Baggage{})),
	}
	srv := grpc.NewServer(grpc.StatsHandler(grpctrace.NewServerHandler(opts...)))
	defer srv.Stop()
	conn, err := grpc.NewClient("dns:///localhost:50051",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(grpctrace.NewClientHandler(opts...)))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}

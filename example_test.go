package grpctrace_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"time"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/mocktracer"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/test/bufconn"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// greeter is a TestService whose Unary handler tags its span. The span is
// nil for an RPC the server's filter leaves untraced, hence the check.
type greeter struct{ *testpb.Server }

func (g greeter) Unary(ctx context.Context, req *testpb.Request) (*testpb.Response, error) {
	if span := opentracing.SpanFromContext(ctx); span != nil {
		span.SetTag("greeting.name", req.GetValue())
	}
	return g.Server.Unary(ctx, req)
}

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
	testpb.RegisterTestServiceServer(srv, greeter{testpb.NewServer()})
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
	reply, err := testpb.NewTestServiceClient(conn).Unary(ctx, &testpb.Request{Value: "world"})
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
			fmt.Printf("%s%s kind=%v status=%v", strings.Repeat("  ", depth), s.OperationName, kind, s.Tag("rpc.grpc.status_code"))
			if name := s.Tag("greeting.name"); name != nil {
				fmt.Printf(" greeting.name=%v", name)
			}
			fmt.Println()
			print(s.SpanContext.SpanID, depth+1)
		}
	}
	print(0, 0)
	// Output:
	// reply: world
	// checkout kind=- status=<nil>
	//   /grpctrace.testpb.TestService/Unary kind=client status=0
	//     /grpctrace.testpb.TestService/Unary kind=server status=0 greeting.name=world
}

// exampleConn serves testpb's TestService, and whatever register adds, over
// an in-memory connection, and returns a connection to it. stop stops both.
func exampleConn(register func(*grpc.Server), srvOpts []grpc.ServerOption, dialOpts ...grpc.DialOption) (conn *grpc.ClientConn, stop func()) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(srvOpts...)
	testpb.RegisterTestServiceServer(srv, testpb.NewServer())
	if register != nil {
		register(srv)
	}
	go srv.Serve(lis)

	dialOpts = append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, dialOpts...)
	conn, err := grpc.NewClient("passthrough:///bufnet", dialOpts...)
	if err != nil {
		log.Fatal(err)
	}
	return conn, func() {
		conn.Close()
		srv.Stop()
	}
}

// Health checks and reflection are usually not worth a span.
func ExampleWithFilter() {
	tracer := mocktracer.New()
	skip := grpctrace.WithFilter(func(_ context.Context, fullMethod string) bool {
		return !strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") &&
			!strings.HasPrefix(fullMethod, "/grpc.reflection.")
	})
	conn, stop := exampleConn(
		func(srv *grpc.Server) { healthpb.RegisterHealthServer(srv, health.NewServer()) },
		[]grpc.ServerOption{grpc.ChainUnaryInterceptor(
			grpctrace.UnaryServerInterceptor(grpctrace.WithTracer(tracer), skip))},
	)
	defer stop()

	ctx := context.Background()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		log.Fatal(err)
	}
	if _, err := testpb.NewTestServiceClient(conn).Unary(ctx, &testpb.Request{Value: "hi"}); err != nil {
		log.Fatal(err)
	}
	for _, s := range tracer.FinishedSpans() {
		fmt.Println(s.OperationName, s.Tag("span.kind"))
	}
	// Output:
	// /grpctrace.testpb.TestService/Unary server
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

	// The in-memory connection below has no TLS: the caller is untrusted.
	tracer := mocktracer.New()
	conn, stop := exampleConn(nil,
		[]grpc.ServerOption{grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(
			grpctrace.WithTracer(tracer), grpctrace.WithPublicEndpointFunc(untrusted)))},
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(grpctrace.WithTracer(tracer))),
	)
	defer stop()

	if _, err := testpb.NewTestServiceClient(conn).Unary(context.Background(), &testpb.Request{Value: "hi"}); err != nil {
		log.Fatal(err)
	}
	spans := map[string]*mocktracer.MockSpan{} // by span.kind
	for _, s := range tracer.FinishedSpans() {
		spans[fmt.Sprint(s.Tag("span.kind"))] = s
	}
	client, server := spans["client"], spans["server"]
	fmt.Println("server span is a root:", server.ParentID == 0)
	fmt.Println("same trace as the client:", server.SpanContext.TraceID == client.SpanContext.TraceID)
	// Output:
	// server span is a root: true
	// same trace as the client: false
}

type tenantKey struct{}

// A handler of ServerStream that reads the tenant ExampleWrapServerStream's
// interceptor put in its stream's context, and tags its span with it.
type tenantServer struct{ *testpb.Server }

func (t tenantServer) ServerStream(req *testpb.Request, stream testpb.TestService_ServerStreamServer) error {
	tenant, _ := stream.Context().Value(tenantKey{}).(string)
	if span := opentracing.SpanFromContext(stream.Context()); span != nil {
		span.SetTag("tenant", tenant)
	}
	return t.Server.ServerStream(req, stream)
}

// An interceptor of one's own that adds a value to a stream's context, for
// the handler to read from stream.Context().
func ExampleWrapServerStream() {
	withTenant := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx := context.WithValue(ss.Context(), tenantKey{}, "acme")
		return handler(srv, grpctrace.WrapServerStream(ss, ctx))
	}

	tracer := mocktracer.New()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.ChainStreamInterceptor(
		grpctrace.StreamServerInterceptor(grpctrace.WithTracer(tracer)), withTenant))
	testpb.RegisterTestServiceServer(srv, tenantServer{testpb.NewServer()})
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	stream, err := testpb.NewTestServiceClient(conn).ServerStream(context.Background(), &testpb.Request{Value: "hi"})
	if err != nil {
		log.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			log.Fatal(err)
		}
	}
	for _, s := range tracer.FinishedSpans() {
		fmt.Println(s.OperationName, "tenant="+fmt.Sprint(s.Tag("tenant")))
	}
	// Output:
	// /grpctrace.testpb.TestService/ServerStream tenant=acme
}

// Span tags and logs of one's own, added once the RPC's outcome is known.
// Here the client tags its spans with the tenant its callers put in their
// contexts.
func ExampleWithSpanDecorator() {
	withTenant := grpctrace.WithSpanDecorator(func(ctx context.Context, rpc grpctrace.RPCInfo) {
		if tenant, ok := ctx.Value(tenantKey{}).(string); ok {
			if span := opentracing.SpanFromContext(ctx); span != nil {
				span.SetTag("tenant", tenant)
			}
		}
	})

	tracer := mocktracer.New()
	conn, stop := exampleConn(nil, nil, grpc.WithChainUnaryInterceptor(
		grpctrace.UnaryClientInterceptor(grpctrace.WithTracer(tracer), withTenant)))
	defer stop()

	ctx := context.WithValue(context.Background(), tenantKey{}, "acme")
	if _, err := testpb.NewTestServiceClient(conn).Unary(ctx, &testpb.Request{Value: "hi"}); err != nil {
		log.Fatal(err)
	}
	for _, s := range tracer.FinishedSpans() {
		fmt.Println(s.OperationName, s.Tag("span.kind"), "tenant="+fmt.Sprint(s.Tag("tenant")))
	}
	// Output:
	// /grpctrace.testpb.TestService/Unary client tenant=acme
}

// Recording through OpenTelemetry: the same constructors, given a tracer
// provider and the propagators. A program passes its SDK's provider, or
// otel.GetTracerProvider(); here an in-memory recorder of the package's tests
// lets the example print the spans.
func ExampleWithTracerProvider() {
	tp := newOTelTP()
	opts := []grpctrace.Option{
		grpctrace.WithTracerProvider(tp),
		grpctrace.WithPropagators(propagation.NewCompositeTextMapPropagator(
			propagation.TraceContext{}, propagation.Baggage{})),
	}
	conn, stop := exampleConn(nil,
		[]grpc.ServerOption{grpc.StatsHandler(grpctrace.NewServerHandler(opts...))},
		grpc.WithStatsHandler(grpctrace.NewClientHandler(opts...)))
	defer stop()

	if _, err := testpb.NewTestServiceClient(conn).Unary(context.Background(), &testpb.Request{Value: "hi"}); err != nil {
		log.Fatal(err)
	}
	// A stats handler ends the server span once gRPC has sent the reply,
	// possibly after the client has it: wait for both spans.
	if !tp.waitEnded(2, 10*time.Second) {
		log.Fatal("spans did not end")
	}
	for _, s := range tp.snapshot() { // in start order
		fmt.Println(s.Name, s.Kind)
	}
	// Output:
	// grpctrace.testpb.TestService/Unary client
	// grpctrace.testpb.TestService/Unary server
}

package readme_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/mocktracer"
	jaegercfg "github.com/uber/jaeger-client-go/config"
	"github.com/uber/jaeger-client-go/thrift"
	jaegerthrift "github.com/uber/jaeger-client-go/thrift-gen/jaeger"
	"go.opentelemetry.io/otel"
	otbridge "go.opentelemetry.io/otel/bridge/opentracing"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// Each Example below holds one Go block of the README, verbatim, between
// the lines that give it what it names (tracer, target, creds, tp, ...)
// and the lines that run an RPC and print what was recorded.

// Quick start: OpenTracing with Jaeger. The JAEGER_* variables send the
// spans to a collector endpoint of the example's own, which decodes what
// jaeger-client-go reports and prints it once the tracer is closed.
func Example_openTracingJaeger() {
	collector := newJaegerCollector()
	defer collector.print() // after closer.Close has reported the spans
	defer setenv("JAEGER_SERVICE_NAME", "greeter", "JAEGER_SAMPLER_TYPE", "const", "JAEGER_SAMPLER_PARAM", "1",
		"JAEGER_ENDPOINT", collector.URL+"/api/traces")()
	defer restoreGlobals()()
	lis, target := listen()

	// jaegercfg "github.com/uber/jaeger-client-go/config": JAEGER_SERVICE_NAME, JAEGER_SAMPLER_TYPE,
	// JAEGER_AGENT_HOST or JAEGER_ENDPOINT, ... say what to sample and where to send it.
	cfg, err := jaegercfg.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	tracer, closer, err := cfg.NewTracer()
	if err != nil {
		log.Fatal(err)
	}
	defer closer.Close() // reports the spans still queued
	opentracing.SetGlobalTracer(tracer)
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(grpctrace.StreamServerInterceptor()),
	)
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor()),
	)

	if err != nil {
		log.Fatal(err)
	}
	callUnary(srv, lis, conn)
	// Output:
	// client /grpctrace.testpb.TestService/Unary
	//   server /grpctrace.testpb.TestService/Unary
}

// OpenTelemetry natively: an SDK tracer provider whose spans the example
// keeps in memory, and the W3C propagators.
func Example_openTelemetry() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	lis, target := listen()
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())

	opts := []grpctrace.Option{
		grpctrace.WithTracerProvider(tp), // e.g. an SDK provider, or otel.GetTracerProvider()
		grpctrace.WithPropagators(propagation.NewCompositeTextMapPropagator(
			propagation.TraceContext{}, propagation.Baggage{})), // default: otel.GetTextMapPropagator()
	}
	// Without WithPropagators, set the global one (otel.SetTextMapPropagator): OpenTelemetry's default
	// propagates nothing, and every server span would start a new trace.
	srv := grpc.NewServer(grpc.StatsHandler(grpctrace.NewServerHandler(opts...)))
	conn, err := grpc.NewClient(target, creds, grpc.WithStatsHandler(grpctrace.NewClientHandler(opts...)))

	if err != nil {
		log.Fatal(err)
	}
	callUnary(srv, lis, conn)
	printTree(otelSpans(spans.Ended()))
	// Output:
	// client grpctrace.testpb.TestService/Unary
	//   server grpctrace.testpb.TestService/Unary
}

// OpenTelemetry's OpenTracing bridge, given the propagators it needs; the
// exporter here keeps the spans in memory.
func Example_openTracingBridge() {
	exporter := tracetest.NewInMemoryExporter()
	defer restoreGlobals()()
	lis, target := listen()
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())

	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter)) // your exporter, resource, sampler
	bridge, wrapped := otbridge.NewTracerPair(tp.Tracer("my-service"))
	bridge.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{}, propagation.Baggage{}))
	opentracing.SetGlobalTracer(bridge) // or grpctrace.WithTracer(bridge)
	otel.SetTracerProvider(wrapped)     // OpenTelemetry code then nests in the same spans

	defer tp.Shutdown(context.Background())
	srv := grpc.NewServer(grpctrace.ServerInterceptors()...)
	conn, err := grpc.NewClient(target, append(grpctrace.DialOptions(), creds)...)
	if err != nil {
		log.Fatal(err)
	}
	callUnary(srv, lis, conn)
	if err := tp.ForceFlush(context.Background()); err != nil {
		log.Fatal(err)
	}
	printTree(otelSpans(exporter.GetSpans().Snapshots()))
	// Output:
	// client /grpctrace.testpb.TestService/Unary
	//   server /grpctrace.testpb.TestService/Unary
}

// Stats handlers on both sides, with the client interceptors for the
// call's span: the attempt is the call's child, the server the attempt's.
func Example_statsHandlers() {
	tracer := mocktracer.New()
	defer restoreGlobals()()
	opentracing.SetGlobalTracer(tracer)
	lis, target := listen()
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())

	srv := grpc.NewServer(grpc.StatsHandler(grpctrace.NewServerHandler()))
	conn, err := grpc.NewClient(target, creds,
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor()), // optional: the call span
		grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor()),
		grpc.WithStatsHandler(grpctrace.NewClientHandler()),
	)

	if err != nil {
		log.Fatal(err)
	}
	callUnary(srv, lis, conn)
	printTree(mockSpans(tracer))
	// Output:
	// client /grpctrace.testpb.TestService/Unary
	//   client /grpctrace.testpb.TestService/Unary grpc.attempt=1
	//     server /grpctrace.testpb.TestService/Unary
}

// Ready-made filters, given to both interceptors of each side at once: the
// health check runs untraced, the other RPC is traced.
func Example_filters() {
	tracer := mocktracer.New()
	defer restoreGlobals()()
	opentracing.SetGlobalTracer(tracer)
	lis, target := listen()
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())

	opts := []grpctrace.Option{
		grpctrace.WithFilter(grpctrace.Not(grpctrace.Any(
			grpctrace.HealthCheck(), grpctrace.Reflection()))),
	}
	srv := grpc.NewServer(grpctrace.ServerInterceptors(opts...)...)
	conn, err := grpc.NewClient(target, append(grpctrace.DialOptions(opts...), creds)...)

	if err != nil {
		log.Fatal(err)
	}
	healthpb.RegisterHealthServer(srv, health.NewServer())
	callUnary(srv, lis, conn, func() {
		if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			log.Fatal(err)
		}
	})
	printTree(mockSpans(tracer))
	// Output:
	// client /grpctrace.testpb.TestService/Unary
	//   server /grpctrace.testpb.TestService/Unary
}

// listen returns a local TCP listener and the target that dials it.
func listen() (net.Listener, string) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	return lis, lis.Addr().String()
}

// callUnary serves the test service on lis, runs first (if not nil) and
// one unary RPC through conn, then closes conn and stops the server
// gracefully, so that every span has finished when it returns.
func callUnary(srv *grpc.Server, lis net.Listener, conn *grpc.ClientConn, first ...func()) {
	testpb.RegisterTestServiceServer(srv, testpb.NewServer())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	for _, f := range first {
		f()
	}
	_, err := testpb.NewTestServiceClient(conn).Unary(context.Background(), &testpb.Request{Value: "hello"})
	if err != nil {
		log.Fatal(err)
	}
	conn.Close()
	srv.GracefulStop()
	if err := <-served; err != nil {
		log.Fatal(err)
	}
}

// jaegerCollector is an HTTP endpoint that takes the Thrift batches
// jaeger-client-go posts to a Jaeger collector and keeps their spans.
type jaegerCollector struct {
	*httptest.Server
	mu    sync.Mutex
	spans []*jaegerthrift.Span
}

func newJaegerCollector() *jaegerCollector {
	c := &jaegerCollector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := thrift.NewTMemoryBuffer()
		if _, err := buf.ReadFrom(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var batch jaegerthrift.Batch
		if err := batch.Read(r.Context(), thrift.NewTBinaryProtocolConf(buf, &thrift.TConfiguration{})); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.spans = append(c.spans, batch.Spans...)
		c.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	return c
}

// print prints the spans received as a tree, then shuts the endpoint down.
func (c *jaegerCollector) print() {
	c.Close()
	http.DefaultClient.CloseIdleConnections()
	c.mu.Lock()
	defer c.mu.Unlock()
	var nodes []node
	for _, s := range c.spans {
		kind := ""
		for _, t := range s.Tags {
			if t.Key == "span.kind" && t.VStr != nil {
				kind = *t.VStr
			}
		}
		nodes = append(nodes, node{id: fmt.Sprint(s.SpanId), parent: fmt.Sprint(s.ParentSpanId), line: kind + " " + s.OperationName})
	}
	printTree(nodes)
}

// setenv sets the variables, given as name-value pairs, and returns a
// function that restores them.
func setenv(kv ...string) func() {
	var restore []func()
	for i := 0; i < len(kv); i += 2 {
		name := kv[i]
		if old, ok := os.LookupEnv(name); ok {
			restore = append(restore, func() { os.Setenv(name, old) })
		} else {
			restore = append(restore, func() { os.Unsetenv(name) })
		}
		os.Setenv(name, kv[i+1])
	}
	return func() {
		for _, f := range restore {
			f()
		}
	}
}

// restoreGlobals returns a function that puts back the global OpenTracing
// tracer and OpenTelemetry tracer provider the example is about to change.
func restoreGlobals() func() {
	tracer, tp := opentracing.GlobalTracer(), otel.GetTracerProvider()
	return func() {
		opentracing.SetGlobalTracer(tracer)
		if otel.GetTracerProvider() != tp { // setting the same one again logs an error
			otel.SetTracerProvider(tp)
		}
	}
}

// node is a finished span as printTree shows it.
type node struct {
	id, parent string
	line       string
}

func mockSpans(tracer *mocktracer.MockTracer) []node {
	var nodes []node
	for _, s := range tracer.FinishedSpans() {
		line := fmt.Sprintf("%v %s", s.Tag("span.kind"), s.OperationName)
		if a := s.Tag("grpc.attempt"); a != nil {
			line += fmt.Sprintf(" grpc.attempt=%v", a)
		}
		nodes = append(nodes, node{id: fmt.Sprint(s.SpanContext.SpanID), parent: fmt.Sprint(s.ParentID), line: line})
	}
	return nodes
}

func otelSpans(spans []sdktrace.ReadOnlySpan) []node {
	var nodes []node
	for _, s := range spans {
		parent := ""
		if s.Parent().IsValid() {
			parent = s.Parent().SpanID().String()
		}
		nodes = append(nodes, node{id: s.SpanContext().SpanID().String(), parent: parent, line: s.SpanKind().String() + " " + s.Name()})
	}
	return nodes
}

// printTree prints spans as a tree, children indented under their parent,
// siblings in the order of their lines.
func printTree(nodes []node) {
	ids := map[string]bool{}
	for _, n := range nodes {
		ids[n.id] = true
	}
	children := map[string][]node{}
	for _, n := range nodes {
		parent := n.parent
		if !ids[parent] {
			parent = ""
		}
		children[parent] = append(children[parent], n)
	}
	var walk func(parent string, depth int)
	walk = func(parent string, depth int) {
		kids := children[parent]
		sort.Slice(kids, func(i, j int) bool { return kids[i].line < kids[j].line })
		for _, n := range kids {
			fmt.Println(strings.Repeat("  ", depth) + n.line)
			walk(n.id, depth+1)
		}
	}
	walk("", 0)
}

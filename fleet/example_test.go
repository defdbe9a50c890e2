package fleet_test

// The code of docs/migrating.md. Each example wires a peer library
// ("before") and grpctrace ("after") the same way, runs an RPC through
// each over an in-memory connection with the mock tracer, and prints what
// was recorded, so that the guide's claims are checked by `go test`.

import (
	"context"
	"fmt"
	"log"
	"net"
	"sort"
	"strings"

	grpc_ctxtags "github.com/grpc-ecosystem/go-grpc-middleware/tags"
	grpc_opentracing "github.com/grpc-ecosystem/go-grpc-middleware/tracing/opentracing"
	otgrpc "github.com/opentracing-contrib/go-grpc"
	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"
	"github.com/opentracing/opentracing-go/mocktracer"
	jaeger "github.com/uber/jaeger-client-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// Replacing otgrpc: the same tracer, the same settings, and what each
// records for one RPC made inside a trace.
func Example_migrateFromOtgrpc() {
	tracer := mocktracer.New()

	// Before: otgrpc. Server spans only for RPCs that are part of a trace,
	// a tag of one's own on every span, payloads logged.
	inTrace := otgrpc.IncludingSpans(func(parent opentracing.SpanContext, _ string, _, _ any) bool {
		return parent != nil
	})
	tenant := otgrpc.SpanDecorator(func(_ context.Context, span opentracing.Span, _ string, _, _ any, _ error) {
		span.SetTag("tenant", "acme")
	})
	beforeServer := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(otgrpc.OpenTracingServerInterceptor(tracer, inTrace, tenant, otgrpc.LogPayloads())),
		grpc.ChainStreamInterceptor(otgrpc.OpenTracingStreamServerInterceptor(tracer, inTrace, tenant, otgrpc.LogPayloads())),
	}
	beforeClient := []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(otgrpc.OpenTracingClientInterceptor(tracer, tenant, otgrpc.LogPayloads())),
		grpc.WithChainStreamInterceptor(otgrpc.OpenTracingStreamClientInterceptor(tracer, tenant, otgrpc.LogPayloads())),
	}

	// After: grpctrace. WithParentRequired is the inclusion function above:
	// a server traces an RPC only when the client sent a span context.
	tenantTag := grpctrace.WithSpanDecorator(func(ctx context.Context, _ grpctrace.RPCInfo) {
		span := opentracing.SpanFromContext(ctx)
		span.SetTag("tenant", "acme")
	})
	serverOpts := []grpctrace.Option{
		grpctrace.WithTracer(tracer), grpctrace.WithParentRequired(), tenantTag, grpctrace.WithPayloadLogging(),
	}
	clientOpts := []grpctrace.Option{
		grpctrace.WithTracer(tracer), tenantTag, grpctrace.WithPayloadLogging(),
	}
	afterServer := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(serverOpts...)),
		grpc.ChainStreamInterceptor(grpctrace.StreamServerInterceptor(serverOpts...)),
	}
	afterClient := []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(clientOpts...)),
		grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(clientOpts...)),
	}

	for _, lib := range []struct {
		name   string
		server []grpc.ServerOption
		client []grpc.DialOption
	}{{"otgrpc", beforeServer, beforeClient}, {"grpctrace", afterServer, afterClient}} {
		tracer.Reset()
		client, stop := exampleServe(lib.server, lib.client...)
		parent := tracer.StartSpan("checkout")
		_, err := client.Unary(opentracing.ContextWithSpan(context.Background(), parent), &testpb.Request{Value: "hello"})
		parent.Finish()
		stop()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(lib.name + ":")
		examplePrintTree(tracer)
	}
	// Output:
	// otgrpc:
	// checkout
	//   /grpctrace.testpb.TestService/Unary
	//     tags: component=gRPC span.kind=client tenant=acme
	//     logs: [gRPC request] [gRPC response]
	//     /grpctrace.testpb.TestService/Unary
	//       tags: component=gRPC span.kind=server tenant=acme
	//       logs: [gRPC request] [gRPC response]
	// grpctrace:
	// checkout
	//   /grpctrace.testpb.TestService/Unary
	//     tags: component=gRPC peer.address=bufnet rpc.grpc.status_code=0 rpc.method=Unary rpc.service=grpctrace.testpb.TestService rpc.system=grpc span.kind=client tenant=acme
	//     logs: [event=message message.type=SENT message.id payload] [event=message message.type=RECEIVED message.id payload]
	//     /grpctrace.testpb.TestService/Unary
	//       tags: component=gRPC peer.address=bufconn rpc.grpc.status_code=0 rpc.method=Unary rpc.service=grpctrace.testpb.TestService rpc.system=grpc span.kind=server tenant=acme
	//       logs: [event=message message.type=RECEIVED message.id payload] [event=message message.type=SENT message.id payload]
}

// Which status codes make error=true: otgrpc's classes, and the classifiers
// that make grpctrace mark the same spans.
func Example_errorClassifierLikeOtgrpc() {
	// otgrpc: on a client every code but OK and Canceled (its class
	// "2xx") is an error; on a server only its "5xx" codes are.
	otgrpcClient := grpctrace.WithErrorClassifier(func(c codes.Code) bool {
		return c != codes.OK && c != codes.Canceled
	})
	otgrpcServer := grpctrace.WithErrorClassifier(func(c codes.Code) bool {
		switch c {
		case codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted,
			codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
			return true
		}
		return false
	})

	tracer := mocktracer.New()
	defaults, defaultsStop := exampleServe(
		[]grpc.ServerOption{grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(grpctrace.WithTracer(tracer)))},
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(grpctrace.WithTracer(tracer))))
	defer defaultsStop()
	likeOtgrpc, likeOtgrpcStop := exampleServe(
		[]grpc.ServerOption{grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(grpctrace.WithTracer(tracer), otgrpcServer))},
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(grpctrace.WithTracer(tracer), otgrpcClient)))
	defer likeOtgrpcStop()

	fmt.Println("code               default (client server)  like otgrpc (client server)")
	for _, code := range []codes.Code{codes.Canceled, codes.Unknown, codes.NotFound, codes.ResourceExhausted, codes.Aborted, codes.Internal} {
		var row []string
		for _, client := range []testpb.TestServiceClient{defaults, likeOtgrpc} {
			tracer.Reset()
			_, _ = client.Unary(context.Background(), &testpb.Request{FailCode: int32(code)})
			row = append(row, exampleErrorFlags(tracer))
		}
		fmt.Printf("%-18s %-24s %s\n", code, row[0], row[1])
	}
	// Output:
	// code               default (client server)  like otgrpc (client server)
	// Canceled           true   false             false  false
	// Unknown            true   true              true   false
	// NotFound           true   false             true   false
	// ResourceExhausted  true   false             true   true
	// Aborted            true   false             true   true
	// Internal           true   true              true   true
}

// otgrpc's IncludingSpans function got the parent span context; grpctrace's
// filter gets the RPC's context. A client finds the parent in it with
// opentracing.SpanFromContext; a server filter runs before grpctrace
// extracts anything, so one that needs more than WithParentRequired (here:
// only RPCs whose caller sampled its trace) extracts the span context itself.
func Example_filterByParent() {
	tracer := mocktracer.New()

	// Before: otgrpc.
	sampledOnly := otgrpc.IncludingSpans(func(parent opentracing.SpanContext, _ string, _, _ any) bool {
		sc, ok := parent.(mocktracer.MockSpanContext)
		return ok && sc.Sampled
	})
	_ = otgrpc.OpenTracingServerInterceptor(tracer, sampledOnly)
	_ = otgrpc.OpenTracingClientInterceptor(tracer, sampledOnly)

	// After: grpctrace.
	serverSampledOnly := grpctrace.WithFilter(func(ctx context.Context, _ string) bool {
		md, _ := metadata.FromIncomingContext(ctx)
		parent, err := tracer.Extract(opentracing.HTTPHeaders, grpctrace.MetadataCarrier(md))
		sc, ok := parent.(mocktracer.MockSpanContext)
		return err == nil && ok && sc.Sampled
	})
	clientSampledOnly := grpctrace.WithFilter(func(ctx context.Context, _ string) bool {
		parent := opentracing.SpanFromContext(ctx)
		if parent == nil {
			return false
		}
		sc, ok := parent.Context().(mocktracer.MockSpanContext)
		return ok && sc.Sampled
	})
	client, stop := exampleServe(
		[]grpc.ServerOption{grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(grpctrace.WithTracer(tracer), serverSampledOnly))},
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(grpctrace.WithTracer(tracer), clientSampledOnly)))
	defer stop()

	for _, sampled := range []bool{true, false} {
		tracer.Reset()
		parent := tracer.StartSpan("checkout")
		if !sampled {
			ext.SamplingPriority.Set(parent, 0)
		}
		_, err := client.Unary(opentracing.ContextWithSpan(context.Background(), parent), &testpb.Request{})
		parent.Finish()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("caller sampled=%v: %d spans\n", sampled, len(tracer.FinishedSpans()))
	}
	// Output:
	// caller sampled=true: 3 spans
	// caller sampled=false: 1 spans
}

// Keeping otgrpc's response_code and response_class tags on error spans,
// for dashboards that read them, while they move to rpc.grpc.status_code.
func Example_keepOtgrpcResponseTags() {
	tracer := mocktracer.New()
	responseTags := grpctrace.WithSpanDecorator(func(ctx context.Context, rpc grpctrace.RPCInfo) {
		span := opentracing.SpanFromContext(ctx)
		if rpc.Err != nil { // otgrpc tags errors only
			otgrpc.SetSpanTags(span, rpc.Err, rpc.Client)
		}
	})
	client, stop := exampleServe(
		[]grpc.ServerOption{grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(grpctrace.WithTracer(tracer), responseTags))},
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(grpctrace.WithTracer(tracer), responseTags)))
	_, _ = client.Unary(context.Background(), &testpb.Request{FailCode: int32(codes.NotFound), FailMessage: "no such record"})
	stop()
	for _, s := range tracer.FinishedSpans() {
		fmt.Println(s.Tag("span.kind"), exampleTags(s, "error", "response_class", "response_code", "rpc.grpc.status_code"))
	}
	// Output:
	// server response_class=4xx response_code=NotFound rpc.grpc.status_code=5
	// client error=true response_class=4xx response_code=NotFound rpc.grpc.status_code=5
}

// Replacing go-grpc-middleware v1's tracing/opentracing: the same tracer,
// filter, operation names, request handler and grpc_ctxtags on the span.
func Example_migrateFromMiddleware() {
	tracer := mocktracer.New()
	var notHealth grpc_opentracing.FilterFunc = func(_ context.Context, fullMethod string) bool {
		return !strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/")
	}
	opName := func(fullMethod string) string { return "grpc " + fullMethod }
	requestTags := func(span opentracing.Span, req any) {
		if r, ok := req.(*testpb.Request); ok {
			span.SetTag("request.value", r.GetValue())
		}
	}
	// Stands for application code that adds grpc_ctxtags, for logging
	// middlewares and, with middleware, for the server span.
	setTenant := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		grpc_ctxtags.Extract(ctx).Set("tenant", "acme")
		return handler(ctx, req)
	}

	// Before: middleware. WithOpName renames server spans only.
	mw := []grpc_opentracing.Option{
		grpc_opentracing.WithTracer(tracer),
		grpc_opentracing.WithFilterFunc(notHealth),
		grpc_opentracing.WithOpName(opName),
		grpc_opentracing.WithUnaryRequestHandlerFunc(requestTags),
	}
	beforeServer := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(grpc_ctxtags.UnaryServerInterceptor(), grpc_opentracing.UnaryServerInterceptor(mw...), setTenant),
		grpc.ChainStreamInterceptor(grpc_ctxtags.StreamServerInterceptor(), grpc_opentracing.StreamServerInterceptor(mw...)),
	}
	beforeClient := []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(grpc_opentracing.UnaryClientInterceptor(mw...)),
		grpc.WithChainStreamInterceptor(grpc_opentracing.StreamClientInterceptor(mw...)),
	}

	// After: grpctrace. A decorator sees the unary request at the span's
	// end; another copies grpc_ctxtags to the server span, as middleware
	// did, so grpc_ctxtags' interceptor goes before grpctrace.
	requestDecorator := grpctrace.WithSpanDecorator(func(ctx context.Context, rpc grpctrace.RPCInfo) {
		span := opentracing.SpanFromContext(ctx)
		if rpc.Request != nil {
			requestTags(span, rpc.Request)
		}
	})
	ctxTagsDecorator := grpctrace.WithSpanDecorator(func(ctx context.Context, _ grpctrace.RPCInfo) {
		span := opentracing.SpanFromContext(ctx)
		for k, v := range grpc_ctxtags.Extract(ctx).Values() {
			if err, ok := v.(error); ok {
				span.LogKV(k, err.Error())
			} else {
				span.SetTag(k, v)
			}
		}
	})
	// middleware marks every failed server span as an error.
	everyCodeAnError := grpctrace.WithErrorClassifier(func(c codes.Code) bool { return c != codes.OK })
	serverOpts := []grpctrace.Option{
		grpctrace.WithTracer(tracer),
		grpctrace.WithFilter(grpctrace.Filter(notHealth)),
		grpctrace.WithOperationName(opName),
		requestDecorator,
		ctxTagsDecorator,
		everyCodeAnError,
	}
	clientOpts := []grpctrace.Option{
		grpctrace.WithTracer(tracer),
		grpctrace.WithFilter(grpctrace.Filter(notHealth)),
		requestDecorator,
	}
	afterServer := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(grpc_ctxtags.UnaryServerInterceptor(), grpctrace.UnaryServerInterceptor(serverOpts...), setTenant),
		grpc.ChainStreamInterceptor(grpc_ctxtags.StreamServerInterceptor(), grpctrace.StreamServerInterceptor(serverOpts...)),
	}
	afterClient := []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(clientOpts...)),
		grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(clientOpts...)),
	}

	for _, lib := range []struct {
		name   string
		server []grpc.ServerOption
		client []grpc.DialOption
	}{{"middleware", beforeServer, beforeClient}, {"grpctrace", afterServer, afterClient}} {
		tracer.Reset()
		client, stop := exampleServe(lib.server, lib.client...)
		_, err := client.Unary(context.Background(), &testpb.Request{Value: "hello"})
		stop()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(lib.name + ":")
		for _, s := range tracer.FinishedSpans() {
			fmt.Printf("  %s (%v) %s\n", s.OperationName, s.Tag("span.kind"),
				exampleTags(s, "peer.address", "request.value", "tenant", "trace.sampled"))
		}
	}
	// Output:
	// middleware:
	//   grpc /grpctrace.testpb.TestService/Unary (server) peer.address=bufconn request.value=hello tenant=acme trace.sampled=true
	//   /grpctrace.testpb.TestService/Unary (client) request.value=hello
	// grpctrace:
	//   grpc /grpctrace.testpb.TestService/Unary (server) peer.address=bufconn request.value=hello tenant=acme
	//   /grpctrace.testpb.TestService/Unary (client) peer.address=bufnet request.value=hello
}

type exampleClientTagsKey struct{}

// Replacing middleware's ClientAddContextTags: the caller puts the tags in
// the call's context under a key of its own, and a client decorator, which
// gets a context derived from the caller's, adds them to the client span.
func Example_clientContextTags() {
	tracer := mocktracer.New()

	// Before: middleware.
	beforeCtx := grpc_opentracing.ClientAddContextTags(context.Background(), opentracing.Tags{"tenant": "acme"})
	before := grpc.WithChainUnaryInterceptor(grpc_opentracing.UnaryClientInterceptor(grpc_opentracing.WithTracer(tracer)))

	// After: grpctrace.
	afterCtx := context.WithValue(context.Background(), exampleClientTagsKey{}, opentracing.Tags{"tenant": "acme"})
	after := grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(
		grpctrace.WithTracer(tracer),
		grpctrace.WithSpanDecorator(func(ctx context.Context, _ grpctrace.RPCInfo) {
			span := opentracing.SpanFromContext(ctx)
			if tags, ok := ctx.Value(exampleClientTagsKey{}).(opentracing.Tags); ok {
				for k, v := range tags {
					span.SetTag(k, v)
				}
			}
		})))

	for _, c := range []struct {
		name string
		ctx  context.Context
		dial grpc.DialOption
	}{{"middleware", beforeCtx, before}, {"grpctrace", afterCtx, after}} {
		tracer.Reset()
		client, stop := exampleServe(nil, c.dial)
		_, err := client.Unary(c.ctx, &testpb.Request{})
		stop()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(c.name, exampleTags(tracer.FinishedSpans()[0], "span.kind", "tenant"))
	}
	// Output:
	// middleware span.kind=client tenant=acme
	// grpctrace span.kind=client tenant=acme
}

// Replacing middleware's trace ids in grpc_ctxtags (WithTraceHeaderName,
// TagTraceId, TagSpanId), which logging middlewares such as grpc_zap turn
// into log fields: an interceptor after grpctrace's reads the server span's
// ids with grpctrace.TraceIDs, whatever the tracer, and sets the same tags.
// A go-grpc-middleware v2 logging interceptor needs no such step: it takes
// grpctrace.LogFields as its WithFieldsFromContext function.
func Example_logCorrelation() {
	tracer, closer := jaeger.NewTracer("example", jaeger.NewConstSampler(true), jaeger.NewNullReporter())
	defer closer.Close()

	traceIDsToCtxTags := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if traceID, spanID := grpctrace.TraceIDs(ctx); traceID != "" {
			grpc_ctxtags.Extract(ctx).
				Set(grpc_opentracing.TagTraceId, traceID).
				Set(grpc_opentracing.TagSpanId, spanID)
		}
		return handler(ctx, req)
	}
	// Stands for a logging middleware: v1's logs the request's ctxtags,
	// v2's the fields LogFields returns. It also keeps the server span's
	// context, to compare the logged ids with the tracer's own.
	var (
		tags   map[string]any
		fields []any
		server jaeger.SpanContext
	)
	logger := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		tags = grpc_ctxtags.Extract(ctx).Values()
		fields = grpctrace.LogFields(ctx)
		server, _ = opentracing.SpanFromContext(ctx).Context().(jaeger.SpanContext)
		return resp, err
	}

	client, stop := exampleServe(
		[]grpc.ServerOption{grpc.ChainUnaryInterceptor(
			grpc_ctxtags.UnaryServerInterceptor(),
			grpctrace.UnaryServerInterceptor(grpctrace.WithTracer(tracer)),
			traceIDsToCtxTags,
			logger,
		)},
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(grpctrace.WithTracer(tracer))))
	defer stop()

	parent := tracer.StartSpan("checkout")
	_, err := client.Unary(opentracing.ContextWithSpan(context.Background(), parent), &testpb.Request{})
	parent.Finish()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("trace id logged:", tags[grpc_opentracing.TagTraceId] == parent.Context().(jaeger.SpanContext).TraceID().String())
	fmt.Println("span id logged:", tags[grpc_opentracing.TagSpanId] == server.SpanID().String())
	fmt.Println("LogFields:", fields[0], fields[1] == tags[grpc_opentracing.TagTraceId], fields[2], fields[3] == tags[grpc_opentracing.TagSpanId])
	// Output:
	// trace id logged: true
	// span id logged: true
	// LogFields: trace_id true span_id true
}

// Handler code that uses its span unchecked works under the NoopTracer,
// with grpctrace as with otgrpc and middleware: the handler's context
// carries a no-op span. An RPC a filter leaves untraced has no span at all,
// with any of them, so the code must check.
func Example_spanFromContextGuard() {
	var sawSpan bool
	// The application's own code, written to work in every case.
	handlerCode := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		span := opentracing.SpanFromContext(ctx)
		sawSpan = span != nil
		if span != nil {
			span.SetTag("user", "ada")
		}
		return handler(ctx, req)
	}
	// A filter that leaves every RPC untraced, as one leaves health checks.
	traceNothing := func(context.Context, string) bool { return false }

	libs := []struct {
		name   string
		server func(t opentracing.Tracer, filtered bool) grpc.UnaryServerInterceptor
	}{
		{"otgrpc", func(t opentracing.Tracer, filtered bool) grpc.UnaryServerInterceptor {
			if filtered {
				return otgrpc.OpenTracingServerInterceptor(t, otgrpc.IncludingSpans(
					func(opentracing.SpanContext, string, any, any) bool { return false }))
			}
			return otgrpc.OpenTracingServerInterceptor(t)
		}},
		{"middleware", func(t opentracing.Tracer, filtered bool) grpc.UnaryServerInterceptor {
			if filtered {
				return grpc_opentracing.UnaryServerInterceptor(grpc_opentracing.WithTracer(t), grpc_opentracing.WithFilterFunc(traceNothing))
			}
			return grpc_opentracing.UnaryServerInterceptor(grpc_opentracing.WithTracer(t))
		}},
		{"grpctrace", func(t opentracing.Tracer, filtered bool) grpc.UnaryServerInterceptor {
			if filtered {
				return grpctrace.UnaryServerInterceptor(grpctrace.WithTracer(t), grpctrace.WithFilter(traceNothing))
			}
			return grpctrace.UnaryServerInterceptor(grpctrace.WithTracer(t))
		}},
	}
	cases := []struct {
		name     string
		tracer   opentracing.Tracer
		filtered bool
	}{{"NoopTracer", opentracing.NoopTracer{}, false}, {"filtered out", mocktracer.New(), true}, {"mocktracer", mocktracer.New(), false}}

	for _, lib := range libs {
		for _, c := range cases {
			client, stop := exampleServe([]grpc.ServerOption{grpc.ChainUnaryInterceptor(lib.server(c.tracer, c.filtered), handlerCode)})
			_, err := client.Unary(context.Background(), &testpb.Request{})
			stop()
			if err != nil {
				log.Fatal(err)
			}
			fmt.Printf("%s, %s: span in the handler's context: %v\n", lib.name, c.name, sawSpan)
		}
	}
	// Output:
	// otgrpc, NoopTracer: span in the handler's context: true
	// otgrpc, filtered out: span in the handler's context: false
	// otgrpc, mocktracer: span in the handler's context: true
	// middleware, NoopTracer: span in the handler's context: true
	// middleware, filtered out: span in the handler's context: false
	// middleware, mocktracer: span in the handler's context: true
	// grpctrace, NoopTracer: span in the handler's context: true
	// grpctrace, filtered out: span in the handler's context: false
	// grpctrace, mocktracer: span in the handler's context: true
}

// exampleServe serves testpb's service on an in-memory listener with the
// server options, and returns a client of it dialled with the dial options,
// and the function that closes both and waits for the server to be done.
func exampleServe(serverOpts []grpc.ServerOption, dialOpts ...grpc.DialOption) (testpb.TestServiceClient, func()) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(serverOpts...)
	testpb.RegisterTestServiceServer(srv, testpb.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet", append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, dialOpts...)...)
	if err != nil {
		log.Fatal(err)
	}
	return testpb.NewTestServiceClient(conn), func() {
		_ = conn.Close()
		srv.Stop()
		<-served
	}
}

// examplePrintTree prints the finished spans as a tree, each with its tags
// and, per log record, its field keys (and the event's name): payloads are
// printed in text formats that are not stable from run to run.
func examplePrintTree(tracer *mocktracer.MockTracer) {
	spans := tracer.FinishedSpans()
	children := map[int][]*mocktracer.MockSpan{}
	for _, s := range spans {
		children[s.ParentID] = append(children[s.ParentID], s)
	}
	var print func(parentID int, indent string)
	print = func(parentID int, indent string) {
		for _, s := range children[parentID] {
			fmt.Println(indent + s.OperationName)
			if tags := exampleTags(s); tags != "" {
				fmt.Println(indent + "  tags: " + tags)
			}
			if logs := s.Logs(); len(logs) > 0 {
				var records []string
				for _, r := range logs {
					var keys []string
					for _, f := range r.Fields {
						if f.Key == "event" || f.Key == "message.type" {
							keys = append(keys, f.Key+"="+f.ValueString)
						} else {
							keys = append(keys, f.Key)
						}
					}
					records = append(records, "["+strings.Join(keys, " ")+"]")
				}
				fmt.Println(indent + "  logs: " + strings.Join(records, " "))
			}
			print(s.SpanContext.SpanID, indent+"  ")
		}
	}
	print(0, "")
}

// exampleTags formats a span's tags named in keys (all of them when keys
// is empty) as sorted key=value pairs; tags the span lacks are left out.
func exampleTags(s *mocktracer.MockSpan, keys ...string) string {
	tags := s.Tags()
	if len(keys) == 0 {
		for k := range tags {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		if v, ok := tags[k]; ok {
			out = append(out, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return strings.Join(out, " ")
}

// exampleErrorFlags reports the error tag of the client span and of the
// server span of the one RPC the tracer recorded, as "client server".
func exampleErrorFlags(tracer *mocktracer.MockTracer) string {
	flags := map[any]bool{}
	for _, s := range tracer.FinishedSpans() {
		flags[fmt.Sprint(s.Tag("span.kind"))] = s.Tag("error") == true
	}
	return fmt.Sprintf("%-6v %v", flags["client"], flags["server"])
}

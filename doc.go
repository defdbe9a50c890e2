// Package grpctrace traces gRPC clients and servers through the OpenTracing
// API, or natively through OpenTelemetry's (WithTracerProvider): any
// OpenTracing tracer (Jaeger, Zipkin, OpenTelemetry through its OpenTracing
// bridge, ...) or OpenTelemetry tracer provider records one client span and
// one server span per RPC, the server's a child of the client's.
//
// It provides client and server interceptors for unary and streaming RPCs,
// which can be used directly or in go-grpc-middleware chains; stats
// handlers (NewServerHandler, NewClientHandler) that trace the same way from
// gRPC's own view of each RPC, retry attempts included; a MetadataCarrier
// that carries span contexts in gRPC metadata; and a WrappedServerStream
// that replaces a server stream's context.
//
// # Usage
//
// Install the interceptors (or the stats handlers) on both sides. Each
// traced RPC gets a client span and a server span, and the handler's context
// carries the server span. A handler that uses its span checks for nil,
// because an RPC that the filter (WithFilter) leaves untraced has no span.
//
// By default spans go to the OpenTracing API, through the global tracer
// (opentracing.GlobalTracer) unless WithTracer names one. With
// WithTracerProvider, they go to OpenTelemetry instead, and WithPropagators
// sets how span contexts and baggage travel; ExampleWithTracerProvider shows
// this. Here is the program of Example_clientAndServer, which go test runs.
// It uses an in-memory connection, the OpenTracing mock tracer and this
// package's testpb service:
//
//	type greeter struct{ *testpb.Server }
//
//	func (g greeter) Unary(ctx context.Context, req *testpb.Request) (*testpb.Response, error) {
//		if span := opentracing.SpanFromContext(ctx); span != nil {
//			span.SetTag("greeting.name", req.GetValue())
//		}
//		return g.Server.Unary(ctx, req)
//	}
//
//	func Example_clientAndServer() {
//		tracer := mocktracer.New()
//
//		lis := bufconn.Listen(1 << 20)
//		srv := grpc.NewServer(
//			grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(grpctrace.WithTracer(tracer))),
//			grpc.ChainStreamInterceptor(grpctrace.StreamServerInterceptor(grpctrace.WithTracer(tracer))),
//		)
//		testpb.RegisterTestServiceServer(srv, greeter{testpb.NewServer()})
//		go srv.Serve(lis)
//		defer srv.Stop()
//
//		conn, err := grpc.NewClient("passthrough:///bufnet",
//			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
//			grpc.WithTransportCredentials(insecure.NewCredentials()),
//			grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(grpctrace.WithTracer(tracer))),
//			grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(grpctrace.WithTracer(tracer))),
//		)
//		if err != nil {
//			log.Fatal(err)
//		}
//		defer conn.Close()
//
//		parent := tracer.StartSpan("checkout")
//		ctx := opentracing.ContextWithSpan(context.Background(), parent)
//		reply, err := testpb.NewTestServiceClient(conn).Unary(ctx, &testpb.Request{Value: "world"})
//		if err != nil {
//			log.Fatal(err)
//		}
//		parent.Finish()
//		fmt.Println("reply:", reply.GetValue())
//
//		// Print the trace as a tree: the server span is the client span's child.
//		spans := tracer.FinishedSpans()
//		children := map[int][]*mocktracer.MockSpan{}
//		for _, s := range spans {
//			children[s.ParentID] = append(children[s.ParentID], s)
//		}
//		var print func(parentID, depth int)
//		print = func(parentID, depth int) {
//			for _, s := range children[parentID] {
//				kind := s.Tag("span.kind")
//				if kind == nil {
//					kind = "-"
//				}
//				fmt.Printf("%s%s kind=%v status=%v", strings.Repeat("  ", depth), s.OperationName, kind, s.Tag("rpc.grpc.status_code"))
//				if name := s.Tag("greeting.name"); name != nil {
//					fmt.Printf(" greeting.name=%v", name)
//				}
//				fmt.Println()
//				print(s.SpanContext.SpanID, depth+1)
//			}
//		}
//		print(0, 0)
//		// Output:
//		// reply: world
//		// checkout kind=- status=<nil>
//		//   /grpctrace.testpb.TestService/Unary kind=client status=0
//		//     /grpctrace.testpb.TestService/Unary kind=server status=0 greeting.name=world
//	}
//
// The same with OpenTelemetry, as a fragment: tp is the program's
// trace.TracerProvider (an SDK provider, or otel.GetTracerProvider()), and
// creds its transport credentials dial option:
//
//	opts := []grpctrace.Option{
//		grpctrace.WithTracerProvider(tp),
//		grpctrace.WithPropagators(propagation.TraceContext{}),
//	}
//	srv := grpc.NewServer(grpctrace.ServerInterceptors(opts...)...)
//	conn, err := grpc.NewClient(target, append(grpctrace.DialOptions(opts...), creds)...)
//
// In an OpenTelemetry handler the span is trace.SpanFromContext(ctx), which
// is never nil: a non-recording span when the context carries none.
//
// # Spans
//
// OpenTracing spans are named after the full method,
// "/package.Service/Method" (see WithOperationName), and tagged:
//
//	component            gRPC
//	span.kind            client or server (given at start, with the ChildOf reference)
//	rpc.system           grpc
//	rpc.service          package.Service
//	rpc.method           Method
//	rpc.grpc.status_code the numeric status code, on every span, OK included
//	peer.address         the other side: the client's address on a server, the
//	                     endpoint of the dialled target on a client; with
//	                     peer.ipv4, peer.ipv6 or peer.hostname, and peer.port
//	error                true when the status is an error (see WithErrorClassifier)
//
// An error also logs the fields event=error, error.kind (the code's name) and
// message (the status message). Problems of the tracing itself, such as a
// span context that cannot be extracted, are logged on the span and never
// change the RPC's outcome.
//
// OpenTelemetry spans (WithTracerProvider) follow OpenTelemetry's RPC
// conventions instead: they are named "package.Service/Method", have the
// client or server span kind, and carry the conventions' attributes.
//
// # Streams
//
// A server span finishes when the handler returns, or panics. A client span
// finishes exactly once, when the RPC really ends: see StreamClientInterceptor
// for the ways that can happen. Errors returned to callers are exactly those
// gRPC returned, io.EOF included.
//
// # Cost
//
// The decision to trace is made once per RPC. With an opentracing.NoopTracer
// (the global tracer's default) grpctrace records and sends nothing (server
// handlers still find the NoopTracer's span in their context), and with
// message events and payload logging off it does no work per stream message.
package grpctrace

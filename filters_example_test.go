package grpctrace_test

import (
	"context"
	"fmt"
	"log"

	"github.com/opentracing/opentracing-go/mocktracer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// Trace everything except health checks and server reflection. HealthCheck
// and Reflection say what an RPC is, as otelgrpc's filters do; Not turns
// them into "trace unless".
func ExampleHealthCheck() {
	filter := grpctrace.Not(grpctrace.Any(grpctrace.HealthCheck(), grpctrace.Reflection()))
	for _, m := range []string{
		"/grpc.health.v1.Health/Check",
		"/grpc.health.v1.Health/Watch",
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
		"/shop.Cart/Checkout",
	} {
		fmt.Println(filter(context.Background(), m), m)
	}
	// Output:
	// false /grpc.health.v1.Health/Check
	// false /grpc.health.v1.Health/Watch
	// false /grpc.reflection.v1.ServerReflection/ServerReflectionInfo
	// true /shop.Cart/Checkout
}

// Trace one service, except for one of its methods.
func ExampleAll() {
	filter := grpctrace.All(
		grpctrace.ServiceName("shop.Cart"),
		grpctrace.Not(grpctrace.MethodName("/shop.Cart/Ping")),
	)
	for _, m := range []string{
		"/shop.Cart/Checkout",
		"/shop.Cart/Ping",
		"/shop.Billing/Charge",
	} {
		fmt.Println(filter(context.Background(), m), m)
	}
	// Output:
	// true /shop.Cart/Checkout
	// false /shop.Cart/Ping
	// false /shop.Billing/Charge
}

// Trace the RPCs of either of two services, and one method of a third.
func ExampleAny() {
	filter := grpctrace.Any(
		grpctrace.ServiceName("shop.Cart", "shop.Billing"),
		grpctrace.MethodName("/shop.Admin/Refund"),
	)
	for _, m := range []string{
		"/shop.Cart/Checkout",
		"/shop.Billing/Charge",
		"/shop.Admin/Refund",
		"/shop.Admin/Audit",
	} {
		fmt.Println(filter(context.Background(), m), m)
	}
	// Output:
	// true /shop.Cart/Checkout
	// true /shop.Billing/Charge
	// true /shop.Admin/Refund
	// false /shop.Admin/Audit
}

// One list of options for both interceptors of a server, and for both of a
// client, so that the filter cannot be left off one of them: the health
// check, unary, and its streaming Watch run untraced on both sides.
func ExampleServerInterceptors() {
	tracer := mocktracer.New()
	opts := []grpctrace.Option{
		grpctrace.WithTracer(tracer),
		grpctrace.WithFilter(grpctrace.Not(grpctrace.HealthCheck())),
	}
	conn, stop := exampleConn(func(s *grpc.Server) { healthpb.RegisterHealthServer(s, health.NewServer()) },
		grpctrace.ServerInterceptors(opts...), grpctrace.DialOptions(opts...)...)
	defer stop()

	ctx := context.Background()
	hc := healthpb.NewHealthClient(conn)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		log.Fatal(err)
	}
	watch, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		log.Fatal(err)
	}
	stream, err := testpb.NewTestServiceClient(conn).ServerStream(ctx, &testpb.Request{Value: "v"})
	if err != nil {
		log.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			break
		}
	}
	for _, span := range tracer.FinishedSpans() {
		fmt.Println(span.Tag("span.kind"), span.OperationName)
	}
	// Unordered output:
	// server /grpctrace.testpb.TestService/ServerStream
	// client /grpctrace.testpb.TestService/ServerStream
}

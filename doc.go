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
// A server and a client, both traced with the tracer registered as the
// global tracer (see WithTracer to pass one explicitly):
//
//	package main
//
//	import (
//		"context"
//		"log"
//		"net"
//
//		"github.com/c2e00e20/grpctrace"
//		"github.com/opentracing/opentracing-go"
//		"google.golang.org/grpc"
//		"google.golang.org/grpc/credentials/insecure"
//		pb "google.golang.org/grpc/examples/helloworld/helloworld"
//	)
//
//	type greeter struct{ pb.UnimplementedGreeterServer }
//
//	func (greeter) SayHello(ctx context.Context, req *pb.HelloRequest) (*pb.HelloReply, error) {
//		// ctx carries the server span: child spans and baggage work as usual.
//		span := opentracing.SpanFromContext(ctx)
//		span.SetTag("name", req.GetName())
//		return &pb.HelloReply{Message: "Hello " + req.GetName()}, nil
//	}
//
//	func main() {
//		opentracing.SetGlobalTracer(newTracer()) // Jaeger, the OpenTelemetry bridge, ...
//
//		lis, err := net.Listen("tcp", "127.0.0.1:0")
//		if err != nil {
//			log.Fatal(err)
//		}
//		srv := grpc.NewServer(
//			grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor()),
//			grpc.ChainStreamInterceptor(grpctrace.StreamServerInterceptor()),
//		)
//		pb.RegisterGreeterServer(srv, greeter{})
//		go srv.Serve(lis)
//		defer srv.Stop()
//
//		conn, err := grpc.NewClient(lis.Addr().String(),
//			grpc.WithTransportCredentials(insecure.NewCredentials()),
//			grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor()),
//			grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor()),
//		)
//		if err != nil {
//			log.Fatal(err)
//		}
//		defer conn.Close()
//
//		span, ctx := opentracing.StartSpanFromContext(context.Background(), "greet")
//		defer span.Finish()
//		reply, err := pb.NewGreeterClient(conn).SayHello(ctx, &pb.HelloRequest{Name: "world"})
//		if err != nil {
//			log.Fatal(err)
//		}
//		log.Print(reply.GetMessage())
//	}
//
// Example_clientAndServer in the package's tests runs the same program over an
// in-memory connection with the OpenTracing mock tracer and prints the spans.
//
// # Spans
//
// Spans are named after the full method, "/package.Service/Method" (see
// WithOperationName), and tagged:
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
// (the global tracer's default) grpctrace does nothing at all, and with message
// events and payload logging off it does no work per stream message.
package grpctrace

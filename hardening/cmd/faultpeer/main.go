// Command faultpeer is the process the fault tests kill: a traced gRPC
// server or client of the test service (testpb) on 127.0.0.1, recording
// its finished spans to a file (internal/spanlog) that the test reads after
// the process died.
//
//	faultpeer -mode server -spans FILE [-listen 127.0.0.1:0]
//
// serves and prints "listening ADDR" once it accepts connections. Its spans
// carry what each handler returned (internal/probe).
//
//	faultpeer -mode client -spans FILE -target ADDR -shape server-stream|bidi
//
// makes one unary call that completes, then opens a stream of the given
// shape, receives its first response (bidi: sends one request first), prints
// "mid-stream" and waits, the stream open and the server's
// handler running, to be killed.
//
// Either mode exits by itself after -timeout, so that no process outlives
// a test that failed to kill it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/opentracing/opentracing-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/hardening/internal/probe"
	"github.com/c2e00e20/grpctrace/hardening/internal/spanlog"
	"github.com/c2e00e20/grpctrace/testpb"
)

func main() {
	mode := flag.String("mode", "", "server or client")
	spans := flag.String("spans", "", "file the finished spans are written to, one JSON line each")
	listen := flag.String("listen", "127.0.0.1:0", "server: address to listen on")
	target := flag.String("target", "", "client: server address")
	shape := flag.String("shape", "bidi", "client: server-stream or bidi")
	timeout := flag.Duration("timeout", 2*time.Minute, "exit after this long")
	flag.Parse()

	time.AfterFunc(*timeout, func() {
		fmt.Fprintln(os.Stderr, "faultpeer: timed out, never killed")
		os.Exit(3)
	})
	file, err := spanlog.Create(*spans)
	if err != nil {
		fail(err)
	}
	tracer, _ := spanlog.Tracer(file, file)
	switch *mode {
	case "server":
		err = serve(*listen, tracer)
	case "client":
		err = call(*target, *shape, tracer)
	default:
		err = errors.New("-mode must be server or client")
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "faultpeer:", err)
	os.Exit(1)
}

func serve(addr string, tracer opentracing.Tracer) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(grpctrace.WithTracer(tracer)), probe.Unary),
		grpc.ChainStreamInterceptor(grpctrace.StreamServerInterceptor(grpctrace.WithTracer(tracer)), probe.Stream),
	)
	testpb.RegisterTestServiceServer(srv, testpb.NewServer())
	fmt.Printf("listening %s\n", lis.Addr())
	return srv.Serve(lis)
}

func call(target, shape string, tracer opentracing.Tracer) error {
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(grpctrace.WithTracer(tracer))),
		grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(grpctrace.WithTracer(tracer))),
	)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)
	ctx := context.Background()
	if _, err := client.Unary(ctx, &testpb.Request{Value: "before the fault"}); err != nil {
		return fmt.Errorf("unary: %v", err)
	}
	switch shape {
	case "server-stream":
		// More responses than flow control lets through unread: the
		// server's handler stays blocked in Send.
		s, err := client.ServerStream(ctx, &testpb.Request{Value: "mid", ResponseCount: 1 << 30})
		if err != nil {
			return err
		}
		if _, err := s.Recv(); err != nil {
			return fmt.Errorf("server stream: %v", err)
		}
	case "bidi":
		s, err := client.Bidi(ctx)
		if err != nil {
			return err
		}
		if err := s.Send(&testpb.Request{Value: "first"}); err != nil {
			return fmt.Errorf("bidi send: %v", err)
		}
		if _, err := s.Recv(); err != nil {
			return fmt.Errorf("bidi recv: %v", err)
		}
		// The handler now waits in Recv for the next request.
	default:
		return fmt.Errorf("unknown shape %q", shape)
	}
	fmt.Println("mid-stream")
	select {} // until killed, or -timeout
}

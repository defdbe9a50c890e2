package grpctrace_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/opentracing/opentracing-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// eventsOf returns the values of the "event" fields a span logged.
func eventsOf(t *testing.T, r *recorder, name, kind string) []string {
	t.Helper()
	var events []string
	for _, l := range r.span(t, name, kind).Logs() {
		for _, f := range l.Fields {
			if f.Key == "event" {
				events = append(events, f.ValueString)
			}
		}
	}
	return events
}

func has(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// The client's deadline passes while the server stats handler is still
// tagging the RPC (a filter that takes its time): gRPC still begins the RPC
// and runs the handler, so the span must stay open while the handler runs,
// and end with the status gRPC ends the RPC with, never as an RPC gRPC did
// not serve. The handler checks that no span finishes while it waits; that
// absence is bounded (200 ms), since it cannot be signalled.
func TestServerHandlerContextDoneBeforeBegin(t *testing.T) {
	slow := grpctrace.WithFilter(func(ctx context.Context, _ string) bool {
		<-ctx.Done() // the client's deadline passes while gRPC waits here
		return true
	})
	var e *env
	finishedEarly := make(chan bool, 1)
	handler := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		finishedEarly <- e.tracer.waitFinished(1, 200*time.Millisecond)
		return h(srv, ss)
	}
	e = newEnv(t, setup{
		instrument:   viaHandlers,
		untracedSide: "client",
		serverOpts:   []grpctrace.Option{slow},
		innerStream:  []grpc.StreamServerInterceptor{handler},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := recvAll[testpb.Response](mustServerStream(t, e.client, ctx)); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("client got %v, want DeadlineExceeded", err)
	}
	select {
	case early := <-finishedEarly:
		if early {
			t.Error("the server span finished before the handler returned")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gRPC never ran the handler")
	}
	if !e.tracer.waitFinished(1, 10*time.Second) {
		t.Fatal("no server span finished")
	}
	e.tracer.waitSettled(t)
	code := e.tracer.span(t, "/"+service+"/ServerStream", "server").Tag("rpc.grpc.status_code")
	if code != uint32(codes.DeadlineExceeded) && code != uint32(codes.Canceled) {
		t.Errorf("server span status %v, want DeadlineExceeded or Canceled, as gRPC ended the RPC", code)
	}
}

// Two grpctrace stats handlers on one server and two on one connection
// (two tracers during a migration, say): each must trace every RPC whole,
// as if it were alone.
func TestTwoHandlersOnOneServerAndConnection(t *testing.T) {
	first, second := newRecorder(), newRecorder()
	srv := serveBuf(t, testpb.NewServer(),
		grpc.StatsHandler(grpctrace.NewServerHandler(grpctrace.WithTracer(first))),
		grpc.StatsHandler(grpctrace.NewServerHandler(grpctrace.WithTracer(second))))
	conn := srv.dial(t,
		grpc.WithStatsHandler(grpctrace.NewClientHandler(grpctrace.WithTracer(first))),
		grpc.WithStatsHandler(grpctrace.NewClientHandler(grpctrace.WithTracer(second))))
	c := testpb.NewTestServiceClient(conn)
	if _, err := c.Unary(context.Background(), &testpb.Request{Value: "x"}); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*recorder{"first": first, "second": second} {
		r.waitSettled(t)
		for _, kind := range []string{"client", "server"} {
			if code := r.span(t, "/"+service+"/Unary", kind).Tag("rpc.grpc.status_code"); code != uint32(codes.OK) {
				t.Errorf("%s handler's %s span: status %v, want OK", name, kind, code)
			}
		}
	}
}

// A public endpoint logs the identity of the trace it refuses to join by
// injecting it through the tracer: a tracer whose Inject panics must leave
// a log, the span must finish, and the RPC must go on, through the
// interceptors and through the stats handler (where a panic would crash the
// server).
func TestPublicEndpointInjectPanic(t *testing.T) {
	for _, instrument := range []string{viaInterceptors, viaHandlers} {
		t.Run(instrument, func(t *testing.T) {
			e := newEnv(t, setup{
				instrument:   instrument,
				serverOpts:   []grpctrace.Option{grpctrace.WithPublicEndpoint()},
				serverTracer: func(r *recorder) opentracing.Tracer { return panickingInject{r} },
			})
			ctx, root := e.rootContext(context.Background())
			if _, err := e.client.Unary(ctx, &testpb.Request{}); err != nil {
				t.Fatal(err)
			}
			root.Finish()
			e.tracer.waitSettled(t)
			if !has(eventsOf(t, e.tracer, "/"+service+"/Unary", "server"), "grpctrace recovered a panic") {
				t.Error("the tracer's panic is not logged on the server span")
			}
		})
	}
}

// A payload redactor that panics under the server stats handler runs on
// gRPC's own goroutine, where no recovery interceptor can catch it and a
// panic would crash the server: the panic is logged on the span, and the
// RPC and its span go on.
func TestServerHandlerRedactorPanic(t *testing.T) {
	e := newEnv(t, setup{
		instrument:   viaHandlers,
		untracedSide: "client",
		serverOpts:   []grpctrace.Option{grpctrace.WithPayloadLogging(), panickingRedactor(true)},
	})
	if _, err := e.client.Unary(context.Background(), &testpb.Request{Value: "x"}); err != nil {
		t.Fatal(err)
	}
	e.tracer.waitSettled(t)
	span := e.tracer.span(t, "/"+service+"/Unary", "server")
	if code := span.Tag("rpc.grpc.status_code"); code != uint32(codes.OK) {
		t.Errorf("server span status %v, want OK", code)
	}
	if !has(eventsOf(t, e.tracer, "/"+service+"/Unary", "server"), "grpctrace recovered a panic") {
		t.Error("the redactor's panic is not logged on the server span")
	}
}

// A payload redactor that panics in a client stream's RecvMsg is the
// caller's own code: the panic reaches the caller, and the span finishes
// with Internal.
func TestClientStreamRedactorPanic(t *testing.T) {
	e := newEnv(t, setup{
		untracedSide: "server",
		clientOpts:   []grpctrace.Option{grpctrace.WithPayloadLogging(), panickingRedactor(false)},
	})
	stream, err := e.client.ServerStream(context.Background(), &testpb.Request{ResponseCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	var p any
	func() {
		defer func() { p = recover() }()
		for {
			if _, err := stream.Recv(); err == io.EOF {
				return
			}
		}
	}()
	if p != redactorPanic {
		t.Fatalf("caller recovered %v, want the redactor's panic", p)
	}
	e.tracer.waitSettled(t)
	if code := e.tracer.span(t, "/"+service+"/ServerStream", "client").Tag("rpc.grpc.status_code"); code != uint32(codes.Internal) {
		t.Errorf("client span status %v, want Internal", code)
	}
}

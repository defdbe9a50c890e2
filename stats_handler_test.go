package grpctrace_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/opentracing/opentracing-go/ext"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// TestRetryAttempts has gRPC retry a call whose first attempt the server
// refuses with Unavailable: the interceptor's call span has two attempt
// spans, the second numbered and tagged as a retry, each with its server
// span.
func TestRetryAttempts(t *testing.T) {
	var calls atomic.Int32
	failFirst := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if calls.Add(1) == 1 {
			return nil, status.Error(codes.Unavailable, "try again")
		}
		return h(ctx, req)
	}
	const retryPolicy = `{"methodConfig": [{
		"name": [{"service": "grpctrace.testpb.TestService"}],
		"retryPolicy": {
			"maxAttempts": 2, "initialBackoff": "0.001s", "maxBackoff": "0.001s",
			"backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]
		}
	}]}`
	e := newEnv(t, setup{
		instrument: viaBoth,
		outerUnary: []grpc.UnaryServerInterceptor{failFirst},
		dialOpts:   []grpc.DialOption{grpc.WithDefaultServiceConfig(retryPolicy)},
	})
	ctx, rootSpan := e.rootContext(context.Background())
	if _, err := e.client.Unary(ctx, &testpb.Request{}); err != nil {
		t.Fatalf("retried call failed: %v", err)
	}
	rootSpan.Finish()
	e.tracer.waitSettled(t)

	attempt := func(n int32, code codes.Code, msg string) node {
		a := clientSpan("Unary", code, msg)
		a.Tags["peer.address"] = "bufconn"
		a.Tags["grpc.attempt"] = n
		if n > 1 {
			a.Tags["grpc.retry"] = true
		}
		return a
	}
	want := root(clientSpan("Unary", codes.OK, "").with(
		attempt(1, codes.Unavailable, "try again").with(serverSpan("Unary", codes.Unavailable, "try again")),
		attempt(2, codes.OK, "").with(serverSpan("Unary", codes.OK, "")),
	))
	diffTrees(t, want, e.tracer.tree())
}

// TestUnknownMethodLeaksNothing calls a method the server does not have:
// gRPC tags the RPC on the server and never begins it. The server span,
// started as gRPC tags the RPC, must still end, when gRPC closes the
// stream, with the status the client got (waitSettled checks that every
// started span finished; goleak in TestMain, that no goroutine is left).
func TestUnknownMethodLeaksNothing(t *testing.T) {
	e := newEnv(t, setup{instrument: viaHandlers})
	err := e.conn.Invoke(context.Background(), "/"+service+"/Missing", &testpb.Request{}, new(testpb.Response))
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("got %v, want Unimplemented", err)
	}
	e.tracer.waitSettled(t)
	got := e.tracer.tree()
	if len(got) != 1 || got[0].Tags["span.kind"] != ext.SpanKindRPCClientEnum || len(got[0].Children) != 1 {
		t.Fatalf("want the client attempt span and its server span, got:\n%v", got)
	}
	server := got[0].Children[0]
	if server.Tags["span.kind"] != ext.SpanKindRPCServerEnum || server.Tags["rpc.grpc.status_code"] != uint32(codes.Unimplemented) {
		t.Errorf("server span %v, want a server span ended Unimplemented", server)
	}
}

// TestHandlerMessageEvents checks the events the stats handlers log from
// gRPC's own measurements: sizes before and after compression and on the
// wire, and the arrival of the response's header and trailer.
func TestHandlerMessageEvents(t *testing.T) {
	events := grpctrace.WithMessageEvents()
	e := newEnv(t, setup{
		instrument: viaHandlers,
		serverOpts: []grpctrace.Option{events},
		clientOpts: []grpctrace.Option{events},
	})
	req := &testpb.Request{Value: "sized"}
	resp, err := e.client.Unary(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	e.tracer.waitSettled(t)
	msg := func(dir string, m proto.Message) map[string]string {
		size := proto.Size(m)
		return map[string]string{
			"event": "message", "message.type": dir, "message.id": "1",
			"message.uncompressed_size": strconv.Itoa(size),
			// No compressor: the compressed size is the size; gRPC's
			// frame adds a 5-byte prefix on the wire.
			"message.compressed_size": strconv.Itoa(size),
			"message.wire_size":       strconv.Itoa(size + 5),
		}
	}
	client := clientSpan("Unary", codes.OK, "").logged(
		msg("SENT", req), event("header received"), msg("RECEIVED", resp), event("trailer received"))
	client.Tags["peer.address"] = "bufconn"
	want := []node{client.with(serverSpan("Unary", codes.OK, "").logged(msg("RECEIVED", req), msg("SENT", resp)))}
	// The trailer and the response are read on different goroutines: their
	// events come in either order.
	byFields := cmpopts.SortSlices(func(a, b map[string]string) bool { return fmt.Sprint(a) < fmt.Sprint(b) })
	if diff := cmp.Diff(want, e.tracer.tree(), byFields); diff != "" {
		t.Errorf("span trees differ (-want +got):\n%s", diff)
	}
}

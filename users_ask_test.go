package grpctrace_test

// The answers docs/behaviour.md gives under "What users ask", pinned. The
// abandoned stream is TestAbandonedStream's and TestOTelAbandonedStream's.

import (
	"context"
	"io"
	"testing"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/opentracing/opentracing-go"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/c2e00e20/grpctrace/testpb"
)

// knownCount is how many messages the server streams, and the client reads,
// in the known-count cases.
const knownCount = 3

// readKnownCount opens a server stream of knownCount messages and reads
// exactly that many, checking each.
func readKnownCount(t *testing.T, ctx context.Context, c testpb.TestServiceClient) grpc.ServerStreamingClient[testpb.Response] {
	t.Helper()
	s, err := c.ServerStream(ctx, &testpb.Request{Value: "k", ResponseCount: knownCount})
	if err != nil {
		t.Fatalf("ServerStream: %v", err)
	}
	for i := int32(1); i <= knownCount; i++ {
		resp, err := s.Recv()
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if resp.GetSeq() != i {
			t.Fatalf("response %d has seq %d", i, resp.GetSeq())
		}
	}
	return s
}

// clientSpansOf is how many client spans one RPC has when grpctrace is
// installed so: with both, the interceptor's call and the handler's attempt.
func clientSpansOf(instrument string) int {
	if instrument == viaBoth {
		return 2
	}
	return 1
}

// TestUsersAskKnownCountThenCancel: a client that reads the messages it
// expects and cancels without the final Recv records Canceled, once, even
// though the server had ended with OK before the cancellation; reading on
// to io.EOF records the server's OK.
func TestUsersAskKnownCountThenCancel(t *testing.T) {
	for _, instrument := range instruments {
		// The server's span must have ended before the client cancels:
		// only the test's span and the client's remain open.
		open := 1 + clientSpansOf(instrument)
		cases := []rpcCase{
			{
				name: "read N then cancel",
				run: func(t *testing.T, ctx context.Context, cancel context.CancelFunc, c testpb.TestServiceClient) error {
					readKnownCount(t, ctx, c)
					opentracing.SpanFromContext(ctx).(*recordedSpan).r.waitOpen(t, open)
					cancel()
					// No further Recv: the caller saw no error.
					return nil
				},
				want: root(clientSpan("ServerStream", codes.Canceled, "context canceled").
					with(serverSpan("ServerStream", codes.OK, ""))),
			},
			{
				name: "read N then io.EOF",
				run: func(t *testing.T, ctx context.Context, cancel context.CancelFunc, c testpb.TestServiceClient) error {
					s := readKnownCount(t, ctx, c)
					if _, err := s.Recv(); err != io.EOF {
						t.Fatalf("Recv after %d messages: %v, want io.EOF", knownCount, err)
					}
					cancel()
					return nil
				},
				want: root(clientSpan("ServerStream", codes.OK, "").with(serverSpan("ServerStream", codes.OK, ""))),
			},
		}
		for _, tc := range cases {
			t.Run(instrument+"/"+tc.name, func(t *testing.T) { runCase(t, instrument, tc) })
		}
	}
}

// TestUsersAskKnownCountThenCancelOTel is TestUsersAskKnownCountThenCancel
// on the OpenTelemetry path.
func TestUsersAskKnownCountThenCancelOTel(t *testing.T) {
	for _, instrument := range instruments {
		open := 1 + clientSpansOf(instrument)
		cases := []otelCase{
			{
				name: "read N then cancel",
				run: func(t *testing.T, ctx context.Context, cancel context.CancelFunc, c testpb.TestServiceClient) error {
					readKnownCount(t, ctx, c)
					trace.SpanFromContext(ctx).(*otelRecSpan).p.waitOpen(t, open)
					cancel()
					return nil
				},
				want: root(otelRPC("client", "ServerStream", "CANCELLED").otelErr("context canceled").
					with(otelRPC("server", "ServerStream", "OK"))),
			},
			{
				name: "read N then io.EOF",
				run: func(t *testing.T, ctx context.Context, cancel context.CancelFunc, c testpb.TestServiceClient) error {
					s := readKnownCount(t, ctx, c)
					if _, err := s.Recv(); err != io.EOF {
						t.Fatalf("Recv after %d messages: %v, want io.EOF", knownCount, err)
					}
					cancel()
					return nil
				},
				want: root(otelRPC("client", "ServerStream", "OK").with(otelRPC("server", "ServerStream", "OK"))),
			},
		}
		for _, tc := range cases {
			t.Run(instrument+"/"+tc.name, func(t *testing.T) { runOTelCase(t, instrument, tc) })
		}
	}
}

// recoverToUnavailable is a recovery handler whose code is none of
// grpctrace's, so that the span shows whose status it recorded.
func recoverToUnavailable(p any) error { return status.Errorf(codes.Unavailable, "recovered: %v", p) }

// TestUsersAskRecoveryPlacement puts go-grpc-middleware's recovery
// interceptor after grpctrace's (inside) and before it (outside), for a
// unary and a streaming handler that panic. Inside, the server span records
// the recovery handler's status; outside, grpctrace sees the panic go by
// and records Internal "panic: ...". The client gets the recovery
// handler's status either way. The server stats handler records the status
// gRPC writes, wherever the recovery interceptor is.
func TestUsersAskRecoveryPlacement(t *testing.T) {
	const (
		recovered = "recovered: " + testpb.PanicValue
		panicked  = "panic: " + testpb.PanicValue
	)
	unaryRecovery := recovery.UnaryServerInterceptor(recovery.WithRecoveryHandler(recoverToUnavailable))
	streamRecovery := recovery.StreamServerInterceptor(recovery.WithRecoveryHandler(recoverToUnavailable))
	inside := setup{
		instrument:  viaInterceptors,
		noRecovery:  true,
		innerUnary:  []grpc.UnaryServerInterceptor{unaryRecovery},
		innerStream: []grpc.StreamServerInterceptor{streamRecovery},
	}
	outside := setup{
		instrument:  viaInterceptors,
		noRecovery:  true,
		outerUnary:  []grpc.UnaryServerInterceptor{unaryRecovery},
		outerStream: []grpc.StreamServerInterceptor{streamRecovery},
	}
	handlersOutside := outside
	handlersOutside.instrument = viaHandlers

	calls := []struct {
		method string
		call   func(ctx context.Context, c testpb.TestServiceClient) error
	}{
		{"Unary", func(ctx context.Context, c testpb.TestServiceClient) error {
			_, err := c.Unary(ctx, &testpb.Request{Panic: true})
			return err
		}},
		{"ServerStream", func(ctx context.Context, c testpb.TestServiceClient) error {
			s, err := c.ServerStream(ctx, &testpb.Request{Panic: true})
			if err != nil {
				return err
			}
			_, err = recvAll[testpb.Response](s)
			return err
		}},
	}
	placements := []struct {
		name  string
		setup setup
		// server is the server span's status and message.
		serverCode codes.Code
		serverMsg  string
	}{
		{"grpctrace first, recovery inside", inside, codes.Unavailable, recovered},
		{"recovery first, grpctrace inside", outside, codes.Internal, panicked},
		{"server stats handler, recovery interceptor", handlersOutside, codes.Unavailable, recovered},
	}
	for _, p := range placements {
		for _, c := range calls {
			t.Run(p.name+"/"+c.method, func(t *testing.T) {
				e := newEnv(t, p.setup)
				ctx, rootSpan := e.rootContext(context.Background())
				err := c.call(ctx, e.client)
				if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != recovered {
					t.Errorf("RPC ended with %v, want Unavailable %q", err, recovered)
				}
				rootSpan.Finish()
				e.tracer.waitSettled(t)
				want := root(clientSpan(c.method, codes.Unavailable, recovered).
					with(serverSpan(c.method, p.serverCode, p.serverMsg)))
				diffTrees(t, asInstalled(want, p.setup.instrument), e.tracer.tree())
			})
		}
	}
}

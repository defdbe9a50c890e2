package testpb

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// newTestClient serves a Server over an in-memory listener and returns a
// client connected to it; both are shut down when the test ends.
func newTestClient(t *testing.T) TestServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	RegisterTestServiceServer(srv, NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return lis.DialContext(ctx)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return NewTestServiceClient(conn)
}

// caller runs one RPC with the given requests and returns the responses
// received before the RPC ended, and how it ended.
type caller func(ctx context.Context, c TestServiceClient, reqs []*Request) ([]*Response, error)

func callUnary(ctx context.Context, c TestServiceClient, reqs []*Request) ([]*Response, error) {
	resp, err := c.Unary(ctx, reqs[0])
	if err != nil {
		return nil, err
	}
	return []*Response{resp}, nil
}

func callServerStream(ctx context.Context, c TestServiceClient, reqs []*Request) ([]*Response, error) {
	stream, err := c.ServerStream(ctx, reqs[0])
	if err != nil {
		return nil, err
	}
	var got []*Response
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, resp)
	}
}

func callClientStream(ctx context.Context, c TestServiceClient, reqs []*Request) ([]*Response, error) {
	stream, err := c.ClientStream(ctx)
	if err != nil {
		return nil, err
	}
	for _, req := range reqs {
		// io.EOF means the server has already ended the RPC; its status
		// comes from CloseAndRecv.
		if err := stream.Send(req); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	return []*Response{resp}, nil
}

// callBidi sends each request and waits for its answer before sending the
// next, so a failure is seen right after the request that caused it.
func callBidi(ctx context.Context, c TestServiceClient, reqs []*Request) ([]*Response, error) {
	stream, err := c.Bidi(ctx)
	if err != nil {
		return nil, err
	}
	var got []*Response
	for _, req := range reqs {
		if err := stream.Send(req); err != nil && err != io.EOF {
			return got, err
		}
		resp, err := stream.Recv()
		if err != nil {
			return got, err
		}
		got = append(got, resp)
	}
	if err := stream.CloseSend(); err != nil {
		return got, err
	}
	if resp, err := stream.Recv(); err != io.EOF {
		return got, fmt.Errorf("after CloseSend: got (%v, %v), want io.EOF", resp, err)
	}
	return got, nil
}

func reqs(rs ...*Request) []*Request { return rs }

func resp(value string, seq int32) *Response { return &Response{Value: value, Seq: seq} }

func TestServer(t *testing.T) {
	const never = int64(time.Hour / time.Millisecond)
	tests := []struct {
		name    string
		call    caller
		reqs    []*Request
		timeout time.Duration // 0: a generous default
		want    []*Response
		code    codes.Code
		msg     string // checked when code != OK
	}{
		// Unary.
		{name: "unary/echo", call: callUnary,
			reqs: reqs(&Request{Value: "hi"}), want: []*Response{resp("hi", 1)}},
		{name: "unary/fail", call: callUnary,
			reqs: reqs(&Request{Value: "hi", FailCode: int32(codes.InvalidArgument), FailMessage: "bad value"}),
			code: codes.InvalidArgument, msg: "bad value"},
		{name: "unary/sleep", call: callUnary,
			reqs: reqs(&Request{Value: "hi", SleepMs: 10}), want: []*Response{resp("hi", 1)}},
		{name: "unary/sleep past deadline", call: callUnary,
			reqs: reqs(&Request{SleepMs: never}), timeout: 50 * time.Millisecond,
			code: codes.DeadlineExceeded},
		{name: "unary/sleep then fail", call: callUnary,
			reqs: reqs(&Request{SleepMs: 10, FailCode: int32(codes.Unavailable), FailMessage: "later"}),
			code: codes.Unavailable, msg: "later"},

		// Server streaming.
		{name: "server stream/default count", call: callServerStream,
			reqs: reqs(&Request{Value: "s"}), want: []*Response{resp("s", 1)}},
		{name: "server stream/three", call: callServerStream,
			reqs: reqs(&Request{Value: "s", ResponseCount: 3}),
			want: []*Response{resp("s", 1), resp("s", 2), resp("s", 3)}},
		{name: "server stream/fail before sending", call: callServerStream,
			reqs: reqs(&Request{Value: "s", ResponseCount: 3, FailCode: int32(codes.PermissionDenied), FailMessage: "no"}),
			code: codes.PermissionDenied, msg: "no"},
		{name: "server stream/fail mid-stream", call: callServerStream,
			reqs: reqs(&Request{Value: "s", ResponseCount: 5, FailAfter: 2, FailCode: int32(codes.Aborted), FailMessage: "mid"}),
			want: []*Response{resp("s", 1), resp("s", 2)},
			code: codes.Aborted, msg: "mid"},
		{name: "server stream/sleep past deadline", call: callServerStream,
			reqs: reqs(&Request{ResponseCount: 2, SleepMs: never}), timeout: 50 * time.Millisecond,
			code: codes.DeadlineExceeded},

		// Client streaming.
		{name: "client stream/join", call: callClientStream,
			reqs: reqs(&Request{Value: "a"}, &Request{Value: "b"}, &Request{Value: "c"}),
			want: []*Response{resp("a,b,c", 3)}},
		{name: "client stream/empty", call: callClientStream,
			reqs: nil, want: []*Response{resp("", 0)}},
		{name: "client stream/fail mid-stream", call: callClientStream,
			reqs: reqs(&Request{Value: "a"}, &Request{Value: "b", FailCode: int32(codes.FailedPrecondition), FailMessage: "second"}, &Request{Value: "c"}),
			code: codes.FailedPrecondition, msg: "second"},
		{name: "client stream/sleep past deadline", call: callClientStream,
			reqs: reqs(&Request{Value: "a"}, &Request{Value: "b", SleepMs: never}), timeout: 50 * time.Millisecond,
			code: codes.DeadlineExceeded},

		// Bidi streaming.
		{name: "bidi/echo", call: callBidi,
			reqs: reqs(&Request{Value: "x"}, &Request{Value: "y"}, &Request{Value: "z"}),
			want: []*Response{resp("x", 1), resp("y", 2), resp("z", 3)}},
		{name: "bidi/no requests", call: callBidi, reqs: nil},
		{name: "bidi/fail mid-stream", call: callBidi,
			reqs: reqs(&Request{Value: "x"}, &Request{Value: "y", FailCode: int32(codes.ResourceExhausted), FailMessage: "full"}, &Request{Value: "z"}),
			want: []*Response{resp("x", 1)},
			code: codes.ResourceExhausted, msg: "full"},
		{name: "bidi/sleep", call: callBidi,
			reqs: reqs(&Request{Value: "x", SleepMs: 10}, &Request{Value: "y"}),
			want: []*Response{resp("x", 1), resp("y", 2)}},
		{name: "bidi/sleep past deadline", call: callBidi,
			reqs: reqs(&Request{Value: "x"}, &Request{Value: "y", SleepMs: never}), timeout: 50 * time.Millisecond,
			want: []*Response{resp("x", 1)},
			code: codes.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := newTestClient(t)
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()

			got, err := tt.call(ctx, client, tt.reqs)

			st, ok := status.FromError(err)
			if !ok {
				t.Fatalf("error %v is not a gRPC status", err)
			}
			if st.Code() != tt.code {
				t.Fatalf("code = %v (%v), want %v", st.Code(), err, tt.code)
			}
			if tt.code != codes.OK && tt.msg != "" && st.Message() != tt.msg {
				t.Errorf("message = %q, want %q", st.Message(), tt.msg)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d responses %v, want %d %v", len(got), got, len(tt.want), tt.want)
			}
			for i := range got {
				if got[i].GetValue() != tt.want[i].GetValue() || got[i].GetSeq() != tt.want[i].GetSeq() {
					t.Errorf("response %d = {%q, %d}, want {%q, %d}", i,
						got[i].GetValue(), got[i].GetSeq(), tt.want[i].GetValue(), tt.want[i].GetSeq())
				}
			}
		})
	}
}

// TestSleepStopsWithContext calls the handler directly to show that a
// sleeping handler returns as soon as its context is done, with the
// matching status, rather than after the whole sleep.
func TestSleepStopsWithContext(t *testing.T) {
	expired, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	canceled, cancelNow := context.WithCancel(context.Background())
	cancelNow()

	for _, tt := range []struct {
		name string
		ctx  context.Context
		want codes.Code
	}{
		{"deadline", expired, codes.DeadlineExceeded},
		{"canceled", canceled, codes.Canceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := NewServer().Unary(tt.ctx, &Request{SleepMs: int64(time.Hour / time.Millisecond)})
			if got := status.Code(err); got != tt.want {
				t.Errorf("code = %v (%v), want %v", got, err, tt.want)
			}
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("handler returned after %v, want promptly", elapsed)
			}
		})
	}
}

// TestPanic calls the handler directly, outside gRPC, since the test
// server installs no recovery.
func TestPanic(t *testing.T) {
	defer func() {
		if r := recover(); r != PanicValue {
			t.Errorf("recovered %v, want %q", r, PanicValue)
		}
	}()
	_, _ = NewServer().Unary(context.Background(), &Request{Panic: true})
	t.Error("Unary returned, want panic")
}

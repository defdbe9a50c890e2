package hardening

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/c2e00e20/grpctrace/hardening/internal/spanlog"
	"github.com/c2e00e20/grpctrace/testpb"
)

// The fault tests log what they observe ("fault: ..." lines): the status
// each side's span ended with, and how long after the fault.

// openMidStream opens a stream of the given shape and takes it mid-stream:
// the first response received (bidi: after one request sent), the
// server's handler still running. It returns a function that receives
// until the RPC ends, at most 1<<20 messages, and returns the final error.
func openMidStream(t *testing.T, ctx context.Context, c testpb.TestServiceClient, shape string) func() error {
	t.Helper()
	var recv func() error
	switch shape {
	case "ServerStream":
		// More responses than flow control lets through unread: the
		// server's handler never finishes by itself.
		s, err := c.ServerStream(ctx, &testpb.Request{Value: "mid", ResponseCount: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		recv = func() error { _, err := s.Recv(); return err }
	case "Bidi":
		s, err := c.Bidi(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&testpb.Request{Value: "first"}); err != nil {
			t.Fatal(err)
		}
		recv = func() error { _, err := s.Recv(); return err }
	default:
		t.Fatalf("unknown shape %s", shape)
	}
	if err := recv(); err != nil {
		t.Fatalf("first response: %v", err)
	}
	return func() error {
		for range 1 << 20 {
			if err := recv(); err != nil {
				return err
			}
		}
		return errors.New("stream never ended")
	}
}

// TestServerKilled kills the server process (SIGKILL) mid-stream: the
// client's RPC fails with Unavailable at once, its span finishes once with
// that status, and the server's span file holds every span it finished
// before the fault, whole.
func TestServerKilled(t *testing.T) {
	for _, shape := range []string{"ServerStream", "Bidi"} {
		t.Run(shape, func(t *testing.T) {
			server := startPeer(t, "-mode", "server")
			addr := server.await("listening ", 30*time.Second)
			tr := newTracing(t)
			c := tr.dial(t, addr)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // only a safety net
			defer cancel()
			if _, err := c.Unary(ctx, &testpb.Request{Value: "before the fault"}); err != nil {
				t.Fatal(err)
			}
			rest := openMidStream(t, ctx, c, shape)

			killed := server.kill()
			err := rest()
			failedAfter := time.Since(killed)
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("RPC ended with %v, want Unavailable", err)
			}
			if failedAfter > 5*time.Second {
				t.Errorf("RPC failed %v after the kill", failedAfter)
			}
			spans, client := tr.waitFinished(t, shape, "client")
			if code, _ := client.Code(); code != codes.Unavailable {
				t.Errorf("client span status %v, want Unavailable", code)
			}
			unary := find(t, spans, named("Unary", "client"))

			// The killed server's file: the unary span it finished before
			// the fault, child of the client's; the stream's span never
			// finished, so it is not there.
			serverSpans := server.readSpans()
			noTwice(t, serverSpans)
			su := find(t, serverSpans, named("Unary", "server"))
			if su.ParentID != unary.SpanID || su.TraceID != unary.TraceID {
				t.Errorf("server's unary span is not the client's child: %+v", su)
			}
			if code, ok := su.Code(); !ok || code != codes.OK {
				t.Errorf("server's unary span status %v, want OK", code)
			}
			if n := count(serverSpans, named(shape, "server")); n != 0 {
				t.Errorf("%d server spans of the killed stream", n)
			}
			t.Logf("fault: server killed mid-%s: client RPC %v after %v; client span %v after %v; server file: %d span(s) finished before the kill, intact",
				shape, status.Code(err), failedAfter.Round(time.Microsecond), codes.Unavailable,
				client.End.Sub(killed).Round(time.Microsecond), len(serverSpans))
		})
	}
}

// handlerEnd is what a server handler saw at its end.
type handlerEnd struct {
	method string
	err    error // what it returned
	ctxErr error // its context's error
	at     time.Time
}

// observe is an inner server interceptor reporting each stream handler's
// end.
func observe(ends chan<- handlerEnd) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		err := h(srv, ss)
		ends <- handlerEnd{method: info.FullMethod, err: err, ctxErr: ss.Context().Err(), at: time.Now()}
		return err
	}
}

// TestClientKilled kills the client process (SIGKILL) mid-stream: the
// server's handler sees its context canceled (or, blocked in Send, the
// transport closing), the server span finishes with the handler's status, and the client's span file holds the span it finished before
// the fault.
func TestClientKilled(t *testing.T) {
	for _, shape := range []string{"ServerStream", "Bidi"} {
		t.Run(shape, func(t *testing.T) {
			tr := newTracing(t)
			ends := make(chan handlerEnd, 4)
			addr := tr.serve(t, nil, observe(ends))
			arg := map[string]string{"ServerStream": "server-stream", "Bidi": "bidi"}[shape]
			client := startPeer(t, "-mode", "client", "-target", addr, "-shape", arg)
			client.await("mid-stream", 30*time.Second)

			killed := client.kill()
			var end handlerEnd
			select {
			case end = <-ends:
			case <-time.After(10 * time.Second):
				t.Fatal("the server's handler did not end within 10 s of the client's death")
			}
			if end.method != service+shape {
				t.Fatalf("handler of %s ended, want %s", end.method, shape)
			}
			endCtx := ""
			if end.ctxErr != nil {
				endCtx = end.ctxErr.Error()
			}
			checkCanceledStatus(t, shape, status.Code(end.err), endCtx)
			spans, server := tr.waitFinished(t, shape, "server")
			code, ctxErr := handlerOutcome(t, server)
			if code != status.Code(end.err) {
				t.Errorf("server span status %v; the handler returned %v", code, end.err)
			}
			checkCanceledStatus(t, shape, code, ctxErr)

			clientSpans := client.readSpans()
			noTwice(t, clientSpans)
			cu := find(t, clientSpans, named("Unary", "client"))
			su := find(t, spans, named("Unary", "server"))
			if su.ParentID != cu.SpanID {
				t.Errorf("the server's unary span is not the child of the killed client's: %+v %+v", su, cu)
			}
			if n := count(clientSpans, named(shape, "client")); n != 0 {
				t.Errorf("%d client spans of the killed stream", n)
			}
			if server.ParentID == "" {
				t.Errorf("server stream span has no parent from the killed client: %+v", server)
			}
			t.Logf("fault: client killed mid-%s: handler saw %v after %v, returned %v; server span %v after %v; client file: %d span(s) finished before the kill, intact",
				shape, end.ctxErr, end.at.Sub(killed).Round(time.Microsecond), status.Code(end.err), code,
				server.End.Sub(killed).Round(time.Microsecond), len(clientSpans))
		})
	}
}

// checkCanceledStatus checks the status of a server span whose client
// went away mid-stream, and the handler's context when it returned. A
// handler waiting in Recv gets Canceled, its context canceled. One blocked
// in Send gets what gRPC's Send returns then, Unavailable ("transport is
// closing"), possibly before gRPC has canceled its context. The span
// records what the handler returned.
func checkCanceledStatus(t *testing.T, shape string, code codes.Code, ctxErr string) {
	t.Helper()
	switch {
	case code == codes.Canceled && ctxErr == context.Canceled.Error():
	case shape == "ServerStream" && code == codes.Unavailable && (ctxErr == "" || ctxErr == context.Canceled.Error()):
	default:
		t.Errorf("server span status %v, handler context %q: want Canceled (or, from Send, Unavailable)", code, ctxErr)
	}
}

// TestProxyCut cuts the TCP connection mid-stream at a loopback proxy:
// the client fails with Unavailable at once, the server's handler is
// canceled, and both spans end so, right after the cut.
func TestProxyCut(t *testing.T) {
	for _, shape := range []string{"ServerStream", "Bidi"} {
		t.Run(shape, func(t *testing.T) {
			server := startPeer(t, "-mode", "server")
			p := newProxy(t, server.await("listening ", 30*time.Second))
			tr := newTracing(t)
			c := tr.dial(t, p.addr())
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // only a safety net
			defer cancel()
			rest := openMidStream(t, ctx, c, shape)

			cut := p.cut()
			err := rest()
			failedAfter := time.Since(cut)
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("RPC ended with %v, want Unavailable", err)
			}
			client, ss := streamSpans(t, tr, server, shape)
			if code, _ := client.Code(); code != codes.Unavailable {
				t.Errorf("client span status %v, want Unavailable", code)
			}
			sc, ctxErr := handlerOutcome(t, ss)
			checkCanceledStatus(t, shape, sc, ctxErr)
			if ss.ParentID != client.SpanID {
				t.Errorf("server span is not the client span's child")
			}
			for side, end := range map[string]time.Time{"client": client.End, "server": ss.End} {
				if d := end.Sub(cut); d < 0 || d > 2*time.Second {
					t.Errorf("%s span ended %v after the cut, want within 2 s", side, d)
				}
			}
			t.Logf("fault: connection cut mid-%s: client RPC %v after %v, client span %v after %v; server span %v after %v",
				shape, status.Code(err), failedAfter.Round(time.Microsecond), codes.Unavailable,
				client.End.Sub(cut).Round(time.Microsecond), sc, ss.End.Sub(cut).Round(time.Microsecond))
		})
	}
}

// TestProxyStall stalls the connection mid-stream until the RPC's
// deadline: the client fails with DeadlineExceeded at the deadline, the
// server's handler reaches its own deadline (sent as grpc-timeout), and both
// spans end so, at the deadline.
func TestProxyStall(t *testing.T) {
	const deadline = time.Second
	for _, shape := range []string{"ServerStream", "Bidi"} {
		t.Run(shape, func(t *testing.T) {
			server := startPeer(t, "-mode", "server")
			p := newProxy(t, server.await("listening ", 30*time.Second))
			tr := newTracing(t)
			c := tr.dial(t, p.addr())
			// Connect first, so that the deadline covers the RPC alone.
			if _, err := c.Unary(context.Background(), &testpb.Request{}); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			rest := openMidStream(t, ctx, c, shape)
			p.stall()
			err := rest()
			due := start.Add(deadline)
			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("RPC ended with %v, want DeadlineExceeded", err)
			}
			failedAt := time.Now()
			client, ss := streamSpans(t, tr, server, shape)
			if code, _ := client.Code(); code != codes.DeadlineExceeded {
				t.Errorf("client span status %v, want DeadlineExceeded", code)
			}
			// gRPC's server ends a stream at its deadline twice over: the
			// context's own timer, and a timer that cancels it; whichever
			// fires first decides what the handler sees.
			sc, ctxErr := handlerOutcome(t, ss)
			switch {
			case ctxErr == context.DeadlineExceeded.Error() && sc == codes.DeadlineExceeded:
			case ctxErr == context.Canceled.Error() && sc == codes.Canceled:
			default:
				t.Errorf("server span status %v with handler context %q, want DeadlineExceeded (or gRPC's Canceled)", sc, ctxErr)
			}
			if d := client.End.Sub(due); d < 0 || d > 500*time.Millisecond {
				t.Errorf("client span ended %v after the deadline, want within 500 ms", d)
			}
			// The server's deadline is the client's, less the time the
			// request took to arrive.
			if d := ss.End.Sub(due); d < -100*time.Millisecond || d > 500*time.Millisecond {
				t.Errorf("server span ended %v from the deadline, want within [-100 ms, 500 ms]", d)
			}
			p.unstall()
			t.Logf("fault: connection stalled mid-%s, deadline %v: client RPC %v %v after the deadline, client span %v %v after it; server span %v %v after it",
				shape, deadline, status.Code(err), failedAt.Sub(due).Round(time.Microsecond), codes.DeadlineExceeded,
				client.End.Sub(due).Round(time.Microsecond), sc, ss.End.Sub(due).Round(time.Microsecond))
		})
	}
}

// streamSpans waits for the shape's client span, recorded in this process,
// and its server span, recorded by the server peer, each finished once.
func streamSpans(t *testing.T, tr *tracing, server *peer, shape string) (client, srv spanlog.Span) {
	t.Helper()
	_, client = tr.waitFinished(t, shape, "client")
	serverSpans := server.waitSpans(10*time.Second, func(s []spanlog.Span) bool { return count(s, named(shape, "server")) > 0 })
	noTwice(t, serverSpans)
	return client, find(t, serverSpans, named(shape, "server"))
}

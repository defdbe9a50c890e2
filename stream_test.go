package grpctrace_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opentracing/opentracing-go/mocktracer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/c2e00e20/grpctrace/testpb"
)

func finishedByKind(tr *recorder, kind string) []*mocktracer.MockSpan {
	var out []*mocktracer.MockSpan
	for _, s := range tr.FinishedSpans() {
		if fmt.Sprint(s.Tag("span.kind")) == kind {
			out = append(out, s)
		}
	}
	return out
}

// TestClientSpanEndsWithStream checks that a client stream's span is open
// while messages still flow and finishes once the stream has ended, after
// the server span, and that the server span covers the handler's work.
func TestClientSpanEndsWithStream(t *testing.T) {
	e := newEnv(t, setup{})
	const sleep = 30 * time.Millisecond
	s, err := e.client.ServerStream(context.Background(), &testpb.Request{ResponseCount: 2, SleepMs: sleep.Milliseconds()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	if n := len(finishedByKind(e.tracer, "client")); n != 0 {
		t.Fatalf("client span finished after the first of two messages")
	}
	if _, err := recvAll[testpb.Response](s); err != io.EOF {
		t.Fatalf("stream ended with %v, want io.EOF", err)
	}
	// The client span is finished by the RecvMsg that saw io.EOF: no wait.
	client := e.tracer.span(t, "/"+service+"/ServerStream", "client")
	e.tracer.waitSettled(t)
	server := e.tracer.span(t, "/"+service+"/ServerStream", "server")
	if server.ParentID != client.SpanContext.SpanID {
		t.Errorf("server span's parent is %d, want the client span %d", server.ParentID, client.SpanContext.SpanID)
	}
	if client.FinishTime.Before(server.FinishTime) || server.StartTime.Before(client.StartTime) {
		t.Errorf("client span [%v, %v] does not contain server span [%v, %v]",
			client.StartTime, client.FinishTime, server.StartTime, server.FinishTime)
	}
	if d := server.FinishTime.Sub(server.StartTime); d < sleep {
		t.Errorf("server span lasted %v, shorter than the handler's %v", d, sleep)
	}
}

// TestAbandonedStream drops a stream that is neither read to its end nor
// cancelled: the GC cleanup must finish its span, as an error.
func TestAbandonedStream(t *testing.T) {
	e := newEnv(t, setup{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	abandonServerStream(t, ctx, e.client)
	collectUntil(func() bool { return e.tracer.waitFinished(2, 100*time.Millisecond) })
	want := []node{
		clientSpan("ServerStream", codes.Unknown, "grpctrace: client stream abandoned: garbage collected before the RPC ended").
			with(serverSpan("ServerStream", codes.OK, "")),
	}
	diffTrees(t, want, e.tracer.tree())
	cancel()
	e.tracer.waitSettled(t)
}

// abandonServerStream opens a server stream of three messages, reads one
// and drops it, neither read to its end nor cancelled.
func abandonServerStream(t *testing.T, ctx context.Context, c testpb.TestServiceClient) {
	t.Helper()
	s, err := c.ServerStream(ctx, &testpb.Request{ResponseCount: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
}

// collectUntil collects garbage until ended, which waits a little for
// the cleanups a collection queued (they run on goroutines of their own),
// reports true; 20 times at most.
func collectUntil(ended func() bool) {
	for i := 0; i < 20 && !ended(); i++ {
		runtime.GC()
	}
}

// TestConcurrentRPCs runs RPCs of every shape at once, a third of them
// cancelled at a random point, and checks every span's bookkeeping: each
// RPC has exactly one client span, finished once, and at most one server
// span, child of it. Run it with -race.
func TestConcurrentRPCs(t *testing.T) {
	e := newEnv(t, setup{})
	const rpcs = 200
	var wg sync.WaitGroup
	errs := make(chan error, rpcs)
	var uncancelled atomic.Int32
	for i := range rpcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 7))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cancelAt := -1
			if r.IntN(3) == 0 {
				cancelAt = r.IntN(4)
			} else {
				uncancelled.Add(1)
			}
			step := func(n int) {
				if n == cancelAt {
					cancel()
				}
			}
			if err := runShape(ctx, e.client, i%4, step); err != nil {
				code := status.Code(err)
				if cancelAt < 0 || code != codes.Canceled {
					errs <- fmt.Errorf("rpc %d (shape %d, cancel at %d): %v", i, i%4, cancelAt, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	e.tracer.waitSettled(t)

	clients := finishedByKind(e.tracer, "client")
	servers := finishedByKind(e.tracer, "server")
	if len(clients) != rpcs {
		t.Errorf("%d client spans for %d RPCs", len(clients), rpcs)
	}
	clientIDs := map[int]bool{}
	for _, c := range clients {
		clientIDs[c.SpanContext.SpanID] = true
	}
	serverOf := map[int]int{}
	for _, s := range servers {
		if !clientIDs[s.ParentID] {
			t.Errorf("server span %d has no client parent", s.SpanContext.SpanID)
		}
		serverOf[s.ParentID]++
	}
	for id, n := range serverOf {
		if n != 1 {
			t.Errorf("client span %d has %d server spans", id, n)
		}
	}
	// Every RPC left to run to its end reached the server.
	if n := int32(len(serverOf)); n < uncancelled.Load() {
		t.Errorf("%d client spans with a server span, fewer than the %d RPCs not cancelled", n, uncancelled.Load())
	}
}

// runShape performs one RPC of the given shape, calling step(n) before its
// n-th step so that the caller can cancel there.
func runShape(ctx context.Context, c testpb.TestServiceClient, shape int, step func(int)) error {
	step(0)
	switch shape {
	case 0:
		_, err := c.Unary(ctx, &testpb.Request{Value: "u"})
		return err
	case 1:
		s, err := c.ServerStream(ctx, &testpb.Request{ResponseCount: 3})
		if err != nil {
			return err
		}
		for i := 1; ; i++ {
			step(i)
			if _, err := s.Recv(); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
		}
	case 2:
		s, err := c.ClientStream(ctx)
		if err != nil {
			return err
		}
		for i := 1; i < 3; i++ {
			step(i)
			if err := s.Send(&testpb.Request{Value: "c"}); err != nil && err != io.EOF {
				return err
			}
		}
		step(3)
		_, err = s.CloseAndRecv()
		return err
	default:
		s, err := c.Bidi(ctx)
		if err != nil {
			return err
		}
		// Send and receive on two goroutines, as gRPC allows.
		sendErr := make(chan error, 1)
		go func() {
			for i := 1; i < 3; i++ {
				if err := s.Send(&testpb.Request{Value: "b"}); err != nil {
					if err == io.EOF {
						err = nil
					}
					sendErr <- err
					return
				}
			}
			sendErr <- s.CloseSend()
		}()
		var recvErr error
		for i := 1; ; i++ {
			step(i)
			if _, err := s.Recv(); err == io.EOF {
				break
			} else if err != nil {
				recvErr = err
				break
			}
		}
		if err := <-sendErr; err != nil && recvErr == nil {
			return err
		}
		return recvErr
	}
}

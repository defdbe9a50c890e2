package grpctrace

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/opentracing/opentracing-go/mocktracer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// recvLast calls RecvMsg as a caller's last use of its stream does (for
// example CloseAndRecv, the usual end of a client-streaming call): nothing
// refers to the stream once the call is under way.
//
//go:noinline
func recvLast(cs grpc.ClientStream, done chan<- error) { done <- cs.RecvMsg(new(any)) }

// TestStreamNotAbandonedDuringRecvMsg: a client stream whose last RecvMsg
// is still under way is not abandoned, so the GC cleanup must not finish
// its span. Found by the soak (hardening/soak_test.go), where about one
// client-streaming span in ten ended as Unknown "client stream abandoned"
// while the caller got OK, before the wrapper's methods kept it alive.
func TestStreamNotAbandonedDuringRecvMsg(t *testing.T) {
	tracer := mocktracer.New()
	cfg := newConfig(clientSide, []Option{WithTracer(tracer)})
	ctx, c := startTestCall(t, cfg, context.Background())
	inner := &blockingStream{entered: make(chan struct{}), result: make(chan error)}
	done := make(chan error, 1)
	go recvLast(newClientStream(ctx, inner, c, false), done)
	<-inner.entered

	// While the RecvMsg is blocked, collect a few times: no span may
	// finish. Cleanups run on goroutines of their own, after the
	// collection; each time, wait for the cleanup of a sentinel that is
	// unreachable from the start, so that the check below comes after
	// the collections' cleanups have been run, not after a guessed delay.
	for i := 0; i < 3 && len(tracer.FinishedSpans()) == 0; i++ {
		collected := make(chan struct{})
		runtime.AddCleanup(new([64]byte), func(c chan struct{}) { close(c) }, collected)
		runtime.GC()
		select {
		case <-collected:
		case <-time.After(10 * time.Second):
			t.Fatal("a garbage collection ran no cleanup within 10 s")
		}
	}
	if spans := tracer.FinishedSpans(); len(spans) != 0 {
		inner.result <- nil
		<-done
		t.Fatalf("span finished while RecvMsg was under way: status %v, logs %v", spans[0].Tag(tagRPCStatusCode), spans[0].Logs())
	}
	inner.result <- nil // the single response: the RPC succeeded
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if code := onlySpan(t, tracer).Tag(tagRPCStatusCode); code != uint32(codes.OK) {
		t.Errorf("span status %v, want OK", code)
	}
}

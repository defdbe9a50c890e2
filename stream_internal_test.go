package grpctrace

import (
	"context"
	"io"
	"slices"
	"testing"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/mocktracer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// blockingStream is a grpc.ClientStream whose RecvMsg waits for the test to
// hand it a result, so that the test controls what is in flight when the
// context is cancelled.
type blockingStream struct {
	grpc.ClientStream
	entered chan struct{}
	result  chan error
}

func (b *blockingStream) RecvMsg(any) error {
	b.entered <- struct{}{}
	return <-b.result
}

func (b *blockingStream) SendMsg(any) error            { return nil }
func (b *blockingStream) CloseSend() error             { return nil }
func (b *blockingStream) Header() (metadata.MD, error) { return nil, nil }
func (b *blockingStream) Context() context.Context     { return context.Background() }

// startBlockingStream starts a traced client stream over a blockingStream
// and a RecvMsg on it, returning once that RecvMsg is under way.
func startBlockingStream(t *testing.T, serverStreams bool) (*mocktracer.MockTracer, context.CancelFunc, *streamEnd, *blockingStream, chan error) {
	t.Helper()
	tracer := mocktracer.New()
	cfg := newConfig(clientSide, []Option{WithTracer(tracer)})
	ctx, cancel := context.WithCancel(context.Background())
	ctx, c := startTestCall(t, cfg, ctx)
	inner := &blockingStream{entered: make(chan struct{}), result: make(chan error)}
	w := newClientStream(ctx, inner, c, serverStreams)
	recvDone := make(chan error, 1)
	go func() { recvDone <- w.RecvMsg(new(any)) }()
	<-inner.entered
	return tracer, cancel, w.end, inner, recvDone
}

func onlySpan(t *testing.T, tracer *mocktracer.MockTracer) *mocktracer.MockSpan {
	t.Helper()
	spans := tracer.FinishedSpans()
	if len(spans) != 1 {
		t.Fatalf("%d finished spans, want 1", len(spans))
	}
	return spans[0]
}

// A status that RecvMsg returns wins over a cancellation that happened
// while the RecvMsg was under way.
func TestRecvStatusWinsOverConcurrentCancel(t *testing.T) {
	tracer, cancel, end, inner, recvDone := startBlockingStream(t, true)
	cancel()
	end.contextDone() // what context.AfterFunc runs; it may also have run on its own
	if n := len(tracer.FinishedSpans()); n != 0 {
		t.Fatalf("span finished by the cancellation while RecvMsg was under way")
	}
	real := status.Error(codes.Internal, "the real status")
	inner.result <- real
	if err := <-recvDone; err != real {
		t.Fatalf("RecvMsg returned %v, want gRPC's error itself", err)
	}
	if got := onlySpan(t, tracer).Tag(tagRPCStatusCode); got != uint32(codes.Internal) {
		t.Errorf("status code tag %v, want Internal", got)
	}
}

// When the RecvMsg under way at the cancellation returns a message instead
// of the end, the cancellation ends the span as soon as it returns.
func TestCancelEndsSpanAfterRecvReturnsMessage(t *testing.T) {
	tracer, cancel, end, inner, recvDone := startBlockingStream(t, true)
	cancel()
	end.contextDone()
	inner.result <- nil
	if err := <-recvDone; err != nil {
		t.Fatal(err)
	}
	if got := onlySpan(t, tracer).Tag(tagRPCStatusCode); got != uint32(codes.Canceled) {
		t.Errorf("status code tag %v, want Canceled", got)
	}
}

// io.EOF from RecvMsg is success, returned to the caller unchanged, and a
// later end (a cancel, another RecvMsg) changes nothing.
func TestRecvEOFEndsOnce(t *testing.T) {
	tracer, cancel, end, inner, recvDone := startBlockingStream(t, true)
	inner.result <- io.EOF
	if err := <-recvDone; err != io.EOF {
		t.Fatalf("RecvMsg returned %v, want io.EOF itself", err)
	}
	cancel()
	end.contextDone()
	end.abandoned()
	s := onlySpan(t, tracer)
	if got := s.Tag(tagRPCStatusCode); got != uint32(codes.OK) || s.Tag(tagError) != nil {
		t.Errorf("tags %v, want OK without error", s.Tags())
	}
}

// A non-server-streaming RPC is over when its single response arrives.
func TestSingleResponseEndsClientStreaming(t *testing.T) {
	tracer, cancel, _, inner, recvDone := startBlockingStream(t, false)
	defer cancel()
	inner.result <- nil
	if err := <-recvDone; err != nil {
		t.Fatal(err)
	}
	if got := onlySpan(t, tracer).Tag(tagRPCStatusCode); got != uint32(codes.OK) {
		t.Errorf("status code tag %v, want OK", got)
	}
}

// The span context the client injects reaches the server side's
// extraction through real metadata, and the server span is its child.
func TestStartClientThenServer(t *testing.T) {
	tracer := mocktracer.New()
	client := newConfig(clientSide, []Option{WithTracer(tracer)})
	server := newConfig(serverSide, []Option{WithTracer(tracer)})
	ctx, c := startTestCall(t, client, context.Background())
	out, _ := metadata.FromOutgoingContext(ctx)
	sctx, s := startTestCall(t, server, metadata.NewIncomingContext(context.Background(), out))
	if opentracing.SpanFromContext(sctx) != s.rec.(*otSpan).span {
		t.Fatal("server context does not carry the server span")
	}
	s.end(nil, nil, nil)
	c.end(nil, nil, nil)
	spans := tracer.FinishedSpans()
	if len(spans) != 2 || spans[0].ParentID != spans[1].SpanContext.SpanID {
		t.Fatalf("want server span child of client span, got %v", spans)
	}
}

// Once the span has finished (here by the call's context), sends and the
// half-close log nothing more on it, even with message events on: a
// finished span must not be touched, and the caller's goroutine sending
// races with the context watch that ends the RPC.
func TestNoLogsAfterContextEndedStream(t *testing.T) {
	tracer := mocktracer.New()
	cfg := newConfig(clientSide, []Option{WithTracer(tracer), WithMessageEvents(), WithPayloadLogging()})
	ctx, cancel := context.WithCancel(context.Background())
	ctx, c := startTestCall(t, cfg, ctx)
	w := newClientStream(ctx, &blockingStream{}, c, true)
	if err := w.SendMsg("before"); err != nil {
		t.Fatal(err)
	}
	cancel()
	w.end.contextDone() // what context.AfterFunc runs; it may also have run on its own
	if err := w.SendMsg("after"); err != nil {
		t.Fatal(err)
	}
	if err := w.CloseSend(); err != nil {
		t.Fatal(err)
	}
	s := onlySpan(t, tracer)
	var events []string
	for _, rec := range s.Logs() {
		for _, f := range rec.Fields {
			if f.Key == "event" || f.Key == "payload" {
				events = append(events, f.Key+"="+f.ValueString)
			}
		}
	}
	want := []string{"event=" + eventMessage, "payload=before", "event=" + eventError}
	if !slices.Equal(events, want) {
		t.Errorf("span logs %q, want %q", events, want)
	}
	if got := s.Tag(tagRPCStatusCode); got != uint32(codes.Canceled) {
		t.Errorf("status code tag %v, want Canceled", got)
	}
}

package grpctrace_test

// Regression tests for the stats handlers nested under one another and
// under streams, for a server stream's context and for the abandoned-stream
// cleanup. They use the library's exported API only.

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opentracing/opentracing-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// bufServer is a test service of the test's own choosing, served on
// bufconn until the test ends.
type bufServer struct{ lis *bufconn.Listener }

func serveBuf(t testing.TB, impl testpb.TestServiceServer, opts ...grpc.ServerOption) *bufServer {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(opts...)
	testpb.RegisterTestServiceServer(srv, impl)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return &bufServer{lis: lis}
}

// dial returns a connection to the server, closed when the test ends
// (before the server stops).
func (s *bufServer) dial(t testing.TB, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	dial := []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}
	conn, err := grpc.NewClient("passthrough:///bufnet", append(dial, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// forwarder is a frontend whose Unary handler is the test's: typically it
// calls a backend with the handler's context.
type forwarder struct {
	testpb.UnimplementedTestServiceServer
	unary func(ctx context.Context, req *testpb.Request) (*testpb.Response, error)
}

func (f *forwarder) Unary(ctx context.Context, req *testpb.Request) (*testpb.Response, error) {
	return f.unary(ctx, req)
}

// panicCatcher is a server interceptor that turns a handler's panic into an
// Internal error and remembers it, so that a panic fails the test instead
// of the test process.
type panicCatcher struct {
	mu     sync.Mutex
	panics []string
}

func (p *panicCatcher) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			buf := make([]byte, 8<<10)
			buf = buf[:runtime.Stack(buf, false)]
			p.mu.Lock()
			p.panics = append(p.panics, fmt.Sprintf("%v\n%s", r, buf))
			p.mu.Unlock()
			resp, err = nil, status.Errorf(codes.Internal, "panic: %v", r)
		}
	}()
	return h(ctx, req)
}

func (p *panicCatcher) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range p.panics {
		t.Errorf("the frontend's handler panicked: %s", v)
	}
}

// TestUntracedRequestThroughParentRequiredHandlers: a frontend traced by
// NewServerHandler(WithParentRequired()) gets a request that carries no
// trace, and its handler calls a backend through a client traced by
// NewClientHandler(WithParentRequired()), with the handler's context.
// Neither side has a parent, so the downstream call must run untraced and
// succeed: no panic on the handler's goroutine, no span at all.
func TestUntracedRequestThroughParentRequiredHandlers(t *testing.T) {
	tracer := newRecorder()
	backendSaw := make(chan metadata.MD, 1)
	backend := serveBuf(t, testpb.NewServer(), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			backendSaw <- md
			return h(ctx, req)
		}))
	backendClient := testpb.NewTestServiceClient(backend.dial(t, grpc.WithStatsHandler(
		grpctrace.NewClientHandler(grpctrace.WithParentRequired(), grpctrace.WithTracer(tracer)))))

	var caught panicCatcher
	frontend := serveBuf(t, &forwarder{unary: func(ctx context.Context, req *testpb.Request) (*testpb.Response, error) {
		return backendClient.Unary(ctx, req)
	}},
		grpc.StatsHandler(grpctrace.NewServerHandler(grpctrace.WithParentRequired(), grpctrace.WithTracer(tracer))),
		grpc.UnaryInterceptor(caught.unary))

	// The test's client is not traced: the request carries no trace.
	client := testpb.NewTestServiceClient(frontend.dial(t))
	resp, err := client.Unary(context.Background(), &testpb.Request{Value: "through"})
	caught.check(t)
	if err != nil {
		t.Fatalf("call through the frontend failed: %v", err)
	}
	if resp.GetValue() != "through" {
		t.Fatalf("reply %q, want the backend's echo %q", resp.GetValue(), "through")
	}
	select {
	case md := <-backendSaw:
		if len(md.Get("content-type")) == 0 {
			t.Fatalf("the backend saw metadata %v, without even gRPC's content-type", md)
		}
		for k := range md {
			if strings.HasPrefix(k, "mockpfx-") {
				t.Errorf("the backend received a span context (%s: %v), want an untraced call", k, md[k])
			}
		}
	default:
		t.Fatal("the backend's handler never ran")
	}
	tracer.waitSettled(t)
	if spans := tracer.FinishedSpans(); len(spans) != 0 {
		t.Errorf("%d spans recorded, want none: %v", len(spans), tracer.tree())
	}
}

// TestFilteredNestedCallLeavesServerSpanStatus: a frontend traced by
// NewServerHandler calls a backend, with the handler's context, through a
// client whose NewClientHandler filters every call out; the backend fails
// the call NotFound and the handler ignores that and returns OK. The
// frontend's server span must end with the handler's status, OK, and hold
// nothing of the filtered call.
func TestFilteredNestedCallLeavesServerSpanStatus(t *testing.T) {
	tracer := newRecorder()
	backend := serveBuf(t, testpb.NewServer())
	backendClient := testpb.NewTestServiceClient(backend.dial(t, grpc.WithStatsHandler(grpctrace.NewClientHandler(
		grpctrace.WithTracer(tracer),
		grpctrace.WithFilter(func(context.Context, string) bool { return false })))))

	backendErr := make(chan error, 1)
	frontend := serveBuf(t, &forwarder{unary: func(ctx context.Context, req *testpb.Request) (*testpb.Response, error) {
		_, err := backendClient.Unary(ctx, &testpb.Request{FailCode: int32(codes.NotFound), FailMessage: "not there"})
		backendErr <- err
		return &testpb.Response{Value: req.GetValue(), Seq: 1}, nil
	}}, grpc.StatsHandler(grpctrace.NewServerHandler(grpctrace.WithTracer(tracer))))

	client := testpb.NewTestServiceClient(frontend.dial(t))
	if _, err := client.Unary(context.Background(), &testpb.Request{Value: "v"}); err != nil {
		t.Fatalf("frontend call failed: %v", err)
	}
	if err := <-backendErr; status.Code(err) != codes.NotFound {
		t.Fatalf("the backend call ended with %v, want NotFound", err)
	}
	if !tracer.waitFinished(1, 10*time.Second) {
		t.Fatal("the frontend's server span never finished")
	}
	tracer.waitSettled(t)
	diffTrees(t, []node{serverSpan("Unary", codes.OK, "")}, tracer.tree())
}

// TestFilteredCallUnderStreamContextLeavesStream: on a client traced by
// NewClientHandler (alone, or with the client interceptors), a Bidi stream
// is open and traced; a Unary call, which the client's filter rejects, is
// made on the same connection with the stream's context, and fails or
// succeeds. The stream's spans must be untouched: still open after the
// filtered call, and ending with the stream's own status, OK, once the
// stream ends.
func TestFilteredCallUnderStreamContextLeavesStream(t *testing.T) {
	notUnary := func(_ context.Context, method string) bool { return method != "/"+service+"/Unary" }
	outcomes := []struct {
		name string
		req  *testpb.Request
		want codes.Code
	}{
		{"filtered call fails", &testpb.Request{FailCode: int32(codes.NotFound), FailMessage: "not there"}, codes.NotFound},
		{"filtered call succeeds", &testpb.Request{Value: "ok"}, codes.OK},
	}
	for _, instrument := range []string{viaHandlers, viaBoth} {
		for _, o := range outcomes {
			t.Run(instrument+"/"+o.name, func(t *testing.T) {
				e := newEnv(t, setup{
					instrument:   instrument,
					clientOpts:   []grpctrace.Option{grpctrace.WithFilter(notUnary)},
					untracedSide: "server",
				})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				ctx, rootSpan := e.rootContext(ctx)
				s, err := e.client.Bidi(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Send(&testpb.Request{Value: "a"}); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Recv(); err != nil {
					t.Fatal(err)
				}

				_, err = e.client.Unary(s.Context(), o.req)
				if got := status.Code(err); got != o.want {
					t.Fatalf("filtered call ended with %v, want %v", err, o.want)
				}
				if done := finishedByKind(e.tracer, "client"); len(done) != 0 {
					for _, sp := range done {
						t.Errorf("span %q finished, status %v, while its stream is still open", sp.OperationName, sp.Tag("rpc.grpc.status_code"))
					}
				}

				// The stream goes on, and ends OK.
				if err := s.Send(&testpb.Request{Value: "b"}); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Recv(); err != nil {
					t.Fatal(err)
				}
				if err := s.CloseSend(); err != nil {
					t.Fatal(err)
				}
				if n, err := recvAll[testpb.Response](s); err != io.EOF || n != 0 {
					t.Fatalf("drain got %d messages and %v, want 0 and io.EOF", n, err)
				}
				rootSpan.Finish()
				e.tracer.waitSettled(t)
				diffTrees(t, asInstalled(root(clientSpan("Bidi", codes.OK, "")), instrument), e.tracer.tree())
			})
		}
	}
}

// TestCallOnOtherConnectionUnderStreamContextIsNoRetry: connection A has the
// client interceptors and a client stats handler, and a traced Bidi stream
// open on it; connection B, to the same server, has a client stats handler
// only (its own, or the same instance as A's). A Unary call on B with A's
// stream context is a call of its own, not an attempt of the stream's
// call: its attempt span must not be tagged as a retry, nor numbered 2.
func TestCallOnOtherConnectionUnderStreamContextIsNoRetry(t *testing.T) {
	for _, shared := range []bool{false, true} {
		name := "own handler"
		if shared {
			name = "same handler instance"
		}
		t.Run(name, func(t *testing.T) {
			tracer := newRecorder()
			srv := serveBuf(t, testpb.NewServer())
			handlerA := grpctrace.NewClientHandler(grpctrace.WithTracer(tracer))
			handlerB := handlerA
			if !shared {
				handlerB = grpctrace.NewClientHandler(grpctrace.WithTracer(tracer))
			}
			connA := srv.dial(t,
				grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(grpctrace.WithTracer(tracer))),
				grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(grpctrace.WithTracer(tracer))),
				grpc.WithStatsHandler(handlerA))
			connB := srv.dial(t, grpc.WithStatsHandler(handlerB))

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s, err := testpb.NewTestServiceClient(connA).Bidi(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(&testpb.Request{Value: "a"}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Recv(); err != nil {
				t.Fatal(err)
			}
			if _, err := testpb.NewTestServiceClient(connB).Unary(s.Context(), &testpb.Request{Value: "b"}); err != nil {
				t.Fatalf("call on B failed: %v", err)
			}
			if err := s.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if _, err := recvAll[testpb.Response](s); err != io.EOF {
				t.Fatalf("stream ended with %v, want io.EOF", err)
			}
			tracer.waitSettled(t)

			b := tracer.span(t, "/"+service+"/Unary", "client")
			if v, ok := b.Tags()["grpc.retry"]; ok {
				t.Errorf("B's call span tagged grpc.retry=%v, want no retry tag", v)
			}
			if v := b.Tag("grpc.attempt"); fmt.Sprint(v) == "2" {
				t.Errorf("B's call span tagged grpc.attempt=%v: counted as the second attempt of A's stream", v)
			}
		})
	}
}

// formattingServer's Bidi handler formats its context while another
// goroutine of the handler receives the client's messages, and reports
// what it saw.
type formattingServer struct {
	testpb.UnimplementedTestServiceServer
	seen chan formatted
}

type formatted struct {
	text    string
	times   int
	hasSpan bool
}

func (f *formattingServer) Bidi(stream testpb.TestService_BidiServer) error {
	ctx := stream.Context()
	received := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				received <- err
				return
			}
		}
	}()
	// Format until the receiver is done: the receiver is started before
	// the first format and nothing orders the two, so every format is
	// concurrent with the receives.
	var text string
	for n := 1; ; n++ {
		text = fmt.Sprintf("%v", ctx)
		select {
		case err := <-received:
			f.seen <- formatted{text: text, times: n, hasSpan: opentracing.SpanFromContext(ctx) != nil}
			if err == io.EOF {
				return nil
			}
			return err
		default:
		}
	}
}

// TestStreamContextFormatsAsOrdinaryContext: the handler of a server stream
// traced by the server interceptors formats its context with %v while the
// client's messages flow into the handler's other goroutine. Formatting
// must not race with the stream (run with -race), and must print what an
// ordinary context prints, not grpctrace's internals.
func TestStreamContextFormatsAsOrdinaryContext(t *testing.T) {
	tracer := newRecorder()
	impl := &formattingServer{seen: make(chan formatted, 1)}
	srv := serveBuf(t, impl, grpc.StreamInterceptor(grpctrace.StreamServerInterceptor(grpctrace.WithTracer(tracer))))
	client := testpb.NewTestServiceClient(srv.dial(t))

	s, err := client.Bidi(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := s.Send(&testpb.Request{Value: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("stream ended with %v, want io.EOF", err)
	}
	got := <-impl.seen
	tracer.waitSettled(t)
	if !got.hasSpan {
		t.Fatal("the handler's context carries no span: the stream was not traced")
	}
	t.Logf("formatted %d times: %s", got.times, got.text)
	if !strings.HasPrefix(got.text, "context.") || strings.Contains(got.text, "*grpctrace.") {
		t.Errorf("the handler's context formats as %q, want an ordinary context's text (\"context.Background.With...\"), without grpctrace's internals", got.text)
	}
}

// blockingFinishTracer records into a recorder, but a span's Finish blocks
// until released, as a tracer exporting synchronously to a slow collector
// would.
type blockingFinishTracer struct {
	*recorder
	entered     chan struct{} // closed when a Finish is first entered
	enteredOnce sync.Once
	release     chan struct{} // closed to let Finish go on
}

func (b *blockingFinishTracer) StartSpan(name string, opts ...opentracing.StartSpanOption) opentracing.Span {
	return &blockingFinishSpan{Span: b.recorder.StartSpan(name, opts...), t: b}
}

type blockingFinishSpan struct {
	opentracing.Span
	t *blockingFinishTracer
}

func (s *blockingFinishSpan) Finish() { s.FinishWithOptions(opentracing.FinishOptions{}) }

func (s *blockingFinishSpan) FinishWithOptions(o opentracing.FinishOptions) {
	s.t.enteredOnce.Do(func() { close(s.t.entered) })
	<-s.t.release
	s.Span.FinishWithOptions(o)
}

// TestAbandonedStreamCleanupDoesNotHoldUpOtherCleanups: with a tracer whose
// Finish blocks, a client stream traced by the client interceptors is
// dropped without being ended, and the garbage collector's cleanup ends its
// span. While that Finish is blocked, a cleanup the application registered
// (runtime.AddCleanup) on an unrelated object must still run: grpctrace
// must not make the runtime's cleanup goroutine wait on the tracer. Once
// released, the abandoned span finishes with status Unknown.
func TestAbandonedStreamCleanupDoesNotHoldUpOtherCleanups(t *testing.T) {
	// At most GOMAXPROCS/4 goroutines run cleanups: keep that at one, as on
	// a machine with fewer than 8 CPUs, so that a blocked cleanup blocks
	// the others whatever machine the test runs on.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(min(runtime.GOMAXPROCS(0), 2)))

	tracer := &blockingFinishTracer{recorder: newRecorder(), entered: make(chan struct{}), release: make(chan struct{})}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(tracer.release) }) }
	defer release()

	srv := serveBuf(t, testpb.NewServer())
	client := testpb.NewTestServiceClient(srv.dial(t,
		grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(grpctrace.WithTracer(tracer)))))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	abandonServerStream(t, ctx, client)

	// Collect until grpctrace's cleanup has reached the tracer's Finish.
	gcUntil := func(done <-chan struct{}) bool {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			runtime.GC()
			select {
			case <-done:
				return true
			case <-time.After(50 * time.Millisecond):
			}
		}
		return false
	}
	if !gcUntil(tracer.entered) {
		t.Fatal("the abandoned stream's span was not finished within 5 s of collections")
	}

	// Finish is blocked now. The application's own cleanup must run anyway.
	appCleaned := make(chan struct{})
	func() {
		obj := new([64]byte)
		runtime.AddCleanup(obj, func(ch chan struct{}) { close(ch) }, appCleaned)
	}()
	if !gcUntil(appCleaned) {
		t.Error("the application's cleanup did not run within 5 s while grpctrace's cleanup was blocked in the tracer's Finish")
	}

	release()
	select {
	case <-appCleaned:
	case <-time.After(10 * time.Second):
		t.Fatal("the application's cleanup never ran")
	}
	if !tracer.waitFinished(1, 10*time.Second) {
		t.Fatal("the abandoned stream's span never finished")
	}
	span := tracer.span(t, "/"+service+"/ServerStream", "client")
	if code := span.Tag("rpc.grpc.status_code"); code != uint32(codes.Unknown) {
		t.Errorf("abandoned stream's span status %v, want Unknown", code)
	}
	cancel()
	tracer.waitSettled(t)
}

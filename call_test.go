package grpctrace

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/mocktracer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// A handler or invoker whose goroutine exits through runtime.Goexit (a
// test's t.FailNow does) leaves the interceptor without a return and
// without a panic: the span finishes with Unknown, and the goroutine goes
// on exiting instead of turning into a panic.
func TestGoexitEndsSpanWithoutPanic(t *testing.T) {
	tracer := mocktracer.New()
	info := &grpc.UnaryServerInfo{FullMethod: "/pkg.Svc/Unary"}
	cases := map[string]func(){
		"unary server": func() {
			_, _ = UnaryServerInterceptor(WithTracer(tracer))(context.Background(), nil, info,
				func(context.Context, any) (any, error) { runtime.Goexit(); return nil, nil })
		},
		"stream server": func() {
			_ = StreamServerInterceptor(WithTracer(tracer))(nil, &goexitServerStream{}, &grpc.StreamServerInfo{FullMethod: "/pkg.Svc/Bidi"},
				func(any, grpc.ServerStream) error { runtime.Goexit(); return nil })
		},
		"unary client": func() {
			_ = UnaryClientInterceptor(WithTracer(tracer))(context.Background(), "/pkg.Svc/Unary", nil, nil, nil,
				func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
					runtime.Goexit()
					return nil
				})
		},
		"stream client": func() {
			_, _ = StreamClientInterceptor(WithTracer(tracer))(context.Background(), &grpc.StreamDesc{}, nil, "/pkg.Svc/Bidi",
				func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
					runtime.Goexit()
					return nil, nil
				})
		},
	}
	for name, call := range cases {
		t.Run(name, func(t *testing.T) {
			tracer.Reset()
			panicked := make(chan any, 1)
			go func() {
				defer func() { panicked <- recover() }()
				call()
			}()
			if r := <-panicked; r != nil {
				t.Fatalf("Goexit turned into a panic: %v", r)
			}
			s := onlySpan(t, tracer)
			if code := s.Tag(tagRPCStatusCode); code != uint32(codes.Unknown) || s.Tag(tagError) != true {
				t.Errorf("tags %v, want status Unknown with error", s.Tags())
			}
			if msg := lastLogField(s, "message"); msg != goexitReason {
				t.Errorf("error message %q, want %q", msg, goexitReason)
			}
		})
	}
}

type goexitServerStream struct{ grpc.ServerStream }

func (goexitServerStream) Context() context.Context { return context.Background() }

func lastLogField(s *mocktracer.MockSpan, key string) string {
	v := ""
	for _, rec := range s.Logs() {
		for _, f := range rec.Fields {
			if f.Key == key {
				v = f.ValueString
			}
		}
	}
	return v
}

// hookTracer is a tracer with OpenTracing's context hook, as the
// OpenTelemetry bridge has: the hook adds a value of its own.
type hookTracer struct{ *mocktracer.MockTracer }

type hookKey struct{}

func (h hookTracer) StartSpan(name string, opts ...opentracing.StartSpanOption) opentracing.Span {
	return hookSpan{h.MockTracer.StartSpan(name, opts...), h}
}

type hookSpan struct {
	opentracing.Span
	tracer hookTracer
}

func (s hookSpan) Tracer() opentracing.Tracer { return s.tracer }

func (hookTracer) ContextWithSpanHook(ctx context.Context, span opentracing.Span) context.Context {
	return context.WithValue(ctx, hookKey{}, span)
}

// startTestCall starts a call of the side's interceptor under ctx and
// returns the context the interceptor would hand on.
func startTestCall(t testing.TB, cfg *config, ctx context.Context) (context.Context, *call) {
	t.Helper()
	if cfg.side == clientSide {
		c := cfg.startClient(ctx, "/pkg.Svc/M", cfg.rec.forTarget("dns:///svc.example:443"))
		if c == nil {
			t.Fatal("client call not started")
		}
		return context.WithValue(c.clientContext(ctx), attemptsKey{}, c), c
	}
	c, _ := cfg.startServerInterceptor(ctx, "/pkg.Svc/M")
	if c == nil {
		t.Fatal("server call not started")
	}
	return c.serverContext(), c
}

// The interceptors' contexts carry the span as opentracing.ContextWithSpan
// puts it there: SpanFromContext finds it, the tracer's hook has run, and
// the values of the context the RPC came with are still there.
func TestContextCarriesSpanThroughTheAPI(t *testing.T) {
	tracer := hookTracer{mocktracer.New()}
	type callerKey struct{}
	for _, side := range []side{clientSide, serverSide} {
		parent := tracer.StartSpan("parent")
		base := opentracing.ContextWithSpan(context.WithValue(context.Background(), callerKey{}, "caller's"), parent)
		cfg := newConfig(side, []Option{WithTracer(tracer)})
		ctx, c := startTestCall(t, cfg, base)
		span := c.rec.(*otSpan).span
		if got := opentracing.SpanFromContext(ctx); got != span || got == parent {
			t.Errorf("side %v: SpanFromContext gives %v, want the RPC's span", side, got)
		}
		if got := ctx.Value(hookKey{}); got != span {
			t.Errorf("side %v: the tracer's context hook did not run on the RPC's span (value %v)", side, got)
		}
		if got := ctx.Value(callerKey{}); got != "caller's" {
			t.Errorf("side %v: caller's context value lost: %v", side, got)
		}
		c.end(nil, nil, nil)
	}
}

// Under GODEBUG=panicnil=1 recover returns nil for panic(nil), as for a
// Goexit: the interceptor must then let the panic go on, never swallow it
// into a success. Run in a child process with that setting.
func TestNilPanicGoesOnUnderPanicnil(t *testing.T) {
	if os.Getenv("GRPCTRACE_PANICNIL_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestNilPanicGoesOnUnderPanicnil$", "-test.v")
		cmd.Env = append(os.Environ(), "GRPCTRACE_PANICNIL_CHILD=1", "GODEBUG=panicnil=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestNilPanicGoesOnUnderPanicnil") {
			t.Fatalf("child process: %v\n%s", err, out)
		}
		return
	}
	if !nilPanicsRecoverNil {
		t.Fatal("GODEBUG=panicnil=1 not detected")
	}
	tracer := mocktracer.New()
	interceptor := UnaryServerInterceptor(WithTracer(tracer))
	returned := false
	func() {
		defer func() { _ = recover() }() // nil either way under panicnil=1
		_, _ = interceptor(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/pkg.Svc/Unary"},
			func(context.Context, any) (any, error) { panic(nil) })
		returned = true
	}()
	if returned {
		t.Fatal("the interceptor swallowed the handler's nil panic and returned")
	}
	if code := onlySpan(t, tracer).Tag(tagRPCStatusCode); code != uint32(codes.Internal) {
		t.Errorf("span status %v, want Internal", code)
	}
}

// A server interceptor's handler context holds no call: a handler's own
// outgoing calls must never find the server's.
func TestServerCallNotInHandlerContext(t *testing.T) {
	cfg := newConfig(serverSide, []Option{WithTracer(mocktracer.New())})
	ctx, c := startTestCall(t, cfg, context.Background())
	defer c.end(nil, nil, nil)
	if got := cfg.ownCall(ctx); got != nil {
		t.Errorf("handler context holds the call %v", got)
	}
}

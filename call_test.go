package grpctrace

import (
	"context"
	"runtime"
	"testing"

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

package grpctrace_test

import (
	"context"
	"fmt"
	"log"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/opentracing/opentracing-go/mocktracer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// grpctrace in a go-grpc-middleware v2 chain: first, so that the others run
// inside its span; logging with the span's ids, selected away for one
// method; recovery after grpctrace, so that a panicking handler's span
// records the error the recovery handler makes of it.
func Example_middlewareChain() {
	tracer := mocktracer.New()
	type logged struct{ msg, traceID, spanID string }
	var lines []logged // the calls are sequential, and so are the log calls
	logger := logging.LoggerFunc(func(_ context.Context, _ logging.Level, msg string, fields ...any) {
		l := logged{msg: msg}
		for i := 0; i+1 < len(fields); i += 2 {
			switch fields[i] {
			case grpctrace.LogFieldTraceID:
				l.traceID = fmt.Sprint(fields[i+1])
			case grpctrace.LogFieldSpanID:
				l.spanID = fmt.Sprint(fields[i+1])
			}
		}
		lines = append(lines, l)
	})
	notHealth := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return c.Service != "grpc.health.v1.Health" // log every call but health checks
	})
	srvOpts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(
		grpctrace.UnaryServerInterceptor(grpctrace.WithTracer(tracer)),
		selector.UnaryServerInterceptor(logging.UnaryServerInterceptor(logger,
			logging.WithLogOnEvents(logging.FinishCall),
			logging.WithFieldsFromContext(func(ctx context.Context) logging.Fields { return grpctrace.LogFields(ctx) }),
		), notHealth),
		recovery.UnaryServerInterceptor(recovery.WithRecoveryHandler(func(p any) error {
			return status.Errorf(codes.Unavailable, "recovered: %v", p)
		})),
	)}
	conn, stop := exampleConn(func(s *grpc.Server) { healthpb.RegisterHealthServer(s, health.NewServer()) }, srvOpts)
	defer stop()
	client := testpb.NewTestServiceClient(conn)

	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		log.Fatal(err)
	}
	if _, err := client.Unary(context.Background(), &testpb.Request{Value: "hi"}); err != nil {
		log.Fatal(err)
	}
	_, err := client.Unary(context.Background(), &testpb.Request{Panic: true})
	fmt.Println("panicking call:", status.Code(err))
	spans := tracer.FinishedSpans()
	for _, span := range spans {
		fmt.Println(span.OperationName, "status", span.Tag("rpc.grpc.status_code"))
	}
	for _, l := range lines {
		logs := "no span"
		for _, span := range spans {
			if l.traceID == fmt.Sprint(span.SpanContext.TraceID) && l.spanID == fmt.Sprint(span.SpanContext.SpanID) {
				logs = "the span of " + span.OperationName
			}
		}
		fmt.Printf("log %q with trace_id and span_id of %s\n", l.msg, logs)
	}
	// Output:
	// panicking call: Unavailable
	// /grpc.health.v1.Health/Check status 0
	// /grpctrace.testpb.TestService/Unary status 0
	// /grpctrace.testpb.TestService/Unary status 14
	// log "finished call" with trace_id and span_id of the span of /grpctrace.testpb.TestService/Unary
	// log "finished call" with trace_id and span_id of the span of /grpctrace.testpb.TestService/Unary
}

package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/opentracing/opentracing-go"
	"go.opentelemetry.io/otel/baggage"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/c2e00e20/grpctrace/testpb"
)

// RootOperation names the span under which Run makes its calls.
const RootOperation = "demo"

// BaggageValue is the value Run gives the BaggageKey baggage item.
const BaggageValue = "ada"

// Call is the outcome of one of Run's RPCs.
type Call struct {
	// Name says what the call shows: "unary", "server-stream",
	// "client-stream", "bidi", "unary-fail" or "unary-panic".
	Name string
	// Method is the full gRPC method.
	Method string
	// Want is the status code the call is meant to end with, Code the one
	// it ended with, and Err the error, if any.
	Want, Code codes.Code
	Err        error
	// Result summarises what the server sent back.
	Result string
}

// Result is what Run or RunOpenTelemetry did.
type Result struct {
	// Root is the context of the span that parents every call, when Run
	// started it with an OpenTracing tracer; nil after RunOpenTelemetry.
	Root opentracing.SpanContext
	// TraceID is the trace's ID in hex, or "" when the tracer's span
	// contexts do not tell (see TraceID).
	TraceID string
	Calls   []Call
}

// Run makes the demo's calls through conn, in order, under one root span
// named RootOperation started with tracer (which carries the BaggageKey
// baggage item to every server handler):
//
//   - unary: a unary call, answered after 3ms;
//   - server-stream: a server-streaming call, three responses;
//   - client-stream: a client-streaming call, three requests;
//   - bidi: a bidi call, three requests each answered in turn;
//   - unary-fail: a unary call the server fails with NotFound;
//   - unary-panic: a unary call whose handler panics, which the server's
//     recovery turns into Internal.
//
// conn is expected to be traced by grpctrace with the same tracer (see
// Dial). Run returns an error when a call did not end with the status it
// was meant to; the calls are all made either way, and the root span is
// then marked as failed.
func Run(ctx context.Context, tracer opentracing.Tracer, conn grpc.ClientConnInterface) (Result, error) {
	root := tracer.StartSpan(RootOperation)
	defer root.Finish()
	root.SetBaggageItem(BaggageKey, BaggageValue)
	ctx = opentracing.ContextWithSpan(ctx, root)
	res := Result{Root: root.Context(), TraceID: TraceID(root.Context())}
	var err error
	res.Calls, err = makeCalls(ctx, conn)
	if err != nil {
		root.SetTag("error", true)
	}
	return res, err
}

// RunOpenTelemetry is Run through the OpenTelemetry API: the root span is
// started with a tracer of tp, and the BaggageKey baggage member is set in
// the calls' context. conn is expected to be traced by grpctrace recording
// through OpenTelemetry with the same provider (see Options.TracerProvider).
func RunOpenTelemetry(ctx context.Context, tp trace.TracerProvider, conn grpc.ClientConnInterface) (Result, error) {
	member, err := baggage.NewMemberRaw(BaggageKey, BaggageValue)
	if err != nil {
		return Result{}, err
	}
	bag, err := baggage.New(member)
	if err != nil {
		return Result{}, err
	}
	ctx, root := tp.Tracer(InstrumentationName).Start(baggage.ContextWithBaggage(ctx, bag), RootOperation)
	defer root.End()
	res := Result{TraceID: root.SpanContext().TraceID().String()}
	res.Calls, err = makeCalls(ctx, conn)
	if err != nil {
		root.SetStatus(otelcodes.Error, "")
	}
	return res, err
}

// makeCalls makes Run's calls with ctx, which carries the root span.
func makeCalls(ctx context.Context, conn grpc.ClientConnInterface) ([]Call, error) {
	client := testpb.NewTestServiceClient(conn)
	const svc = "/grpctrace.testpb.TestService/"
	calls := []struct {
		name, method string
		want         codes.Code
		do           func(context.Context, testpb.TestServiceClient) (string, error)
	}{
		{"unary", svc + "Unary", codes.OK, unary(&testpb.Request{Value: "hello", SleepMs: 3})},
		{"server-stream", svc + "ServerStream", codes.OK, serverStream},
		{"client-stream", svc + "ClientStream", codes.OK, clientStream},
		{"bidi", svc + "Bidi", codes.OK, bidi},
		{"unary-fail", svc + "Unary", codes.NotFound, unary(&testpb.Request{
			Value: "missing", FailCode: int32(codes.NotFound), FailMessage: "no such record",
		})},
		{"unary-panic", svc + "Unary", codes.Internal, unary(&testpb.Request{Value: "boom", Panic: true})},
	}
	var done []Call
	var errs []error
	for _, c := range calls {
		out, err := c.do(ctx, client)
		code := status.Code(err)
		done = append(done, Call{Name: c.name, Method: c.method, Want: c.want, Code: code, Err: err, Result: out})
		if code != c.want {
			errs = append(errs, fmt.Errorf("%s: got %v, want %v: %v", c.name, code, c.want, err))
		}
	}
	return done, errors.Join(errs...)
}

func unary(req *testpb.Request) func(context.Context, testpb.TestServiceClient) (string, error) {
	return func(ctx context.Context, c testpb.TestServiceClient) (string, error) {
		resp, err := c.Unary(ctx, req)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%q", resp.GetValue()), nil
	}
}

func serverStream(ctx context.Context, c testpb.TestServiceClient) (string, error) {
	stream, err := c.ServerStream(ctx, &testpb.Request{Value: "tick", ResponseCount: 3, SleepMs: 2})
	if err != nil {
		return "", err
	}
	var got []string
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return fmt.Sprintf("%d responses: %s", len(got), strings.Join(got, " ")), nil
		}
		if err != nil {
			return "", err
		}
		got = append(got, fmt.Sprintf("%s#%d", resp.GetValue(), resp.GetSeq()))
	}
}

func clientStream(ctx context.Context, c testpb.TestServiceClient) (string, error) {
	stream, err := c.ClientStream(ctx)
	if err != nil {
		return "", err
	}
	for _, v := range []string{"a", "b", "c"} {
		if err := stream.Send(&testpb.Request{Value: v, SleepMs: 1}); err != nil {
			if err == io.EOF {
				break // the status is read below
			}
			return "", err
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d requests: %q", resp.GetSeq(), resp.GetValue()), nil
}

func bidi(ctx context.Context, c testpb.TestServiceClient) (string, error) {
	stream, err := c.Bidi(ctx)
	if err != nil {
		return "", err
	}
	var got []string
	for i := 1; i <= 3; i++ {
		if err := stream.Send(&testpb.Request{Value: fmt.Sprintf("ping%d", i), SleepMs: 1}); err != nil {
			if err == io.EOF {
				break
			}
			return "", err
		}
		resp, err := stream.Recv()
		if err != nil {
			return "", err
		}
		got = append(got, fmt.Sprintf("%s#%d", resp.GetValue(), resp.GetSeq()))
	}
	if err := stream.CloseSend(); err != nil {
		return "", err
	}
	for {
		_, err := stream.Recv()
		if err == io.EOF {
			return fmt.Sprintf("%d exchanges: %s", len(got), strings.Join(got, " ")), nil
		}
		if err != nil {
			return "", err
		}
	}
}

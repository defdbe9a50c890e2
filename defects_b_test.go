package grpctrace_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/opentracing/opentracing-go"
	otlog "github.com/opentracing/opentracing-go/log"
	"github.com/opentracing/opentracing-go/mocktracer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// spanProbe is an innermost server interceptor that records the span the
// handler's context carries (nil when it carries none).
type spanProbe struct {
	mu    sync.Mutex
	spans []opentracing.Span
}

func (p *spanProbe) record(ctx context.Context) {
	p.mu.Lock()
	p.spans = append(p.spans, opentracing.SpanFromContext(ctx))
	p.mu.Unlock()
}

func (p *spanProbe) setup(s setup) setup {
	s.innerUnary = append(s.innerUnary, func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		p.record(ctx)
		return h(ctx, req)
	})
	s.innerStream = append(s.innerStream, func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		p.record(ss.Context())
		return h(srv, ss)
	})
	return s
}

func (p *spanProbe) only(t *testing.T) opentracing.Span {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.spans) != 1 {
		t.Fatalf("probe saw %d RPCs, want 1", len(p.spans))
	}
	return p.spans[0]
}

// mockOf returns the mocktracer span behind a span the recorder started.
func mockOf(span opentracing.Span) *mocktracer.MockSpan {
	switch s := span.(type) {
	case *recordedSpan:
		return s.MockSpan
	case *mocktracer.MockSpan:
		return s
	}
	return nil
}

// runServerStream calls ServerStream and reads it to its end; a clean end
// (io.EOF) is a nil error.
func runServerStream(ctx context.Context, c testpb.TestServiceClient, req *testpb.Request) (int, error) {
	s, err := c.ServerStream(ctx, req)
	if err != nil {
		return 0, err
	}
	n, err := recvAll[testpb.Response](s)
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// TestHandlerContextSpanIsServerSpan: in every install mode, a unary and a
// streaming handler find in their context, with opentracing.SpanFromContext,
// the very server span the tracer records (same trace and span IDs, same
// operation name), not merely some span.
func TestHandlerContextSpanIsServerSpan(t *testing.T) {
	for _, instrument := range instruments {
		for _, shape := range []string{"Unary", "ServerStream"} {
			t.Run(instrument+"/"+shape, func(t *testing.T) {
				var p spanProbe
				e := newEnv(t, p.setup(setup{instrument: instrument}))
				var err error
				if shape == "Unary" {
					_, err = e.client.Unary(context.Background(), &testpb.Request{})
				} else {
					_, err = runServerStream(context.Background(), e.client, &testpb.Request{ResponseCount: 2})
				}
				if err != nil {
					t.Fatal(err)
				}
				e.tracer.waitSettled(t)
				server := e.tracer.span(t, "/"+service+"/"+shape, "server")
				got := p.only(t)
				if got == nil {
					t.Fatal("handler's context carries no span")
				}
				sc, ok := got.Context().(mocktracer.MockSpanContext)
				if !ok {
					t.Fatalf("handler's span context is %T, not the tracer's", got.Context())
				}
				if sc.TraceID != server.SpanContext.TraceID || sc.SpanID != server.SpanContext.SpanID {
					t.Errorf("handler's span is trace %d span %d, want the server span: trace %d span %d",
						sc.TraceID, sc.SpanID, server.SpanContext.TraceID, server.SpanContext.SpanID)
				}
				if m := mockOf(got); m == nil || m.OperationName != server.OperationName {
					t.Errorf("handler's span %v is not the server span %q", got, server.OperationName)
				}
			})
		}
	}
}

// TestOperationNameCachedAfterUnknownMethodFlood: a server stats handler
// with WithOperationName(f) first receives 2048 RPCs for distinct methods it
// does not have (each fails Unimplemented), and only then, for the first
// time, RPCs of a real method. The real method must still be named once
// and the name reused: over five RPCs of it, f runs at most once for it.
// (The real method is deliberately not called before the flood: a name
// cached before it would hide the problem.)
func TestOperationNameCachedAfterUnknownMethodFlood(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	name := grpctrace.WithOperationName(func(m string) string {
		mu.Lock()
		calls[m]++
		mu.Unlock()
		return "op " + m
	})
	e := newEnv(t, setup{instrument: viaHandlers, serverOpts: []grpctrace.Option{name}})
	ctx := context.Background()
	const flood = 2 * 1024
	for i := range flood {
		err := e.conn.Invoke(ctx, fmt.Sprintf("/unknown.Svc/M%d", i), &testpb.Request{}, new(testpb.Response))
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("unknown method %d: got %v, want Unimplemented", i, err)
		}
	}
	const real = "/" + service + "/Unary"
	const rpcs = 5
	for range rpcs {
		if _, err := e.client.Unary(ctx, &testpb.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	e.tracer.waitSettled(t)
	named := 0
	for _, s := range finishedByKind(e.tracer, "server") {
		if s.OperationName == "op "+real {
			named++
		}
	}
	if named != rpcs {
		t.Fatalf("%d server spans named by f for %s, want %d", named, real, rpcs)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := calls[real]; n > 1 {
		t.Errorf("after the flood, f ran %d times for %s over %d RPCs, want at most once", n, real, rpcs)
	}
}

// recoveryRecorder is a recovery handler that records what it recovered and
// turns it into an Internal error.
type recoveryRecorder struct {
	mu  sync.Mutex
	got []any
}

func (c *recoveryRecorder) handle(p any) error {
	c.mu.Lock()
	c.got = append(c.got, p)
	c.mu.Unlock()
	return status.Errorf(codes.Internal, "panic: %v", p)
}

func (c *recoveryRecorder) recovered() []any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]any(nil), c.got...)
}

const redactorPanic = "redactor exploded"

// panickingRedactor panics on requests, or on responses, and lets the
// other direction through.
func panickingRedactor(onRequest bool) grpctrace.Option {
	return grpctrace.WithPayloadRedactor(func(_ context.Context, _ string, msg any) any {
		if _, isReq := msg.(*testpb.Request); isReq == onRequest {
			panic(redactorPanic)
		}
		return msg
	})
}

// TestPanickingRedactorServer: the server interceptors log payloads
// (WithPayloadLogging) through a redactor that panics, on the request or on
// the response. The server span must finish, with status Internal, and the
// panic must go on as a handler's would. A panic escaping an interceptor
// would crash a gRPC server, so a recovery interceptor sits on each side of
// grpctrace (outside and inside); exactly one of them must recover the
// redactor's panic, and the client sees Internal.
func TestPanickingRedactorServer(t *testing.T) {
	cases := []struct {
		name      string
		onRequest bool
		run       func(context.Context, testpb.TestServiceClient) error
	}{
		{"unary request", true, func(ctx context.Context, c testpb.TestServiceClient) error {
			_, err := c.Unary(ctx, &testpb.Request{Value: "x"})
			return err
		}},
		{"unary response", false, func(ctx context.Context, c testpb.TestServiceClient) error {
			_, err := c.Unary(ctx, &testpb.Request{Value: "x"})
			return err
		}},
		{"stream response", false, func(ctx context.Context, c testpb.TestServiceClient) error {
			_, err := runServerStream(ctx, c, &testpb.Request{Value: "x"})
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var outer, inner recoveryRecorder
			e := newEnv(t, setup{
				untracedSide: "client",
				noRecovery:   true,
				serverOpts:   []grpctrace.Option{grpctrace.WithPayloadLogging(), panickingRedactor(tc.onRequest)},
				outerUnary:   []grpc.UnaryServerInterceptor{recovery.UnaryServerInterceptor(recovery.WithRecoveryHandler(outer.handle))},
				outerStream:  []grpc.StreamServerInterceptor{recovery.StreamServerInterceptor(recovery.WithRecoveryHandler(outer.handle))},
				innerUnary:   []grpc.UnaryServerInterceptor{recovery.UnaryServerInterceptor(recovery.WithRecoveryHandler(inner.handle))},
				innerStream:  []grpc.StreamServerInterceptor{recovery.StreamServerInterceptor(recovery.WithRecoveryHandler(inner.handle))},
			})
			if err := tc.run(context.Background(), e.client); status.Code(err) != codes.Internal {
				t.Fatalf("client got %v, want Internal", err)
			}
			got := append(outer.recovered(), inner.recovered()...)
			if len(got) != 1 || got[0] != redactorPanic {
				t.Errorf("recovered %v, want the redactor's panic once", got)
			}
			e.tracer.waitSettled(t)
			method := "/" + service + "/Unary"
			if strings.HasPrefix(tc.name, "stream") {
				method = "/" + service + "/ServerStream"
			}
			server := e.tracer.span(t, method, "server")
			if code := server.Tag("rpc.grpc.status_code"); code != uint32(codes.Internal) {
				t.Errorf("server span has status %v, want %d (Internal)", code, codes.Internal)
			}
		})
	}
}

// TestPanickingRedactorClient: the unary client interceptor logs payloads
// through a redactor that panics, on the request or on the response. The
// client span must finish, as an error, and the panic must reach the
// caller unchanged.
func TestPanickingRedactorClient(t *testing.T) {
	for _, onRequest := range []bool{true, false} {
		t.Run(map[bool]string{true: "request", false: "response"}[onRequest], func(t *testing.T) {
			e := newEnv(t, setup{
				untracedSide: "server",
				clientOpts:   []grpctrace.Option{grpctrace.WithPayloadLogging(), panickingRedactor(onRequest)},
			})
			var r any
			func() {
				defer func() { r = recover() }()
				_, _ = e.client.Unary(context.Background(), &testpb.Request{Value: "x"})
			}()
			if r != redactorPanic {
				t.Errorf("caller recovered %v, want the redactor's panic", r)
			}
			e.tracer.waitSettled(t)
			client := e.tracer.span(t, "/"+service+"/Unary", "client")
			if client.Tag("error") != true {
				t.Errorf("client span tags %v, want it marked as an error", client.Tags())
			}
		})
	}
}

// TestOpaqueTargetPeerTags calls the client interceptors directly (with an
// invoker and a streamer that do no RPC) on a ClientConn dialled with an
// opaque target, "dns:svc.example:443", which gRPC canonicalises to
// "dns:///svc.example:443": the client span must be tagged as for the
// canonical form, peer.address=svc.example:443, peer.hostname=svc.example,
// peer.port=443. The canonical form itself is checked alongside.
func TestOpaqueTargetPeerTags(t *testing.T) {
	for _, target := range []string{"dns:svc.example:443", "dns:///svc.example:443"} {
		t.Run(target, func(t *testing.T) {
			cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			if got := cc.CanonicalTarget(); got != "dns:///svc.example:443" {
				t.Fatalf("gRPC canonicalised %q as %q", target, got)
			}
			tracer := newRecorder()
			unary := grpctrace.UnaryClientInterceptor(grpctrace.WithTracer(tracer))
			stream := grpctrace.StreamClientInterceptor(grpctrace.WithTracer(tracer))
			invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
			streamer := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
				return nil, status.Error(codes.Unavailable, "no stream in this test")
			}
			if err := unary(context.Background(), "/"+service+"/Unary", &testpb.Request{}, new(testpb.Response), cc, invoker); err != nil {
				t.Fatal(err)
			}
			if _, err := stream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, cc, "/"+service+"/ServerStream", streamer); status.Code(err) != codes.Unavailable {
				t.Fatalf("stream interceptor returned %v, want the streamer's error", err)
			}
			tracer.waitSettled(t)
			spans := tracer.FinishedSpans()
			if len(spans) != 2 {
				t.Fatalf("%d spans, want 2", len(spans))
			}
			want := map[string]any{"peer.address": "svc.example:443", "peer.hostname": "svc.example", "peer.port": uint16(443)}
			for _, s := range spans {
				got := map[string]any{}
				for k, v := range s.Tags() {
					if strings.HasPrefix(k, "peer.") {
						got[k] = v
					}
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s: peer tags (-want +got):\n%s", s.OperationName, diff)
				}
			}
		})
	}
}

// TestHandlerLogsNotAfterFinish: with the stats handlers only, message
// events on and a decorator that logs, failing unary and streaming RPCs
// must leave every log of the client and the server span stamped at or
// before the span's finish time.
func TestHandlerLogsNotAfterFinish(t *testing.T) {
	deco := grpctrace.WithSpanDecorator(func(ctx context.Context, _ grpctrace.RPCInfo) {
		opentracing.SpanFromContext(ctx).LogFields(otlog.String("event", "decorated"))
	})
	opts := []grpctrace.Option{grpctrace.WithMessageEvents(), deco}
	cases := []struct {
		method string
		run    func(context.Context, testpb.TestServiceClient) error
	}{
		{"Unary", func(ctx context.Context, c testpb.TestServiceClient) error {
			_, err := c.Unary(ctx, &testpb.Request{FailCode: int32(codes.Internal), FailMessage: "broken"})
			return err
		}},
		{"ServerStream", func(ctx context.Context, c testpb.TestServiceClient) error {
			_, err := runServerStream(ctx, c, &testpb.Request{ResponseCount: 3, FailAfter: 1, FailCode: int32(codes.Internal), FailMessage: "mid-stream"})
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.method, func(t *testing.T) {
			e := newEnv(t, setup{instrument: viaHandlers, serverOpts: opts, clientOpts: opts})
			if err := tc.run(context.Background(), e.client); status.Code(err) != codes.Internal {
				t.Fatalf("got %v, want Internal", err)
			}
			e.tracer.waitSettled(t)
			for _, kind := range []string{"client", "server"} {
				s := e.tracer.span(t, "/"+service+"/"+tc.method, kind)
				events := map[string]bool{}
				for _, l := range s.Logs() {
					for _, f := range l.Fields {
						if f.Key == "event" {
							events[f.ValueString] = true
						}
					}
					if l.Timestamp.After(s.FinishTime) {
						t.Errorf("%s span: log %v stamped %v after the finish", kind, l.Fields, l.Timestamp.Sub(s.FinishTime))
					}
				}
				for _, ev := range []string{"message", "error", "decorated"} {
					if !events[ev] {
						t.Errorf("%s span has no %q log; logs: %v", kind, ev, s.Logs())
					}
				}
			}
		})
	}
}

const injectPanic = "inject exploded"

// panickingInject is the recorder with an Inject that panics, as a buggy
// tracer might.
type panickingInject struct{ *recorder }

func (panickingInject) Inject(opentracing.SpanContext, any, any) error { panic(injectPanic) }

// TestInjectPanicRecovered: a client traced through a tracer whose Inject
// panics, in every install mode (interceptors, the client stats handler,
// both), makes unary and streaming RPCs. The panic must not reach the
// caller: the RPC proceeds and succeeds, every client span finishes, and
// each logs an event for the failed injection.
func TestInjectPanicRecovered(t *testing.T) {
	for _, instrument := range instruments {
		for _, shape := range []string{"Unary", "ServerStream"} {
			t.Run(instrument+"/"+shape, func(t *testing.T) {
				r := newRecorder()
				e := newEnv(t, setup{
					instrument:      instrument,
					useGlobalTracer: true,
					untracedSide:    "server",
					clientOpts:      []grpctrace.Option{grpctrace.WithTracer(panickingInject{r})},
				})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var p any
				var err error
				func() {
					defer func() { p = recover() }()
					if shape == "Unary" {
						_, err = e.client.Unary(ctx, &testpb.Request{})
					} else {
						var n int
						if n, err = runServerStream(ctx, e.client, &testpb.Request{ResponseCount: 2}); err == nil && n != 2 {
							err = fmt.Errorf("received %d responses, want 2", n)
						}
					}
				}()
				if p != nil {
					t.Fatalf("the tracer's panic reached the caller: %v", p)
				}
				if err != nil {
					t.Fatalf("RPC failed: %v", err)
				}
				r.waitSettled(t)
				spans := finishedByKind(r, "client")
				want := map[string]int{viaInterceptors: 1, viaHandlers: 1, viaBoth: 2}[instrument]
				if len(spans) != want {
					t.Fatalf("%d client spans, want %d", len(spans), want)
				}
				for _, s := range spans {
					logged := false
					for _, l := range s.Logs() {
						for _, f := range l.Fields {
							logged = logged || f.Key == "event" && f.ValueString == "span context injection failed"
						}
					}
					if !logged {
						t.Errorf("client span %v logs no event for the failed injection", s.Tags())
					}
				}
			})
		}
	}
}

// TestCallerMetadataUntouchedAllModes extends TestCallerMetadataUntouched
// to streams and to the stats handlers: in every install mode, for unary,
// server-streaming and bidi RPCs, the caller's outgoing metadata is not
// modified, and the server receives the caller's key and one span context.
func TestCallerMetadataUntouchedAllModes(t *testing.T) {
	shapes := map[string]func(context.Context, testpb.TestServiceClient) error{
		"Unary": func(ctx context.Context, c testpb.TestServiceClient) error {
			_, err := c.Unary(ctx, &testpb.Request{})
			return err
		},
		"ServerStream": func(ctx context.Context, c testpb.TestServiceClient) error {
			_, err := runServerStream(ctx, c, &testpb.Request{})
			return err
		},
		"Bidi": func(ctx context.Context, c testpb.TestServiceClient) error {
			s, err := c.Bidi(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&testpb.Request{}); err != nil {
				return err
			}
			if err := s.CloseSend(); err != nil {
				return err
			}
			if _, err := recvAll[testpb.Response](s); err != io.EOF {
				return err
			}
			return nil
		},
	}
	for _, instrument := range instruments {
		for _, shape := range []string{"Unary", "ServerStream", "Bidi"} {
			t.Run(instrument+"/"+shape, func(t *testing.T) {
				var p probe
				e := newEnv(t, p.setup(setup{instrument: instrument}))
				md := metadata.Pairs("user-key", "v")
				ctx := metadata.NewOutgoingContext(context.Background(), md)
				if err := shapes[shape](ctx, e.client); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(metadata.Pairs("user-key", "v"), md); diff != "" {
					t.Errorf("caller's metadata changed (-want +got):\n%s", diff)
				}
				got := p.only(t).MD
				if v := got.Get("user-key"); len(v) != 1 || v[0] != "v" || len(got.Get("mockpfx-ids-traceid")) != 1 {
					t.Errorf("server metadata %v lacks the caller's key or one span context", got)
				}
				e.tracer.waitSettled(t)
			})
		}
	}
}

// TestStreamRetry has gRPC retry a server-streaming call (a retry policy
// for that method in the service config) whose first attempt the server
// refuses with Unavailable before sending anything. With grpctrace on the
// client, in every install mode, the retry must still happen: the server
// sees two attempts and the call succeeds. (Calling ClientStream.Context
// before Header or RecvMsg would commit the first attempt and forbid it.)
func TestStreamRetry(t *testing.T) {
	const retryPolicy = `{"methodConfig": [{
		"name": [{"service": "grpctrace.testpb.TestService", "method": "ServerStream"}],
		"retryPolicy": {
			"maxAttempts": 2, "initialBackoff": "0.001s", "maxBackoff": "0.001s",
			"backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]
		}
	}]}`
	for _, instrument := range instruments {
		t.Run(instrument, func(t *testing.T) {
			var attempts atomic.Int32
			failFirst := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				if attempts.Add(1) == 1 {
					return status.Error(codes.Unavailable, "try again")
				}
				return h(srv, ss)
			}
			e := newEnv(t, setup{
				instrument:  instrument,
				outerStream: []grpc.StreamServerInterceptor{failFirst},
				dialOpts:    []grpc.DialOption{grpc.WithDefaultServiceConfig(retryPolicy)},
			})
			n, err := runServerStream(context.Background(), e.client, &testpb.Request{ResponseCount: 2})
			if err != nil {
				t.Fatalf("retried stream failed: %v (server saw %d attempts)", err, attempts.Load())
			}
			if n != 2 {
				t.Errorf("received %d responses, want 2", n)
			}
			if got := attempts.Load(); got != 2 {
				t.Errorf("server saw %d attempts, want 2", got)
			}
			e.tracer.waitSettled(t)
		})
	}
}

// timesLog records the begin and end times gRPC reports for each side.
type timesLog struct {
	mu         sync.Mutex
	begin, end map[string][]time.Time // by side: "client", "server"
	// ended receives once per End handed on.
	ended chan struct{}
}

// rpcTimes is a stats.Handler of the test's own that wraps grpctrace's: it
// records the begin and end times of the very events gRPC hands it (gRPC
// releases before 1.8x give each handler an event, and a time, of its
// own), then hands them on.
type rpcTimes struct {
	*timesLog
	inner stats.Handler
}

// waitEnds waits for n Ends to have been recorded.
func (h *timesLog) waitEnds(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case <-h.ended:
		case <-timeout:
			t.Fatalf("gRPC reported fewer than %d ends", n)
		}
	}
}

func sideOf(client bool) string {
	if client {
		return "client"
	}
	return "server"
}

func (h *rpcTimes) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return h.inner.TagRPC(ctx, info)
}

func (h *rpcTimes) HandleRPC(ctx context.Context, s stats.RPCStats) {
	h.mu.Lock()
	switch s := s.(type) {
	case *stats.Begin:
		h.begin[sideOf(s.Client)] = append(h.begin[sideOf(s.Client)], s.BeginTime)
	case *stats.End:
		h.end[sideOf(s.Client)] = append(h.end[sideOf(s.Client)], s.EndTime)
	}
	h.mu.Unlock()
	h.inner.HandleRPC(ctx, s)
	if _, ok := s.(*stats.End); ok {
		h.ended <- struct{}{}
	}
}

func (h *rpcTimes) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	return h.inner.TagConn(ctx, info)
}

func (h *rpcTimes) HandleConn(ctx context.Context, s stats.ConnStats) { h.inner.HandleConn(ctx, s) }

// TestHandlerSpanTimesAreGRPCs: with the stats handlers only, no decorator,
// and an RPC that succeeds, the spans' times are gRPC's. Both the client
// and the server span finish exactly at stats.End's EndTime. The server
// span starts no later than stats.Begin's BeginTime: it is not required to
// equal it, since a span may be started as gRPC tags the RPC, just before
// the RPC begins. The client span's start is not checked: gRPC takes the
// client's BeginTime just before calling TagRPC, where the client handler
// must start the span (to inject its context before the headers go), so
// that span starts a little after BeginTime.
func TestHandlerSpanTimesAreGRPCs(t *testing.T) {
	for _, method := range []string{"Unary", "ServerStream"} {
		t.Run(method, func(t *testing.T) {
			tracer := newRecorder()
			times := &timesLog{begin: map[string][]time.Time{}, end: map[string][]time.Time{}, ended: make(chan struct{}, 8)}
			lis := bufconn.Listen(1 << 20)
			srv := grpc.NewServer(
				grpc.StatsHandler(&rpcTimes{times, grpctrace.NewServerHandler(grpctrace.WithTracer(tracer))}),
			)
			testpb.RegisterTestServiceServer(srv, testpb.NewServer())
			served := make(chan struct{})
			go func() {
				defer close(served)
				_ = srv.Serve(lis)
			}()
			conn, err := grpc.NewClient("passthrough:///bufnet",
				grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithStatsHandler(&rpcTimes{times, grpctrace.NewClientHandler(grpctrace.WithTracer(tracer))}),
			)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				conn.Close()
				srv.Stop()
				<-served
			}()
			client := testpb.NewTestServiceClient(conn)
			if method == "Unary" {
				_, err = client.Unary(context.Background(), &testpb.Request{})
			} else {
				_, err = runServerStream(context.Background(), client, &testpb.Request{ResponseCount: 2})
			}
			if err != nil {
				t.Fatal(err)
			}
			tracer.waitSettled(t)
			times.waitEnds(t, 2)
			for _, side := range []string{"client", "server"} {
				span := tracer.span(t, "/"+service+"/"+method, side)
				times.mu.Lock()
				begins, ends := times.begin[side], times.end[side]
				times.mu.Unlock()
				if len(begins) != 1 || len(ends) != 1 {
					t.Fatalf("%s: gRPC reported %d begins and %d ends, want 1 each", side, len(begins), len(ends))
				}
				if side == "server" && span.StartTime.After(begins[0]) {
					t.Errorf("%s span starts %v after gRPC's BeginTime", side, span.StartTime.Sub(begins[0]))
				}
				if !span.FinishTime.Equal(ends[0]) {
					t.Errorf("%s span finishes at %v, want gRPC's EndTime %v (off by %v)",
						side, span.FinishTime, ends[0], span.FinishTime.Sub(ends[0]))
				}
			}
		})
	}
}

package grpctrace_test

// The OpenTelemetry path (WithTracerProvider): the same constructors,
// recording through the OpenTelemetry API into otelTP, with spans as
// otelgrpc writes them.

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	oteltracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// otelScope is the instrumentation scope grpctrace's tracer must have.
const otelScope = "github.com/c2e00e20/grpctrace"

// otelProp is W3C trace context and baggage, what the tests propagate
// with.
var otelProp = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// otelEnv is a client and a server connected over bufconn, traced with
// grpctrace's OpenTelemetry path into one otelTP.
type otelEnv struct {
	tp     *otelTP
	client testpb.TestServiceClient
	conn   *grpc.ClientConn
}

type otelSetup struct {
	// instrument: viaInterceptors (the default), viaHandlers or viaBoth,
	// on both sides.
	instrument             string
	clientOpts, serverOpts []grpctrace.Option
	// inner interceptors run after grpctrace and the recovery interceptor
	// on the server.
	innerUnary  []grpc.UnaryServerInterceptor
	innerStream []grpc.StreamServerInterceptor
	// clientTP, serverTP replace the env's provider on one side.
	clientTP, serverTP trace.TracerProvider
	untracedClient     bool
}

func newOTelEnv(t testing.TB, s otelSetup) *otelEnv {
	t.Helper()
	tp := newOTelTP()
	if s.instrument == "" {
		s.instrument = viaInterceptors
	}
	opts := func(sideTP trace.TracerProvider, own []grpctrace.Option) []grpctrace.Option {
		if sideTP == nil {
			sideTP = tp
		}
		return append(slices.Clone(own), grpctrace.WithTracerProvider(sideTP), grpctrace.WithPropagators(otelProp))
	}
	serverOpts := opts(s.serverTP, s.serverOpts)
	clientOpts := opts(s.clientTP, s.clientOpts)

	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	var srvOpts []grpc.ServerOption
	if s.instrument != viaHandlers {
		unary = append(unary, grpctrace.UnaryServerInterceptor(serverOpts...))
		stream = append(stream, grpctrace.StreamServerInterceptor(serverOpts...))
	}
	if s.instrument != viaInterceptors {
		srvOpts = append(srvOpts, grpc.StatsHandler(grpctrace.NewServerHandler(serverOpts...)))
	}
	unary = append(unary, recovery.UnaryServerInterceptor(recovery.WithRecoveryHandler(recoverToInternal)))
	stream = append(stream, recovery.StreamServerInterceptor(recovery.WithRecoveryHandler(recoverToInternal)))
	unary = append(unary, s.innerUnary...)
	stream = append(stream, s.innerStream...)

	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(append(srvOpts, grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...))...)
	testpb.RegisterTestServiceServer(srv, testpb.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()

	dial := []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}
	if !s.untracedClient && s.instrument != viaHandlers {
		dial = append(dial,
			grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(clientOpts...)),
			grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(clientOpts...)))
	}
	if !s.untracedClient && s.instrument != viaInterceptors {
		dial = append(dial, grpc.WithStatsHandler(grpctrace.NewClientHandler(clientOpts...)))
	}
	conn, err := grpc.NewClient("passthrough:///bufnet", dial...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		<-served
	})
	return &otelEnv{tp: tp, client: testpb.NewTestServiceClient(conn), conn: conn}
}

// rootContext starts the test's own span, "test", parent of the RPC's
// client span.
func (e *otelEnv) rootContext(ctx context.Context) (context.Context, trace.Span) {
	return e.tp.Tracer("test").Start(ctx, "test")
}

// Expected spans, written from the spec: otelgrpc's names and attributes.

// otelRPC is the span of method on one side ("client" or "server") that
// ended with the status code named code, its span status unset. The
// client interceptor names the server by the target it dialled
// (passthrough:///bufnet: bufnet, no port), the server by its own address
// (bufconn's, no port).
func otelRPC(kind, method, code string) node {
	addr := "bufconn"
	if kind == "client" {
		addr = "bufnet"
	}
	return node{
		Name: service + "/" + method,
		Tags: map[string]any{
			"span.kind":                kind,
			"rpc.system.name":          "grpc",
			"rpc.method":               service + "/" + method,
			"server.address":           addr,
			"rpc.response.status_code": code,
		},
	}
}

// otelErr sets the span status Error with the description.
func (n node) otelErr(description string) node {
	n.Tags = maps.Clone(n.Tags)
	n.Tags["otel.status_code"] = "Error"
	n.Tags["otel.status_description"] = description
	return n
}

// otelAsInstalled turns a tree expected from the interceptors into the one
// expected from another instrument: the stats handler's client span is an
// attempt, naming the address it went to (bufconn's); with both, it is the
// child of the interceptor's call span and numbered; the server handler
// does not see the client's half-close.
func otelAsInstalled(want []node, instrument string) []node {
	if instrument == viaInterceptors {
		return want
	}
	out := make([]node, len(want))
	for i, n := range want {
		out[i] = n.otelInstalled(instrument)
	}
	return out
}

func (n node) otelInstalled(instrument string) node {
	n.Tags = maps.Clone(n.Tags)
	if n.Tags["span.kind"] == "server" {
		n.Logs = slices.DeleteFunc(slices.Clone(n.Logs), func(l map[string]string) bool { return l["event"] == "client half-close" })
	}
	children := make([]node, len(n.Children))
	for i, c := range n.Children {
		children[i] = c.otelInstalled(instrument)
	}
	n.Children = children
	if n.Tags["span.kind"] != "client" {
		return n
	}
	attempt := n
	attempt.Tags = maps.Clone(n.Tags)
	attempt.Tags["server.address"] = "bufconn"
	delete(attempt.Tags, "server.port")
	if instrument == viaHandlers {
		return attempt
	}
	attempt.Tags["grpc.attempt"] = int64(1)
	n.Children = []node{attempt}
	return n
}

func otelFindKind(nodes []node, kind string) *node {
	for i := range nodes {
		if nodes[i].Tags["span.kind"] == kind {
			return &nodes[i]
		}
		if n := otelFindKind(nodes[i].Children, kind); n != nil {
			return n
		}
	}
	return nil
}

// checkScope fails the test unless every span but the test's own came
// from grpctrace's tracer.
func (p *otelTP) checkScope(t testing.TB) {
	t.Helper()
	for _, s := range p.snapshot() {
		if s.Name != "test" && s.Scope != otelScope {
			t.Errorf("span %q from tracer %q, want %q", s.Name, s.Scope, otelScope)
		}
	}
}

// otelCase is one RPC shape with one outcome.
type otelCase struct {
	name string
	// run performs the RPC under ctx and returns the error the caller saw.
	run      func(t *testing.T, ctx context.Context, cancel context.CancelFunc, c testpb.TestServiceClient) error
	want     []node
	wantCode codes.Code
	// serverMayBeCanceled: the server may see the client's cancellation
	// before its own deadline and end CANCELLED; ignoreServerLogs: the
	// server's events depend on where the handler noticed the end.
	serverMayBeCanceled, ignoreServerLogs bool
	// clientMsgFromErr: the status message is gRPC's choice; the client
	// span must hold the one the caller saw.
	clientMsgFromErr bool
	slow             bool
}

// TestOTelShapesAndOutcomes runs the RPC shapes through their outcomes on
// the OpenTelemetry path, in every install mode, and compares the whole
// tree: the test's span, the client span, the server span.
func TestOTelShapesAndOutcomes(t *testing.T) {
	const panicMsg = "panic: " + testpb.PanicValue
	cases := []otelCase{
		{
			name: "unary ok",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				resp, err := c.Unary(ctx, &testpb.Request{Value: "hi"})
				if err == nil && resp.GetValue() != "hi" {
					t.Errorf("reply %q, want hi", resp.GetValue())
				}
				return err
			},
			want: root(otelRPC("client", "Unary", "OK").with(otelRPC("server", "Unary", "OK"))),
		},
		{
			name: "unary client error",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				_, err := c.Unary(ctx, &testpb.Request{FailCode: int32(codes.NotFound), FailMessage: "no such thing"})
				return err
			},
			wantCode: codes.NotFound,
			// NotFound is the caller's problem: an error for the client,
			// not for the server.
			want: root(otelRPC("client", "Unary", "NOT_FOUND").otelErr("no such thing").
				with(otelRPC("server", "Unary", "NOT_FOUND"))),
		},
		{
			name: "unary server error",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				_, err := c.Unary(ctx, &testpb.Request{FailCode: int32(codes.Internal), FailMessage: "broken"})
				return err
			},
			wantCode: codes.Internal,
			want: root(otelRPC("client", "Unary", "INTERNAL").otelErr("broken").
				with(otelRPC("server", "Unary", "INTERNAL").otelErr("broken"))),
		},
		{
			name: "unary panic recovered inside",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				_, err := c.Unary(ctx, &testpb.Request{Panic: true})
				return err
			},
			wantCode: codes.Internal,
			want: root(otelRPC("client", "Unary", "INTERNAL").otelErr(panicMsg).
				with(otelRPC("server", "Unary", "INTERNAL").otelErr(panicMsg))),
		},
		{
			name: "unary deadline exceeded",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				// The handler waits until its context is done: the
				// deadline passes while it waits, once the RPC has reached
				// the server; a second is ample for that (see
				// TestShapesAndOutcomes).
				ctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				_, err := c.Unary(ctx, &testpb.Request{SleepMs: 60_000})
				return err
			},
			slow:                true,
			wantCode:            codes.DeadlineExceeded,
			serverMayBeCanceled: true,
			clientMsgFromErr:    true,
			want: root(otelRPC("client", "Unary", "DEADLINE_EXCEEDED").otelErr("context deadline exceeded").
				with(otelRPC("server", "Unary", "DEADLINE_EXCEEDED").otelErr("context deadline exceeded"))),
		},
		{
			name: "server stream read to EOF",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				s, err := c.ServerStream(ctx, &testpb.Request{Value: "x", ResponseCount: 3})
				if err != nil {
					return err
				}
				n, err := recvAll[testpb.Response](s)
				if n != 3 {
					t.Errorf("received %d responses, want 3", n)
				}
				if err != io.EOF {
					t.Errorf("stream ended with %v, want io.EOF itself", err)
					return err
				}
				return nil
			},
			want: root(otelRPC("client", "ServerStream", "OK").with(otelRPC("server", "ServerStream", "OK"))),
		},
		{
			name: "server error mid-stream",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				s, err := c.ServerStream(ctx, &testpb.Request{ResponseCount: 5, FailAfter: 2, FailCode: int32(codes.Internal), FailMessage: "mid-stream"})
				if err != nil {
					return err
				}
				n, err := recvAll[testpb.Response](s)
				if n != 2 {
					t.Errorf("received %d responses, want 2", n)
				}
				return err
			},
			wantCode: codes.Internal,
			want: root(otelRPC("client", "ServerStream", "INTERNAL").otelErr("mid-stream").
				with(otelRPC("server", "ServerStream", "INTERNAL").otelErr("mid-stream"))),
		},
		{
			name: "client stream CloseAndRecv",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				s, err := c.ClientStream(ctx)
				if err != nil {
					return err
				}
				for _, v := range []string{"a", "b", "c"} {
					if err := s.Send(&testpb.Request{Value: v}); err != nil {
						return err
					}
				}
				resp, err := s.CloseAndRecv()
				if err == nil && (resp.GetValue() != "a,b,c" || resp.GetSeq() != 3) {
					t.Errorf("reply %v, want a,b,c and 3", resp)
				}
				return err
			},
			want: root(otelRPC("client", "ClientStream", "OK").
				with(otelRPC("server", "ClientStream", "OK").logged(event("client half-close")))),
		},
		{
			name: "client stream rejected",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				s, err := c.ClientStream(ctx)
				if err != nil {
					return err
				}
				if err := s.Send(&testpb.Request{FailCode: int32(codes.InvalidArgument), FailMessage: "bad item"}); err != nil {
					return err
				}
				_, err = s.CloseAndRecv()
				return err
			},
			wantCode: codes.InvalidArgument,
			want: root(otelRPC("client", "ClientStream", "INVALID_ARGUMENT").otelErr("bad item").
				with(otelRPC("server", "ClientStream", "INVALID_ARGUMENT"))),
		},
		{
			name: "bidi CloseSend and drain",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				s, err := c.Bidi(ctx)
				if err != nil {
					return err
				}
				for _, v := range []string{"a", "b"} {
					if err := s.Send(&testpb.Request{Value: v}); err != nil {
						return err
					}
					if _, err := s.Recv(); err != nil {
						return err
					}
				}
				if err := s.CloseSend(); err != nil {
					return err
				}
				if n, err := recvAll[testpb.Response](s); err != io.EOF || n != 0 {
					t.Errorf("drain got %d messages and %v, want 0 and io.EOF", n, err)
				}
				return nil
			},
			want: root(otelRPC("client", "Bidi", "OK").
				with(otelRPC("server", "Bidi", "OK").logged(event("client half-close")))),
		},
		{
			name: "bidi client cancels mid-stream",
			run: func(t *testing.T, ctx context.Context, cancel context.CancelFunc, c testpb.TestServiceClient) error {
				s, err := c.Bidi(ctx)
				if err != nil {
					return err
				}
				if err := s.Send(&testpb.Request{Value: "a"}); err != nil {
					return err
				}
				if _, err := s.Recv(); err != nil {
					return err
				}
				cancel()
				_, err = s.Recv()
				return err
			},
			wantCode: codes.Canceled,
			// Cancelled is no server failure: status unset there.
			want: root(otelRPC("client", "Bidi", "CANCELLED").otelErr("context canceled").
				with(otelRPC("server", "Bidi", "CANCELLED"))),
			ignoreServerLogs: true,
		},
	}
	for _, instrument := range instruments {
		for _, tc := range cases {
			t.Run(instrument+"/"+tc.name, func(t *testing.T) {
				if tc.slow {
					t.Parallel()
				}
				runOTelCase(t, instrument, tc)
			})
		}
	}
}

func runOTelCase(t *testing.T, instrument string, tc otelCase) {
	e := newOTelEnv(t, otelSetup{instrument: instrument})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx, rootSpan := e.rootContext(ctx)
	err := tc.run(t, ctx, cancel, e.client)
	if got := status.Code(err); got != tc.wantCode {
		t.Fatalf("RPC ended with %v, want code %v", err, tc.wantCode)
	}
	rootSpan.End()
	e.tp.waitSettled(t)
	e.tp.checkLineage(t)
	e.tp.checkScope(t)

	got := e.tp.tree()
	want := cloneTrees(tc.want)
	client := &want[0].Children[0]
	if tc.clientMsgFromErr {
		client.Tags["otel.status_description"] = status.Convert(err).Message()
	}
	if server := otelFindKind(got, "server"); server != nil {
		if tc.serverMayBeCanceled && server.Tags["rpc.response.status_code"] == "CANCELLED" {
			method := strings.TrimPrefix(client.Tags["rpc.method"].(string), service+"/")
			client.Children = []node{otelRPC("server", method, "CANCELLED")}
			server.Logs = nil
		}
		if tc.ignoreServerLogs {
			server.Logs = nil
		}
	}
	diffTrees(t, otelAsInstalled(want, instrument), got)
}

// otelProbe is an innermost server interceptor that records what the
// handler finds in its context.
type otelProbe struct {
	mu   sync.Mutex
	seen []otelSeen
}

type otelSeen struct {
	Span    trace.SpanContext
	Baggage map[string]string
	MD      metadata.MD
}

func (p *otelProbe) record(ctx context.Context) {
	s := otelSeen{Span: trace.SpanFromContext(ctx).SpanContext(), Baggage: map[string]string{}}
	for _, m := range baggage.FromContext(ctx).Members() {
		s.Baggage[m.Key()] = m.Value()
	}
	s.MD, _ = metadata.FromIncomingContext(ctx)
	p.mu.Lock()
	p.seen = append(p.seen, s)
	p.mu.Unlock()
}

func (p *otelProbe) setup(s otelSetup) otelSetup {
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

func (p *otelProbe) all() []otelSeen {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen)
}

func (p *otelProbe) only(t *testing.T) otelSeen {
	t.Helper()
	seen := p.all()
	if len(seen) != 1 {
		t.Fatalf("probe saw %d RPCs, want 1", len(seen))
	}
	return seen[0]
}

// withBaggage returns ctx carrying baggage of the given members, values
// taken raw.
func withBaggage(t *testing.T, ctx context.Context, kv ...string) context.Context {
	t.Helper()
	var members []baggage.Member
	for i := 0; i < len(kv); i += 2 {
		m, err := baggage.NewMemberRaw(kv[i], kv[i+1])
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, m)
	}
	b, err := baggage.New(members...)
	if err != nil {
		t.Fatal(err)
	}
	return baggage.ContextWithBaggage(ctx, b)
}

// TestOTelHandlerSeesSpanAndBaggage: in every install mode, unary and
// stream, the handler's context carries the server span
// (trace.SpanFromContext) and the caller's baggage (baggage.FromContext),
// which came over the wire as traceparent and baggage.
func TestOTelHandlerSeesSpanAndBaggage(t *testing.T) {
	for _, shape := range []string{"Unary", "ServerStream"} {
		t.Run(shape, func(t *testing.T) {
			forEachInstrument(t, func(t *testing.T, instrument string) {
				var p otelProbe
				e := newOTelEnv(t, p.setup(otelSetup{instrument: instrument}))
				ctx, rootSpan := e.rootContext(context.Background())
				ctx = withBaggage(t, ctx, "plain", "ascii", "emoji", "héllo ✓")
				if shape == "Unary" {
					callUnary(t, ctx, e.client, "v")
				} else {
					callServerStream(t, ctx, e.client, "v", 2)
				}
				rootSpan.End()
				e.tp.waitSettled(t)

				diffTrees(t, otelAsInstalled(root(otelRPC("client", shape, "OK").with(otelRPC("server", shape, "OK"))), instrument), e.tp.tree())
				server := e.tp.find(t, service+"/"+shape, trace.SpanKindServer)
				got := p.only(t)
				if !got.Span.IsValid() || got.Span.SpanID() != server.SpanContext.SpanID() || got.Span.TraceID() != server.SpanContext.TraceID() {
					t.Errorf("handler's span context %v/%v, want the server span's %v/%v",
						got.Span.TraceID(), got.Span.SpanID(), server.SpanContext.TraceID(), server.SpanContext.SpanID())
				}
				want := map[string]string{"plain": "ascii", "emoji": "héllo ✓"}
				if diff := cmp.Diff(want, got.Baggage); diff != "" {
					t.Errorf("handler's baggage (-want +got):\n%s", diff)
				}
				if len(got.MD.Get("traceparent")) != 1 || len(got.MD.Get("baggage")) != 1 {
					t.Errorf("server received metadata %v, want one traceparent and one baggage", got.MD)
				}
			})
		})
	}
}

// TestOTelFilter filters Unary out on both sides, on the client only and
// on the server only: a filtered side records nothing (the client sends
// no traceparent), and ServerStream is traced as usual.
func TestOTelFilter(t *testing.T) {
	var filtered sync.Map
	noUnary := grpctrace.WithFilter(func(_ context.Context, m string) bool {
		filtered.Store(m, true)
		return m != unaryMethod
	})
	streamTree := otelRPC("client", "ServerStream", "OK").with(otelRPC("server", "ServerStream", "OK"))
	cases := []struct {
		name            string
		client, server  []grpctrace.Option
		want            []node
		unaryServerSpan bool // the Unary handler's context carries a span
		unaryPropagated bool // the Unary's metadata carries a traceparent
	}{
		{
			name:   "both sides",
			client: []grpctrace.Option{noUnary}, server: []grpctrace.Option{noUnary},
			want: root(streamTree),
		},
		{
			// Nothing sent: the server's Unary span is a trace of its own.
			name:   "client only",
			client: []grpctrace.Option{noUnary},
			want:   append(root(streamTree), otelRPC("server", "Unary", "OK")),

			unaryServerSpan: true,
		},
		{
			name:   "server only",
			server: []grpctrace.Option{noUnary},
			want:   root(otelRPC("client", "Unary", "OK"), streamTree),

			unaryPropagated: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachInstrument(t, func(t *testing.T, instrument string) {
				var p otelProbe
				e := newOTelEnv(t, p.setup(otelSetup{instrument: instrument, clientOpts: tc.client, serverOpts: tc.server}))
				ctx, rootSpan := e.rootContext(context.Background())
				callUnary(t, ctx, e.client, "u")
				callServerStream(t, ctx, e.client, "s", 2)
				rootSpan.End()
				e.tp.waitSettled(t)
				diffTrees(t, otelAsInstalled(tc.want, instrument), e.tp.tree())

				seen := p.all()
				if len(seen) != 2 {
					t.Fatalf("handlers saw %d RPCs, want 2", len(seen))
				}
				unary, stream := seen[0], seen[1]
				if unary.Span.IsValid() != tc.unaryServerSpan {
					t.Errorf("Unary handler's context carries a span: %v, want %v", unary.Span.IsValid(), tc.unaryServerSpan)
				}
				if got := len(unary.MD.Get("traceparent")) == 1; got != tc.unaryPropagated {
					t.Errorf("Unary's metadata carries a traceparent: %v, want %v (metadata %v)", got, tc.unaryPropagated, unary.MD)
				}
				if !stream.Span.IsValid() || len(stream.MD.Get("traceparent")) != 1 {
					t.Errorf("ServerStream handler saw span %v, metadata %v; want a span and a traceparent", stream.Span, stream.MD)
				}
			})
		})
	}
	for _, m := range []string{unaryMethod, serverStreamMethod} {
		if _, ok := filtered.Load(m); !ok {
			t.Errorf("the filter was never asked about %s", m)
		}
	}
}

// TestOTelOperationName replaces span names on both sides, in every mode;
// rpc.method still names the method.
func TestOTelOperationName(t *testing.T) {
	forEachInstrument(t, func(t *testing.T, instrument string) {
		naming := func(side string) grpctrace.Option {
			return grpctrace.WithOperationName(func(m string) string {
				return side + " op " + m[strings.LastIndexByte(m, '/')+1:]
			})
		}
		e := newOTelEnv(t, otelSetup{
			instrument: instrument,
			clientOpts: []grpctrace.Option{naming("client")},
			serverOpts: []grpctrace.Option{naming("server")},
		})
		ctx, rootSpan := e.rootContext(context.Background())
		callUnary(t, ctx, e.client, "u")
		callServerStream(t, ctx, e.client, "s", 1)
		rootSpan.End()
		e.tp.waitSettled(t)
		want := root(
			otelRPC("client", "Unary", "OK").named("client op Unary").
				with(otelRPC("server", "Unary", "OK").named("server op Unary")),
			otelRPC("client", "ServerStream", "OK").named("client op ServerStream").
				with(otelRPC("server", "ServerStream", "OK").named("server op ServerStream")),
		)
		diffTrees(t, otelAsInstalled(want, instrument), e.tp.tree())
	})
}

// TestOTelSpanDecorator: the decorator finds the span it decorates with
// trace.SpanFromContext, still recording, and its attribute lands on it
// before it ends; it gets the RPC's outcome.
func TestOTelSpanDecorator(t *testing.T) {
	forEachInstrument(t, func(t *testing.T, instrument string) {
		var mu sync.Mutex
		var infos []grpctrace.RPCInfo
		decorated := map[trace.SpanID]bool{}
		deco := grpctrace.WithSpanDecorator(func(ctx context.Context, rpc grpctrace.RPCInfo) {
			span := trace.SpanFromContext(ctx)
			if !span.SpanContext().IsValid() || !span.IsRecording() {
				t.Errorf("decorator's context carries span %v, recording %v; want the RPC's", span.SpanContext(), span.IsRecording())
				return
			}
			span.SetAttributes(attribute.Bool("decorated", rpc.Client))
			mu.Lock()
			infos = append(infos, rpc)
			decorated[span.SpanContext().SpanID()] = true
			mu.Unlock()
		})
		e := newOTelEnv(t, otelSetup{instrument: instrument, clientOpts: []grpctrace.Option{deco}, serverOpts: []grpctrace.Option{deco}})
		req := &testpb.Request{FailCode: int32(codes.NotFound), FailMessage: "nf"}
		_, rpcErr := e.client.Unary(context.Background(), req)
		if status.Code(rpcErr) != codes.NotFound {
			t.Fatalf("Unary returned %v, want NotFound", rpcErr)
		}
		e.tp.waitSettled(t)
		client := otelRPC("client", "Unary", "NOT_FOUND").otelErr("nf")
		server := otelRPC("server", "Unary", "NOT_FOUND")
		client.Tags["decorated"], server.Tags["decorated"] = true, false
		diffTrees(t, otelAsInstalled([]node{client.with(server)}, instrument), e.tp.tree())

		mu.Lock()
		defer mu.Unlock()
		want := map[string]int{viaInterceptors: 2, viaHandlers: 2, viaBoth: 3}[instrument]
		if len(infos) != want {
			t.Fatalf("decorator called %d times, want %d", len(infos), want)
		}
		for _, s := range e.tp.snapshot() {
			if !decorated[s.SpanContext.SpanID()] {
				t.Errorf("span %q (%v) was not the span of any decorator call", s.Name, s.Kind)
			}
		}
		for _, info := range infos {
			if info.FullMethod != unaryMethod || info.Code != codes.NotFound || info.Response != nil || status.Code(info.Err) != codes.NotFound {
				t.Errorf("decorator got %+v", info)
			}
			if m, ok := info.Request.(proto.Message); ok && !proto.Equal(m, req) || !ok && instrument == viaInterceptors {
				t.Errorf("decorator got request %v, want %v", info.Request, req)
			}
		}
		if last := infos[len(infos)-1]; instrument != viaHandlers && last.Err != rpcErr {
			t.Errorf("client decorator got error %v, not the one returned to the caller", last.Err)
		}
	})
}

// TestOTelMessageEventsAndPayloads logs messages as span events, with
// their sizes and payloads, a unary call and a bidi stream, in every mode.
// The interceptors measure the messages they pass on; the stats handlers
// log gRPC's measurements (compressed and wire sizes too) and, on the
// client, the arrival of header and trailer.
func TestOTelMessageEventsAndPayloads(t *testing.T) {
	opts := []grpctrace.Option{grpctrace.WithMessageEvents(), grpctrace.WithPayloadLogging()}
	forEachInstrument(t, func(t *testing.T, instrument string) {
		e := newOTelEnv(t, otelSetup{instrument: instrument, clientOpts: opts, serverOpts: opts})
		ctx, rootSpan := e.rootContext(context.Background())
		callUnary(t, ctx, e.client, "hi")
		s, err := e.client.Bidi(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"a", "bbbb"} {
			if err := s.Send(&testpb.Request{Value: v}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Recv(); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if n, err := recvAll[testpb.Response](s); n != 0 || err != io.EOF {
			t.Fatalf("drain got %d messages and %v, want 0 and io.EOF", n, err)
		}
		rootSpan.End()
		e.tp.waitSettled(t)

		// msg is a message event; handler adds gRPC's sizes: no
		// compressor, so the compressed size is the size, and the wire
		// adds gRPC's 5-byte frame prefix.
		// A message and its payload as logged, in the protobuf text format.
		type message struct {
			m    proto.Message
			text string
		}
		req := func(v string) message { return message{&testpb.Request{Value: v}, `value:"` + v + `"`} }
		resp := func(v string, seq int32) message {
			return message{&testpb.Response{Value: v, Seq: seq}, fmt.Sprintf(`value:"%s" seq:%d`, v, seq)}
		}
		msg := func(handler bool, dir string, id int, m message) map[string]string {
			size := proto.Size(m.m)
			l := map[string]string{
				"event": "message", "message.type": dir, "message.id": fmt.Sprint(id),
				"message.uncompressed_size": fmt.Sprint(size),
				"payload":                   m.text,
			}
			if handler {
				l["message.compressed_size"] = fmt.Sprint(size)
				l["message.wire_size"] = fmt.Sprint(size + 5)
			}
			return l
		}
		unaryClient := func(h bool) []map[string]string {
			l := []map[string]string{msg(h, "SENT", 1, req("hi")), msg(h, "RECEIVED", 1, resp("hi", 1))}
			if h {
				l = append(l, event("header received"), event("trailer received"))
			}
			return l
		}
		unaryServer := func(h bool) []map[string]string {
			return []map[string]string{msg(h, "RECEIVED", 1, req("hi")), msg(h, "SENT", 1, resp("hi", 1))}
		}
		bidiClient := func(h bool) []map[string]string {
			l := []map[string]string{
				msg(h, "SENT", 1, req("a")), msg(h, "RECEIVED", 1, resp("a", 1)),
				msg(h, "SENT", 2, req("bbbb")), msg(h, "RECEIVED", 2, resp("bbbb", 2)),
			}
			if h {
				return append(l, event("header received"), event("trailer received"))
			}
			return append(l, event("close send"))
		}
		bidiServer := func(h bool) []map[string]string {
			l := []map[string]string{
				msg(h, "RECEIVED", 1, req("a")), msg(h, "SENT", 1, resp("a", 1)),
				msg(h, "RECEIVED", 2, req("bbbb")), msg(h, "SENT", 2, resp("bbbb", 2)),
			}
			if h {
				return l
			}
			return append(l, event("client half-close"))
		}
		withLogs := func(n node, logs []map[string]string) node { n.Logs = logs; return n }
		attempt := func(n node) node {
			n.Tags = maps.Clone(n.Tags)
			n.Tags["server.address"] = "bufconn"
			if instrument == viaBoth {
				n.Tags["grpc.attempt"] = int64(1)
			}
			return n
		}
		var want []node
		for _, rpc := range []struct {
			method         string
			client, server func(bool) []map[string]string
		}{{"Unary", unaryClient, unaryServer}, {"Bidi", bidiClient, bidiServer}} {
			handler := instrument != viaInterceptors
			server := withLogs(otelRPC("server", rpc.method, "OK"), rpc.server(handler))
			call := withLogs(otelRPC("client", rpc.method, "OK"), rpc.client(false))
			switch instrument {
			case viaInterceptors:
				want = append(want, call.with(server))
			case viaHandlers:
				want = append(want, attempt(withLogs(otelRPC("client", rpc.method, "OK"), rpc.client(true))).with(server))
			case viaBoth:
				want = append(want, call.with(attempt(withLogs(otelRPC("client", rpc.method, "OK"), rpc.client(true))).with(server)))
			}
		}
		// The handlers' events come from gRPC's goroutines (the response
		// and the trailer from different ones): compared as sets, their
		// order carried by message.id.
		var cmpOpts []cmp.Option
		if instrument != viaInterceptors {
			cmpOpts = append(cmpOpts, cmpopts.SortSlices(func(a, b map[string]string) bool { return fmt.Sprint(a) < fmt.Sprint(b) }))
		}
		if diff := cmp.Diff(normalizePayloads(root(want...)), normalizePayloads(e.tp.tree()), append(cmpOpts, cmpopts.EquateEmpty())...); diff != "" {
			t.Errorf("span trees differ (-want +got):\n%s", diff)
		}
	})
}

// TestOTelParentRequired makes one RPC outside any trace, then one inside
// the test's, with WithParentRequired on either side or both, in every
// mode; the whole tree is compared at the end, so a span of the first RPC
// would show as an extra root.
func TestOTelParentRequired(t *testing.T) {
	required := []grpctrace.Option{grpctrace.WithParentRequired()}
	inside := root(otelRPC("client", "Unary", "OK").with(otelRPC("server", "Unary", "OK")))
	cases := []struct {
		name           string
		client, server []grpctrace.Option
		untracedClient bool
		want           func(instrument string) []node
	}{
		{
			name:   "both sides",
			client: required, server: required,
			want: func(instrument string) []node { return otelAsInstalled(inside, instrument) },
		},
		{
			// The client records and sends nothing; the server, free to,
			// starts a trace.
			name:   "client only",
			client: required,
			want: func(instrument string) []node {
				return append([]node{otelRPC("server", "Unary", "OK")}, otelAsInstalled(inside, instrument)...)
			},
		},
		{
			// Outside, nothing is sent; inside, the test sends its
			// span's context itself.
			name:   "server only, untraced client",
			server: required, untracedClient: true,
			want: func(string) []node { return root(otelRPC("server", "Unary", "OK")) },
		},
		{
			// A traced client sends its own span's context, root of a
			// trace when the caller has none: the server has a parent.
			name:   "server only, traced client",
			server: required,
			want: func(instrument string) []node {
				return append(otelAsInstalled([]node{otelRPC("client", "Unary", "OK").with(otelRPC("server", "Unary", "OK"))}, instrument),
					otelAsInstalled(inside, instrument)...)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachInstrument(t, func(t *testing.T, instrument string) {
				e := newOTelEnv(t, otelSetup{instrument: instrument, clientOpts: tc.client, serverOpts: tc.server, untracedClient: tc.untracedClient})
				callUnary(t, context.Background(), e.client, "outside")
				// A server span would start before the response: settled
				// now, nothing more of the first RPC comes.
				e.tp.waitSettled(t)
				ctx, rootSpan := e.rootContext(context.Background())
				if tc.untracedClient {
					md := metadata.MD{}
					otelProp.Inject(ctx, grpctrace.MetadataCarrier(md))
					ctx = metadata.NewOutgoingContext(ctx, md)
				}
				callUnary(t, ctx, e.client, "inside")
				rootSpan.End()
				e.tp.waitSettled(t)
				diffTrees(t, tc.want(instrument), e.tp.tree())
			})
		})
	}
}

// TestOTelPublicEndpoint: the server span of a public endpoint is a new
// root, linked to the span context the caller sent, and the handler does
// not get the caller's baggage.
func TestOTelPublicEndpoint(t *testing.T) {
	forEachInstrument(t, func(t *testing.T, instrument string) {
		var p otelProbe
		e := newOTelEnv(t, p.setup(otelSetup{instrument: instrument, serverOpts: []grpctrace.Option{grpctrace.WithPublicEndpoint()}}))
		ctx, rootSpan := e.rootContext(context.Background())
		ctx = withBaggage(t, ctx, "role", "admin")
		callUnary(t, ctx, e.client, "v")
		rootSpan.End()
		e.tp.waitSettled(t)

		// The caller's trace without the server span, and the server span
		// on its own.
		want := append(otelAsInstalled(root(otelRPC("client", "Unary", "OK")), instrument), otelRPC("server", "Unary", "OK"))
		diffTrees(t, want, e.tp.tree())

		// The client span that sent its context: the attempt, when the
		// handler is installed.
		var sender *otelSpanData
		for _, s := range e.tp.snapshot() {
			if s.Kind == trace.SpanKindClient && (instrument != viaBoth || s.Attrs["grpc.attempt"] != nil) {
				sender = &s
			}
		}
		if sender == nil {
			t.Fatal("no client span sent the span context")
		}
		server := e.tp.find(t, service+"/Unary", trace.SpanKindServer)
		if server.Parent.IsValid() {
			t.Errorf("server span has parent %v, want none (a new root)", server.Parent)
		}
		if server.SpanContext.TraceID() == sender.SpanContext.TraceID() {
			t.Errorf("server span is in the caller's trace %v", server.SpanContext.TraceID())
		}
		if len(server.Links) != 1 {
			t.Fatalf("server span has links %v, want one, to the caller's span", server.Links)
		}
		link := server.Links[0].SpanContext
		if link.TraceID() != sender.SpanContext.TraceID() || link.SpanID() != sender.SpanContext.SpanID() || !link.IsRemote() {
			t.Errorf("server span links %v/%v (remote %v), want the caller's %v/%v, remote",
				link.TraceID(), link.SpanID(), link.IsRemote(), sender.SpanContext.TraceID(), sender.SpanContext.SpanID())
		}
		seen := p.only(t)
		if seen.Span.SpanID() != server.SpanContext.SpanID() {
			t.Errorf("handler's span %v, want the server span %v", seen.Span.SpanID(), server.SpanContext.SpanID())
		}
		if len(seen.Baggage) != 0 {
			t.Errorf("handler got the caller's baggage %v, want none", seen.Baggage)
		}
		if len(seen.MD.Get("baggage")) != 1 {
			// The baggage was sent: it is the server that drops it.
			t.Errorf("server received metadata %v, want the caller's baggage header", seen.MD)
		}
	})
}

// TestOTelErrorClassifier makes NotFound an error and Internal not, on
// both sides, in every mode.
func TestOTelErrorClassifier(t *testing.T) {
	notFoundIsError := grpctrace.WithErrorClassifier(func(c codes.Code) bool { return c == codes.NotFound })
	forEachInstrument(t, func(t *testing.T, instrument string) {
		e := newOTelEnv(t, otelSetup{instrument: instrument, clientOpts: []grpctrace.Option{notFoundIsError}, serverOpts: []grpctrace.Option{notFoundIsError}})
		ctx, rootSpan := e.rootContext(context.Background())
		for _, code := range []codes.Code{codes.NotFound, codes.Internal} {
			if _, err := e.client.Unary(ctx, &testpb.Request{FailCode: int32(code), FailMessage: "m"}); status.Code(err) != code {
				t.Fatalf("got %v, want %v", err, code)
			}
		}
		rootSpan.End()
		e.tp.waitSettled(t)
		want := root(
			otelRPC("client", "Unary", "NOT_FOUND").otelErr("m").with(otelRPC("server", "Unary", "NOT_FOUND").otelErr("m")),
			otelRPC("client", "Unary", "INTERNAL").with(otelRPC("server", "Unary", "INTERNAL")),
		)
		diffTrees(t, otelAsInstalled(want, instrument), e.tp.tree())
	})
}

// TestOTelNoopProvider: a side given oteltracenoop.NewTracerProvider() records
// nothing and sends nothing, even under a caller's recording span and
// baggage; the other side goes on as without it.
func TestOTelNoopProvider(t *testing.T) {
	cases := []struct {
		name               string
		clientTP, serverTP trace.TracerProvider
		want               func(instrument string) []node
		handlerSpan        bool // the handler's context carries a span
	}{
		{
			name:     "both sides",
			clientTP: oteltracenoop.NewTracerProvider(), serverTP: oteltracenoop.NewTracerProvider(),
			want: func(string) []node { return root() },
		},
		{
			// Nothing sent: the server's spans are roots.
			name:     "client",
			clientTP: oteltracenoop.NewTracerProvider(),
			want: func(string) []node {
				return append(root(), otelRPC("server", "Unary", "OK"), otelRPC("server", "ServerStream", "OK"))
			},
			handlerSpan: true,
		},
		{
			name:     "server",
			serverTP: oteltracenoop.NewTracerProvider(),
			want: func(instrument string) []node {
				return otelAsInstalled(root(otelRPC("client", "Unary", "OK"), otelRPC("client", "ServerStream", "OK")), instrument)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachInstrument(t, func(t *testing.T, instrument string) {
				var p otelProbe
				e := newOTelEnv(t, p.setup(otelSetup{instrument: instrument, clientTP: tc.clientTP, serverTP: tc.serverTP}))
				ctx, rootSpan := e.rootContext(context.Background())
				ctx = withBaggage(t, ctx, "k", "v")
				callUnary(t, ctx, e.client, "u")
				callServerStream(t, ctx, e.client, "s", 1)
				rootSpan.End()
				e.tp.waitSettled(t)
				diffTrees(t, tc.want(instrument), e.tp.tree())
				seen := p.all()
				if len(seen) != 2 {
					t.Fatalf("handlers saw %d RPCs, want 2", len(seen))
				}
				for _, s := range seen {
					if tc.clientTP != nil && (len(s.MD.Get("traceparent")) != 0 || len(s.MD.Get("baggage")) != 0) {
						t.Errorf("server received metadata %v from a no-op client, want no traceparent or baggage", s.MD)
					}
					if s.Span.IsValid() != tc.handlerSpan {
						t.Errorf("handler's context carries span %v, want one: %v", s.Span, tc.handlerSpan)
					}
				}
			})
		})
	}
}

// TestOTelAbandonedStream drops a client stream that is neither read to
// its end nor cancelled: the GC cleanup must end its span, as an error.
func TestOTelAbandonedStream(t *testing.T) {
	e := newOTelEnv(t, otelSetup{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	abandonServerStream(t, ctx, e.client)
	collectUntil(func() bool { return e.tp.waitEnded(2, 100*time.Millisecond) })
	want := []node{
		otelRPC("client", "ServerStream", "UNKNOWN").otelErr("grpctrace: client stream abandoned: garbage collected before the RPC ended").
			with(otelRPC("server", "ServerStream", "OK")),
	}
	diffTrees(t, want, e.tp.tree())
	cancel()
	e.tp.waitSettled(t)
}

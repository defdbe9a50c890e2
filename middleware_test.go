package grpctrace_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const service = "grpctrace.testpb.TestService"

// env is a traced client and server connected over bufconn, both recording
// into one tracer.
type env struct {
	tracer *recorder
	client testpb.TestServiceClient
	conn   *grpc.ClientConn
}

type setup struct {
	serverOpts, clientOpts []grpctrace.Option
	// inner interceptors run after grpctrace on the server, outer ones
	// before it.
	innerUnary  []grpc.UnaryServerInterceptor
	innerStream []grpc.StreamServerInterceptor
	outerUnary  []grpc.UnaryServerInterceptor
	outerStream []grpc.StreamServerInterceptor
	// replace grpctrace's server interceptors (for chaining tests)
	serverUnary  grpc.UnaryServerInterceptor
	serverStream grpc.StreamServerInterceptor
	noRecovery   bool
	untracedSide string // "client" or "server": leave that side without grpctrace
	// instrument is how grpctrace is installed on both sides: interceptors
	// (the default), handlers (the stats handlers) or both.
	instrument string
	dialOpts   []grpc.DialOption
	// useGlobalTracer: do not pass the test's tracer to grpctrace.
	useGlobalTracer bool
	// serverTracer, when set, wraps the recorder for the server side.
	serverTracer func(*recorder) opentracing.Tracer
}

// recoverToInternal is the recovery interceptor most tests install inside
// grpctrace, so that a panicking handler becomes an Internal error.
func recoverToInternal(p any) error { return status.Errorf(codes.Internal, "panic: %v", p) }

func newEnv(t testing.TB, s setup) *env {
	t.Helper()
	tracer := newRecorder()
	withTracer := grpctrace.WithTracer(tracer)
	if s.useGlobalTracer {
		withTracer = nil
	}

	if s.instrument == "" {
		s.instrument = viaInterceptors
	}
	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	var srvOpts []grpc.ServerOption
	unary = append(unary, s.outerUnary...)
	stream = append(stream, s.outerStream...)
	if s.untracedSide != "server" {
		su, ss := s.serverUnary, s.serverStream
		serverTracer := withTracer
		if s.serverTracer != nil {
			serverTracer = grpctrace.WithTracer(s.serverTracer(tracer))
		}
		if su == nil {
			su = grpctrace.UnaryServerInterceptor(append(s.serverOpts, serverTracer)...)
		}
		if ss == nil {
			ss = grpctrace.StreamServerInterceptor(append(s.serverOpts, serverTracer)...)
		}
		if s.instrument != viaHandlers {
			unary = append(unary, su)
			stream = append(stream, ss)
		}
		if s.instrument != viaInterceptors {
			srvOpts = append(srvOpts, grpc.StatsHandler(grpctrace.NewServerHandler(append(s.serverOpts, serverTracer)...)))
		}
	}
	if !s.noRecovery {
		unary = append(unary, recovery.UnaryServerInterceptor(recovery.WithRecoveryHandler(recoverToInternal)))
		stream = append(stream, recovery.StreamServerInterceptor(recovery.WithRecoveryHandler(recoverToInternal)))
	}
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
	if s.untracedSide != "client" && s.instrument != viaHandlers {
		dial = append(dial,
			grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(append(s.clientOpts, withTracer)...)),
			grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(append(s.clientOpts, withTracer)...)),
		)
	}
	if s.untracedSide != "client" && s.instrument != viaInterceptors {
		dial = append(dial, grpc.WithStatsHandler(grpctrace.NewClientHandler(append(s.clientOpts, withTracer)...)))
	}
	dial = append(dial, s.dialOpts...)
	conn, err := grpc.NewClient("passthrough:///bufnet", dial...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		<-served
	})
	return &env{tracer: tracer, client: testpb.NewTestServiceClient(conn), conn: conn}
}

// The ways grpctrace can be installed.
const (
	viaInterceptors = "interceptors"
	viaHandlers     = "handlers"
	viaBoth         = "both"
)

var instruments = []string{viaInterceptors, viaHandlers, viaBoth}

// asInstalled turns a span tree expected from the interceptors into the one
// expected from another instrument, by the differences the stats handlers
// document: the client span of a handler is an attempt, tagged with the
// address it went to (bufconn's) rather than the dialled target; with both
// installed it is the child of the interceptor's call span and numbered;
// the server handler does not see the client's half-close.
func asInstalled(want []node, instrument string) []node {
	if instrument == viaInterceptors {
		return want
	}
	out := make([]node, len(want))
	for i, n := range want {
		out[i] = n.asInstalled(instrument)
	}
	return out
}

func (n node) asInstalled(instrument string) node {
	n.Tags = maps.Clone(n.Tags)
	n.Logs = slices.DeleteFunc(slices.Clone(n.Logs), func(l map[string]string) bool {
		return n.Tags["span.kind"] == ext.SpanKindRPCServerEnum && l["event"] == "client half-close"
	})
	children := make([]node, len(n.Children))
	for i, c := range n.Children {
		children[i] = c.asInstalled(instrument)
	}
	n.Children = children
	if n.Tags["span.kind"] != ext.SpanKindRPCClientEnum {
		return n
	}
	attempt := n
	attempt.Tags = maps.Clone(n.Tags)
	if _, ok := attempt.Tags["peer.address"]; ok {
		attempt.Tags["peer.address"] = "bufconn"
	}
	if instrument == viaHandlers {
		return attempt
	}
	attempt.Tags["grpc.attempt"] = int32(1)
	n.Children = []node{attempt}
	return n
}

// rootContext starts the test's own span, parent of the RPC's client span.
func (e *env) rootContext(ctx context.Context) (context.Context, opentracing.Span) {
	root := e.tracer.StartSpan("test")
	return opentracing.ContextWithSpan(ctx, root), root
}

// Expected spans, written from the tag conventions grpctrace documents.

// rpcSpan is a span with the tags every RPC gets. The peer is the other
// side: the client names the target it dialled, the server sees the
// connection's address.
func rpcSpan(kind ext.SpanKindEnum, method string, code codes.Code) node {
	peer := "bufconn"
	if kind == ext.SpanKindRPCClientEnum {
		peer = "bufnet"
	}
	return node{
		Name: "/" + service + "/" + method,
		Tags: map[string]any{
			"component":            "gRPC",
			"span.kind":            kind,
			"rpc.system":           "grpc",
			"rpc.service":          service,
			"rpc.method":           method,
			"rpc.grpc.status_code": uint32(code),
			"peer.address":         peer,
		},
	}
}

func clientSpan(method string, code codes.Code, msg string) node {
	n := rpcSpan(ext.SpanKindRPCClientEnum, method, code)
	if code != codes.OK {
		n = n.failed(code, msg)
	}
	return n
}

// serverSpan expects the default server classification: only codes that
// mean the server failed are errors.
func serverSpan(method string, code codes.Code, msg string) node {
	n := rpcSpan(ext.SpanKindRPCServerEnum, method, code)
	switch code {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		n = n.failed(code, msg)
	}
	return n
}

func (n node) failed(code codes.Code, msg string) node {
	n.Tags["error"] = true
	n.Logs = append(n.Logs, map[string]string{"event": "error", "error.kind": code.String(), "message": msg})
	return n
}

// logged prepends events that come before the status.
func (n node) logged(events ...map[string]string) node {
	n.Logs = append(append([]map[string]string{}, events...), n.Logs...)
	return n
}

func (n node) without(tags ...string) node {
	for _, k := range tags {
		delete(n.Tags, k)
	}
	return n
}

func (n node) with(children ...node) node {
	n.Children = append(n.Children, children...)
	return n
}

func event(name string) map[string]string { return map[string]string{"event": name} }

func root(children ...node) []node {
	return []node{{Name: "test", Tags: map[string]any{}, Children: children}}
}

func diffTrees(t testing.TB, want, got []node) {
	t.Helper()
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("span trees differ (-want +got):\n%s", diff)
	}
}

func recvAll[T any](s interface{ Recv() (*T, error) }) (int, error) {
	n := 0
	for {
		_, err := s.Recv()
		if err != nil {
			return n, err
		}
		n++
	}
}

// rpcCase is one RPC shape with one outcome.
type rpcCase struct {
	name string
	// run performs the RPC under ctx and returns the error the caller
	// saw at the end; it may cancel the call with cancel.
	run  func(t *testing.T, ctx context.Context, cancel context.CancelFunc, c testpb.TestServiceClient) error
	want []node
	// wantCode is the status the caller must see.
	wantCode codes.Code
	// serverMayBeCanceled: the server may see the client's cancellation
	// before its own deadline, legitimately ending with Canceled; the
	// server's logs then depend on where the handler noticed.
	serverMayBeCanceled bool
	ignoreServerLogs    bool
	// clientMsgFromErr: the status message is gRPC's choice (a deadline
	// can surface as the server's RST_STREAM); the client span must
	// then hold the message the caller saw.
	clientMsgFromErr bool
	// clientOnly: whether the server saw the RPC at all is gRPC's
	// race; compare the client span alone.
	clientOnly bool
	// slow: the case lasts seconds (a deadline); the slow cases run in
	// parallel with one another.
	slow bool
}

// TestShapesAndOutcomes runs every RPC shape through its outcomes and
// compares the whole span tree: the test's span, one client span child of
// it, one server span child of the client span.
func TestShapesAndOutcomes(t *testing.T) {
	const panicMsg = "panic: " + testpb.PanicValue
	cases := []rpcCase{
		{
			name: "unary ok",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				resp, err := c.Unary(ctx, &testpb.Request{Value: "hi"})
				if err == nil && resp.GetValue() != "hi" {
					t.Errorf("reply %q, want hi", resp.GetValue())
				}
				return err
			},
			want: root(clientSpan("Unary", codes.OK, "").with(serverSpan("Unary", codes.OK, ""))),
		},
		{
			name: "unary client error",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				_, err := c.Unary(ctx, &testpb.Request{FailCode: int32(codes.NotFound), FailMessage: "no such thing"})
				return err
			},
			wantCode: codes.NotFound,
			want: root(clientSpan("Unary", codes.NotFound, "no such thing").
				with(serverSpan("Unary", codes.NotFound, "no such thing"))),
		},
		{
			name: "unary server error",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				_, err := c.Unary(ctx, &testpb.Request{FailCode: int32(codes.Internal), FailMessage: "broken"})
				return err
			},
			wantCode: codes.Internal,
			want: root(clientSpan("Unary", codes.Internal, "broken").
				with(serverSpan("Unary", codes.Internal, "broken"))),
		},
		{
			name: "unary panic recovered inside",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				_, err := c.Unary(ctx, &testpb.Request{Panic: true})
				return err
			},
			wantCode: codes.Internal,
			want: root(clientSpan("Unary", codes.Internal, panicMsg).
				with(serverSpan("Unary", codes.Internal, panicMsg))),
		},
		{
			name: "unary deadline exceeded",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				// The handler waits until its context is done, so the
				// deadline always passes while it waits, provided the
				// RPC reaches the server first. 50 ms sometimes passed
				// before that on a machine starved of CPU, and there
				// was no server span; a new connection and the request
				// took up to 34 ms with 4 busy loops on the test's one
				// CPU, -race. A second is ample; the case runs in
				// parallel with the other instruments' (slow).
				ctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				_, err := c.Unary(ctx, &testpb.Request{SleepMs: 60_000})
				return err
			},
			slow:                true,
			wantCode:            codes.DeadlineExceeded,
			serverMayBeCanceled: true,
			clientMsgFromErr:    true,
			want: root(clientSpan("Unary", codes.DeadlineExceeded, "context deadline exceeded").
				with(serverSpan("Unary", codes.DeadlineExceeded, "context deadline exceeded"))),
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
			want: root(clientSpan("ServerStream", codes.OK, "").with(serverSpan("ServerStream", codes.OK, ""))),
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
			want: root(clientSpan("ServerStream", codes.Internal, "mid-stream").
				with(serverSpan("ServerStream", codes.Internal, "mid-stream"))),
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
			want: root(clientSpan("ClientStream", codes.OK, "").
				with(serverSpan("ClientStream", codes.OK, "").logged(event("client half-close")))),
		},
		{
			name: "client stream server error",
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
			want: root(clientSpan("ClientStream", codes.InvalidArgument, "bad item").
				with(serverSpan("ClientStream", codes.InvalidArgument, "bad item"))),
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
			want: root(clientSpan("Bidi", codes.OK, "").
				with(serverSpan("Bidi", codes.OK, "").logged(event("client half-close")))),
		},
		{
			name: "bidi panic mid-stream recovered inside",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
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
				if err := s.Send(&testpb.Request{Panic: true}); err != nil {
					return err
				}
				_, err = s.Recv()
				return err
			},
			wantCode: codes.Internal,
			want: root(clientSpan("Bidi", codes.Internal, panicMsg).
				with(serverSpan("Bidi", codes.Internal, panicMsg))),
		},
		{
			name: "client SendMsg fails",
			run: func(t *testing.T, ctx context.Context, _ context.CancelFunc, c testpb.TestServiceClient) error {
				s, err := c.Bidi(ctx)
				if err != nil {
					return err
				}
				// Not a proto message: the codec fails, and gRPC ends the
				// RPC with that error.
				return s.SendMsg("not a message")
			},
			wantCode:         codes.Internal,
			clientMsgFromErr: true,
			want:             root(clientSpan("Bidi", codes.Internal, "from the error")),
			clientOnly:       true,
		},
		{
			name: "client cancels mid-stream",
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
			want: root(clientSpan("Bidi", codes.Canceled, "context canceled").
				with(serverSpan("Bidi", codes.Canceled, ""))),
			ignoreServerLogs: true,
		},
		{
			name: "client stops reading early and cancels",
			run: func(t *testing.T, ctx context.Context, cancel context.CancelFunc, c testpb.TestServiceClient) error {
				s, err := c.ServerStream(ctx, &testpb.Request{ResponseCount: 1_000_000})
				if err != nil {
					return err
				}
				if _, err := s.Recv(); err != nil {
					return err
				}
				cancel()
				// The RPC's spans end with the cancellation, the client
				// reading no more: wait until only the test's own span is
				// open. Then what the client gets if it looks again: gRPC
				// may still hand over responses it had buffered, then the
				// cancellation.
				opentracing.SpanFromContext(ctx).(*recordedSpan).r.waitOpen(t, 1)
				_, err = recvAll[testpb.Response](s)
				if msg := status.Convert(err).Message(); msg != "context canceled" {
					t.Errorf("stream ended with %v, want the message %q", err, "context canceled")
				}
				return err
			},
			wantCode: codes.Canceled,
			want: root(clientSpan("ServerStream", codes.Canceled, "context canceled").
				with(serverSpan("ServerStream", codes.Canceled, ""))),
			ignoreServerLogs: true,
		},
	}
	for _, instrument := range instruments {
		for _, tc := range cases {
			t.Run(instrument+"/"+tc.name, func(t *testing.T) {
				if tc.slow {
					t.Parallel()
				}
				runCase(t, instrument, tc)
			})
		}
	}
}

func runCase(t *testing.T, instrument string, tc rpcCase) {
	e := newEnv(t, setup{instrument: instrument})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx, rootSpan := e.rootContext(ctx)
	err := tc.run(t, ctx, cancel, e.client)
	if got := status.Code(err); got != tc.wantCode {
		t.Fatalf("RPC ended with %v, want code %v", err, tc.wantCode)
	}
	rootSpan.Finish()
	e.tracer.waitSettled(t)

	got := e.tracer.tree()
	// The case's expectation is the interceptors' tree; adjust it for what
	// the case leaves to gRPC, then for the instrument.
	want := cloneTrees(tc.want)
	client := &want[0].Children[0]
	if tc.clientMsgFromErr {
		client.Logs[0]["message"] = status.Convert(err).Message()
	}
	if tc.clientOnly {
		client.Children = nil
		got = dropKind(got, ext.SpanKindRPCServerEnum)
	}
	if server := findKind(got, ext.SpanKindRPCServerEnum); server != nil {
		if tc.serverMayBeCanceled && server.Tags["rpc.grpc.status_code"] == uint32(codes.Canceled) {
			method := client.Tags["rpc.method"].(string)
			client.Children = []node{serverSpan(method, codes.Canceled, "")}
			server.Logs = nil
		}
		if tc.ignoreServerLogs {
			server.Logs = nil
		}
	}
	diffTrees(t, asInstalled(want, instrument), got)
}

func cloneTrees(nodes []node) []node {
	out := make([]node, len(nodes))
	for i, n := range nodes {
		n.Tags = maps.Clone(n.Tags)
		logs := make([]map[string]string, len(n.Logs))
		for j, l := range n.Logs {
			logs[j] = maps.Clone(l)
		}
		if n.Logs == nil {
			logs = nil
		}
		n.Logs = logs
		n.Children = cloneTrees(n.Children)
		if len(n.Children) == 0 {
			n.Children = nil
		}
		out[i] = n
	}
	return out
}

// findKind returns the first span of the given kind, depth first.
func findKind(nodes []node, kind ext.SpanKindEnum) *node {
	for i := range nodes {
		if nodes[i].Tags["span.kind"] == kind {
			return &nodes[i]
		}
		if n := findKind(nodes[i].Children, kind); n != nil {
			return n
		}
	}
	return nil
}

// dropKind removes the spans of the given kind, and their descendants.
func dropKind(nodes []node, kind ext.SpanKindEnum) []node {
	var out []node
	for _, n := range nodes {
		if n.Tags["span.kind"] == kind {
			continue
		}
		n.Children = dropKind(n.Children, kind)
		out = append(out, n)
	}
	return out
}

// TestPanicWithoutRecovery calls the server interceptors directly with a
// handler that panics and nothing to recover it: the span must still finish
// with the error, and the panic must go on unchanged.
func TestPanicWithoutRecovery(t *testing.T) {
	tracer := newRecorder()
	unary := grpctrace.UnaryServerInterceptor(grpctrace.WithTracer(tracer))
	stream := grpctrace.StreamServerInterceptor(grpctrace.WithTracer(tracer))
	boom := errors.New("boom")

	recovered := func(f func()) (r any) {
		defer func() { r = recover() }()
		f()
		return nil
	}
	r := recovered(func() {
		_, _ = unary(context.Background(), &testpb.Request{}, &grpc.UnaryServerInfo{FullMethod: "/" + service + "/Unary"},
			func(context.Context, any) (any, error) { panic(boom) })
	})
	if r != boom {
		t.Errorf("unary: recovered %v, want the handler's panic value", r)
	}
	r = recovered(func() {
		_ = stream(nil, &fakeServerStream{ctx: context.Background()}, &grpc.StreamServerInfo{FullMethod: "/" + service + "/Bidi"},
			func(any, grpc.ServerStream) error { panic(boom) })
	})
	if r != boom {
		t.Errorf("stream: recovered %v, want the handler's panic value", r)
	}
	tracer.waitSettled(t)
	want := []node{
		rpcSpan(ext.SpanKindRPCServerEnum, "Unary", codes.Internal).without("peer.address").failed(codes.Internal, "panic: boom"),
		rpcSpan(ext.SpanKindRPCServerEnum, "Bidi", codes.Internal).without("peer.address").failed(codes.Internal, "panic: boom"),
	}
	diffTrees(t, want, tracer.tree())
}

type fakeServerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f *fakeServerStream) Context() context.Context { return f.ctx }

package fleet

// The scenarios of the peers' own interceptor tests, each run with
// grpctrace (its interceptors, or its stats handlers) on one end of the RPC
// and the peer on the other, in both directions:
//
//   - opentracing-contrib/go-grpc's test/interceptor_test.go: a span per RPC
//     kind (unary, server stream, client stream, bidi), the server span the
//     client span's child; a stream whose caller cancels it (at once, as
//     otgrpc's test does, and mid-stream).
//   - go-grpc-middleware v1's tracing/opentracing/interceptors_test.go: the
//     trace of an inbound parent propagated through client and server, for
//     unary and server-streaming RPCs; errors on both spans; an unsampled
//     parent; a custom operation name; the unary request handler; tags from
//     the client's context.
//
// And what docs/migrating.md claims beyond them: the error classifiers that
// reproduce the peers' error tags, a half-migrated service in the middle
// of a call chain, and when grpctrace-bin is used.
//
// Every span tree is compared whole with go-cmp, with the mock tracer. The
// grpctrace spans are expected as grpctrace documents them (README, Spans);
// the peer's spans as the peer's code makes them, which for the cases that
// matter to a migration is spelled out where the expectation is built
// (scenPeerSpan).

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	grpcopentracing "github.com/grpc-ecosystem/go-grpc-middleware/tracing/opentracing"
	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/mocktracer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// scenSpan is a finished span as the scenarios compare it: its name,
// tags (values as text; the peer's address, which depends on the transport,
// as "<set>"), its log records in order (scenEvent), and its children.
type scenSpan struct {
	Name     string
	Tags     map[string]string
	Events   []string
	Children []scenSpan
}

// scenPair is the side of each end of an RPC.
type scenPair struct{ client, server side }

func (p scenPair) String() string { return fmt.Sprintf("%s-to-%s", p.client, p.server) }

// scenPairs are the pairs with grpctrace on one end and a peer on the
// other, both ways round.
func scenPairs() []scenPair {
	var pairs []scenPair
	for _, g := range []side{sideGrpctrace, sideGrpctraceStats} {
		for _, p := range []side{sideOtgrpc, sideMiddleware} {
			pairs = append(pairs, scenPair{g, p}, scenPair{p, g})
		}
	}
	return pairs
}

// scenMethods are the full methods of the RPC kinds.
var scenMethods = map[rpcKind]string{
	kindUnary:        testpb.TestService_Unary_FullMethodName,
	kindServerStream: testpb.TestService_ServerStream_FullMethodName,
	kindClientStream: testpb.TestService_ClientStream_FullMethodName,
	kindBidi:         testpb.TestService_Bidi_FullMethodName,
}

// scenOutcome is how an RPC ended, as each end's span should tell it.
type scenOutcome struct {
	kind rpcKind
	// code and msg are the status the handler returned.
	code codes.Code
	msg  string
	// clientCanceled: the caller cancelled the RPC's context instead of
	// reading the stream to its end (and, for bidi, instead of
	// half-closing it: the stubs of the other stream kinds half-close).
	clientCanceled bool
}

// halfClosed reports whether a server handler read the client's
// half-close: client-streaming and bidi handlers read until io.EOF, unless
// they failed on the first message or the RPC was cancelled.
func (o scenOutcome) halfClosed() bool {
	return (o.kind == kindClientStream || o.kind == kindBidi) && o.code == codes.OK && !o.clientCanceled
}

// scenExpectedSpan is the span the side records at its end of the RPC.
func scenExpectedSpan(s side, client bool, o scenOutcome, children ...scenSpan) scenSpan {
	if s.isGrpctrace() {
		return scenGrpctraceSpan(s, client, o, children...)
	}
	return scenPeerSpan(s, client, o, children...)
}

// scenGrpctraceSpan is a grpctrace span as documented: the rpc.* tags and
// the status code on every span, the peer's address, error=true by the
// default classifier (client: every non-OK code; server: Unknown,
// DeadlineExceeded, Unimplemented, Internal, Unavailable, DataLoss) with
// its error event; the server interceptors' stream logs the client's
// half-close, which the stats handler does not see.
func scenGrpctraceSpan(s side, client bool, o scenOutcome, children ...scenSpan) scenSpan {
	method := scenMethods[o.kind]
	service, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	kind := "server"
	if client {
		kind = "client"
	}
	span := scenSpan{
		Name: method,
		Tags: map[string]string{
			"component":            "gRPC",
			"span.kind":            kind,
			"rpc.system":           "grpc",
			"rpc.service":          service,
			"rpc.method":           name,
			"rpc.grpc.status_code": fmt.Sprint(uint32(o.code)),
			"peer.address":         "<set>",
		},
		Children: children,
	}
	if !client && s == sideGrpctrace && o.halfClosed() {
		span.Events = append(span.Events, "client half-close")
	}
	isError := o.code != codes.OK
	if !client {
		switch o.code {
		case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		default:
			isError = false
		}
	}
	if isError {
		span.Tags["error"] = "true"
		span.Events = append(span.Events, fmt.Sprintf("error %s: %s", o.code, o.msg))
	}
	return span
}

// scenPeerSpan is a span of otgrpc v0.1.4 or middleware v1.4.0, as their
// code makes it: component and span.kind always, nothing of the status on
// success, and on failure:
//
//   - otgrpc: response_code (the code's name) and response_class, error=true
//     for every class but "2xx" (OK, Canceled) on a client and for "5xx" on
//     a server, and an error event with the error's text. A client stream's
//     context cancelled ends its span with the context's error, which is no
//     status: code Unknown, class "0xx", an error.
//   - middleware: error=true for every failure, with an error event; but its
//     client span of a stream ends at CloseSend, which the generated stub of
//     a server-streaming RPC calls right after sending the request, and
//     CloseAndRecv before receiving the response, and a bidi caller when it
//     is done sending: such a span ends OK whatever the RPC's outcome. It
//     does not watch the call's context either.
func scenPeerSpan(s side, client bool, o scenOutcome, children ...scenSpan) scenSpan {
	kind := "server"
	if client {
		kind = "client"
	}
	span := scenSpan{
		Name:     scenMethods[o.kind],
		Tags:     map[string]string{"component": "gRPC", "span.kind": kind},
		Children: children,
	}
	code := o.code
	var errText string
	if code != codes.OK {
		errText = status.Error(o.code, o.msg).Error()
	}
	if o.clientCanceled && client && s == sideOtgrpc {
		code, errText = codes.Unknown, context.Canceled.Error()
	}
	// middleware's client span of a stream ends, OK, at the first
	// CloseSend: the stubs of server- and client-streaming RPCs call it,
	// and so does call for bidi; only a bidi caller that cancels instead
	// ends it with the stream's error.
	if s == sideMiddleware && client && o.kind != kindUnary && !(o.kind == kindBidi && o.clientCanceled) {
		code = codes.OK
	}
	if code == codes.OK {
		return span
	}
	span.Events = []string{"error: " + errText}
	switch s {
	case sideOtgrpc:
		class := otgrpcClass(code)
		span.Tags["response_code"] = code.String()
		span.Tags["response_class"] = class
		if class != "2xx" && (client || class == "5xx") {
			span.Tags["error"] = "true"
		}
	case sideMiddleware:
		span.Tags["error"] = "true"
	}
	return span
}

// otgrpcClass is otgrpc's ErrorClass of a status with the code, written out
// so that the expectation does not come from the code under test.
func otgrpcClass(c codes.Code) string {
	switch c {
	case codes.OK, codes.Canceled:
		return "2xx"
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
		codes.Unauthenticated, codes.FailedPrecondition, codes.OutOfRange:
		return "4xx"
	case codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted, codes.Unimplemented,
		codes.Internal, codes.Unavailable, codes.DataLoss:
		return "5xx"
	}
	return "0xx"
}

// scenTree returns the tracer's finished spans as trees: the roots are the
// spans whose parent it did not finish. Children are sorted by kind, then
// name, so that the order the spans finished in does not matter; a child in
// another trace than its parent's is marked, which no tree expects.
func scenTree(mt *mocktracer.MockTracer) []scenSpan {
	spans := mt.FinishedSpans()
	byID := map[int]*mocktracer.MockSpan{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID] = s
	}
	children := map[int][]*mocktracer.MockSpan{}
	var roots []*mocktracer.MockSpan
	for _, s := range spans {
		if _, ok := byID[s.ParentID]; ok {
			children[s.ParentID] = append(children[s.ParentID], s)
		} else {
			roots = append(roots, s)
		}
	}
	var build func(s *mocktracer.MockSpan) scenSpan
	build = func(s *mocktracer.MockSpan) scenSpan {
		n := scenSpan{Name: s.OperationName, Tags: map[string]string{}}
		if p, ok := byID[s.ParentID]; ok && p.SpanContext.TraceID != s.SpanContext.TraceID {
			n.Name += " (in another trace than its parent)"
		}
		for k, v := range s.Tags() {
			n.Tags[k] = fmt.Sprint(v)
			if strings.HasPrefix(k, "peer.") {
				n.Tags[k] = "<set>"
			}
		}
		for _, r := range s.Logs() {
			n.Events = append(n.Events, scenEvent(r))
		}
		for _, c := range children[s.SpanContext.SpanID] {
			n.Children = append(n.Children, build(c))
		}
		sort.Slice(n.Children, func(i, j int) bool {
			a, b := n.Children[i], n.Children[j]
			if a.Tags["span.kind"] != b.Tags["span.kind"] {
				return a.Tags["span.kind"] < b.Tags["span.kind"]
			}
			return a.Name < b.Name
		})
		return n
	}
	var out []scenSpan
	for _, r := range roots {
		out = append(out, build(r))
	}
	return out
}

// scenEvent is a log record as text: "event error.kind: message" for the
// fields those libraries log, "k=v ..." for any other record.
func scenEvent(r mocktracer.MockLogRecord) string {
	fields := map[string]string{}
	var kv []string
	for _, f := range r.Fields {
		fields[f.Key] = f.ValueString
		kv = append(kv, f.Key+"="+f.ValueString)
	}
	event, ok := fields["event"]
	if !ok {
		return strings.Join(kv, " ")
	}
	if k := fields["error.kind"]; k != "" {
		event += " " + k
	}
	if m, ok := fields["message"]; ok {
		event += ": " + m
	}
	return event
}

// scenCompare fails the test with the difference between the span trees.
func scenCompare(t *testing.T, want []scenSpan, mt *mocktracer.MockTracer) {
	t.Helper()
	if diff := cmp.Diff(want, scenTree(mt), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("span trees (-want +got):\n%s", diff)
	}
}

// scenSetup starts a server of the pair's server side and dials it with the
// client side, both with the mock tracer; grpctrace options go to
// whichever end is grpctrace's.
func scenSetup(t *testing.T, p scenPair, opts ...grpctrace.Option) (*mocktracer.MockTracer, *tracedServer, testpb.TestServiceClient) {
	t.Helper()
	mt := mocktracer.New()
	var serverOpts, clientOpts []grpctrace.Option
	if p.server.isGrpctrace() {
		serverOpts = opts
	} else {
		clientOpts = opts
	}
	srv := startTracedServer(t, p.server, mt, serverOpts...)
	return mt, srv, srv.dial(t, p.client, mt, clientOpts...)
}

// scenRequest is the request of an RPC of the kind that ends with code
// (OK: succeeds) and msg; a server stream that succeeds sends five
// responses, as otgrpc's test asks for.
func scenRequest(kind rpcKind, code codes.Code, msg string) *testpb.Request {
	req := &testpb.Request{Value: "v", FailCode: int32(code), FailMessage: msg}
	if kind == kindServerStream && code == codes.OK {
		req.ResponseCount = 5
	}
	return req
}

// TestScenarioSpanPerRPCKind: otgrpc's TestUnaryOpenTracing and its three
// streaming siblings (a client span and a server span, child of it), and
// middleware's TestPing_PropagatesTraces and TestPingList_PropagatesTraces
// (a caller's span as the parent of both, all in its trace).
func TestScenarioSpanPerRPCKind(t *testing.T) {
	for _, p := range scenPairs() {
		for _, kind := range allKinds {
			for _, withParent := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/root", p, kind)
				if withParent {
					name = fmt.Sprintf("%s/%s/in-a-trace", p, kind)
				}
				t.Run(name, func(t *testing.T) {
					mt, srv, c := scenSetup(t, p)
					ctx := t.Context()
					var parent opentracing.Span
					if withParent {
						parent = mt.StartSpan("caller")
						ctx = opentracing.ContextWithSpan(ctx, parent)
					}
					if _, err := srv.call(ctx, c, kind, scenRequest(kind, codes.OK, "")); err != nil {
						t.Fatalf("%s RPC: %v", kind, err)
					}
					o := scenOutcome{kind: kind}
					want := scenExpectedSpan(p.client, true, o, scenExpectedSpan(p.server, false, o))
					if parent != nil {
						parent.Finish()
						want = scenSpan{Name: "caller", Children: []scenSpan{want}}
					}
					scenCompare(t, []scenSpan{want}, mt)
				})
			}
		}
	}
}

// TestScenarioErrors: middleware's TestPingError_PropagatesTraces (both
// spans marked as errors, for middleware) and the otgrpc error tags, for a
// code that is the client's fault (NotFound), one that otgrpc alone counts
// as the server's (ResourceExhausted) and one that everybody does
// (Internal), in every RPC kind.
func TestScenarioErrors(t *testing.T) {
	for _, p := range scenPairs() {
		for _, kind := range allKinds {
			for _, code := range []codes.Code{codes.NotFound, codes.ResourceExhausted, codes.Internal} {
				t.Run(fmt.Sprintf("%s/%s/%s", p, kind, code), func(t *testing.T) {
					mt, srv, c := scenSetup(t, p)
					_, err := srv.call(t.Context(), c, kind, scenRequest(kind, code, "it failed"))
					if status.Code(err) != code {
						t.Fatalf("%s RPC: %v, want code %s", kind, err, code)
					}
					o := scenOutcome{kind: kind, code: code, msg: "it failed"}
					want := scenExpectedSpan(p.client, true, o, scenExpectedSpan(p.server, false, o))
					scenCompare(t, []scenSpan{want}, mt)
				})
			}
		}
	}
}

// TestScenarioCancellation: otgrpc's TestStreamingContextCancellationOpenTracing.
// The caller cancels a stream it has not read to its end: both spans end,
// the server span still the client span's child, each with the
// cancellation as its side records it. Two moments:
//
//   - "at once", as otgrpc's test: a server stream cancelled right after it
//     was opened, possibly before gRPC began the RPC on the server. In
//     this window the server stats handler must not end its span as
//     Unimplemented ("never begun") because the context was done first: it
//     waits for gRPC to write the RPC's status, and ends the span with it.
//   - "mid-stream": a bidi stream with one message answered, so that the
//     server began the RPC, then a second one the handler waits on.
//
// The handler sees the cancellation in its wait or in RecvMsg, as gRPC
// schedules it; the status is Canceled either way, and the "receive error"
// grpctrace's stream logs in the second case is left out of the comparison.
func TestScenarioCancellation(t *testing.T) {
	wait := &testpb.Request{SleepMs: serverEndTimeout.Milliseconds()}
	moments := []struct {
		name string
		kind rpcKind
		// open starts the RPC and returns once it is under way, and the
		// receive to call after the cancellation for a client that
		// does not watch its context.
		open func(t *testing.T, ctx context.Context, c testpb.TestServiceClient) (recv func() error)
	}{
		{"at-once", kindServerStream, func(t *testing.T, ctx context.Context, c testpb.TestServiceClient) func() error {
			st, err := c.ServerStream(ctx, wait)
			if err != nil {
				t.Fatalf("ServerStream: %v", err)
			}
			return func() error { _, err := st.Recv(); return err }
		}},
		{"mid-stream", kindBidi, func(t *testing.T, ctx context.Context, c testpb.TestServiceClient) func() error {
			st, err := c.Bidi(ctx)
			if err != nil {
				t.Fatalf("Bidi: %v", err)
			}
			if err := st.Send(&testpb.Request{Value: "first"}); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if _, err := st.Recv(); err != nil {
				t.Fatalf("Recv: %v", err)
			}
			if err := st.Send(wait); err != nil {
				t.Fatalf("Send: %v", err)
			}
			return func() error { _, err := st.Recv(); return err }
		}},
	}
	for _, m := range moments {
		for _, p := range scenPairs() {
			t.Run(m.name+"/"+p.String(), func(t *testing.T) {
				mt, _, c := scenSetup(t, p)
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				recv := m.open(t, ctx, c)
				cancel()
				if p.client == sideMiddleware && m.kind == kindBidi {
					// middleware does not watch the call's context: its
					// bidi span ends only when the stream reports an
					// error. (Its server-stream span ended at the stub's
					// CloseSend already.)
					if err := recv(); status.Code(err) != codes.Canceled {
						t.Fatalf("Recv after cancel: %v, want Canceled", err)
					}
				}
				// The client span ends on a goroutine watching the
				// context (grpctrace's, otgrpc's, gRPC's for the stats
				// handler), the server span when the handler returns:
				// wait for both.
				scenWaitFinished(t, mt, 2)
				o := scenOutcome{kind: m.kind, code: codes.Canceled, msg: context.Canceled.Error(), clientCanceled: true}
				want := scenExpectedSpan(p.client, true, o, scenExpectedSpan(p.server, false, o))
				got := scenTree(mt)
				scenDropEvents(got, "receive error")
				if diff := cmp.Diff([]scenSpan{want}, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("span trees (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// scenWaitFinished waits until the tracer has finished n spans: a wait for
// a condition, bounded by serverEndTimeout, which only a broken test
// reaches.
func scenWaitFinished(t *testing.T, mt *mocktracer.MockTracer, n int) {
	t.Helper()
	deadline := time.Now().Add(serverEndTimeout)
	for len(mt.FinishedSpans()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d spans finished after %v, want %d", len(mt.FinishedSpans()), serverEndTimeout, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// scenDropEvents removes the events that start with prefix from the trees.
func scenDropEvents(trees []scenSpan, prefix string) {
	for i := range trees {
		kept := trees[i].Events[:0]
		for _, e := range trees[i].Events {
			if !strings.HasPrefix(e, prefix) {
				kept = append(kept, e)
			}
		}
		trees[i].Events = kept
		scenDropEvents(trees[i].Children, prefix)
	}
}

// scenInboundParent is middleware's createContextFromFakeHttpRequestParent:
// a span continuing a trace that arrived over HTTP, with the given
// sampling decision, finished, in the returned context.
func scenInboundParent(t *testing.T, mt *mocktracer.MockTracer, sampled bool) (context.Context, mocktracer.MockSpanContext) {
	t.Helper()
	hdr := http.Header{}
	hdr.Set("mockpfx-ids-traceid", "1337")
	hdr.Set("mockpfx-ids-spanid", "999")
	hdr.Set("mockpfx-ids-sampled", fmt.Sprint(sampled))
	inbound, err := mt.Extract(opentracing.HTTPHeaders, opentracing.HTTPHeadersCarrier(hdr))
	if err != nil {
		t.Fatalf("extracting the fake HTTP request's span context: %v", err)
	}
	span := mt.StartSpan("/fake/parent/http/request", opentracing.ChildOf(inbound))
	span.Finish()
	return opentracing.ContextWithSpan(t.Context(), span), span.Context().(mocktracer.MockSpanContext)
}

// TestScenarioInboundTrace: middleware's TestPing_PropagatesTraces and
// TestPingEmpty_NotSampleTraces: the RPC's spans join the inbound trace
// (trace ID 1337) with its sampling decision, sampled or not, whichever
// library made the span on each end.
func TestScenarioInboundTrace(t *testing.T) {
	for _, p := range scenPairs() {
		for _, kind := range []rpcKind{kindUnary, kindServerStream} {
			for _, sampled := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%s/sampled=%v", p, kind, sampled), func(t *testing.T) {
					mt, srv, c := scenSetup(t, p)
					ctx, parent := scenInboundParent(t, mt, sampled)
					if _, err := srv.call(ctx, c, kind, scenRequest(kind, codes.OK, "")); err != nil {
						t.Fatalf("%s RPC: %v", kind, err)
					}
					o := scenOutcome{kind: kind}
					want := scenSpan{Name: "/fake/parent/http/request", Children: []scenSpan{
						scenExpectedSpan(p.client, true, o, scenExpectedSpan(p.server, false, o)),
					}}
					scenCompare(t, []scenSpan{want}, mt)
					type ids struct {
						TraceID int
						Sampled bool
					}
					for _, s := range mt.FinishedSpans() {
						got := ids{s.SpanContext.TraceID, s.SpanContext.Sampled}
						if want := (ids{1337, parent.Sampled}); got != want {
							t.Errorf("span %s (%v): %+v, want %+v", s.OperationName, s.Tag("span.kind"), got, want)
						}
					}
				})
			}
		}
	}
}

// TestScenarioOperationName: middleware's TestPing_CustomOpName, with
// grpctrace's WithOperationName on grpctrace's end (middleware's WithOpName
// renames server spans only; grpctrace's renames the spans of the
// interceptors or handlers it is given to). The other end keeps the full
// method.
func TestScenarioOperationName(t *testing.T) {
	rename := grpctrace.WithOperationName(func(fullMethod string) string { return "custom " + fullMethod })
	for _, p := range scenPairs() {
		t.Run(p.String(), func(t *testing.T) {
			mt, srv, c := scenSetup(t, p, rename)
			if _, err := srv.call(t.Context(), c, kindUnary, nil); err != nil {
				t.Fatalf("Unary: %v", err)
			}
			o := scenOutcome{kind: kindUnary}
			client, server := scenExpectedSpan(p.client, true, o), scenExpectedSpan(p.server, false, o)
			if p.client.isGrpctrace() {
				client.Name = "custom " + client.Name
			} else {
				server.Name = "custom " + server.Name
			}
			client.Children = []scenSpan{server}
			scenCompare(t, []scenSpan{client}, mt)
		})
	}
}

// TestScenarioUnaryRequestHandler: middleware's
// TestPing_WithUnaryRequestHandlerFunc, its handler given to grpctrace as a
// span decorator, which sees the unary request (RPCInfo.Request) and logs
// on the same span, at its end. The stats handlers hand decorators no
// request (documented): nothing is logged there.
func TestScenarioUnaryRequestHandler(t *testing.T) {
	requestHandler := func(span opentracing.Span, req any) {
		span.LogKV("unary-request-handler", true, "value", req.(*testpb.Request).GetValue())
	}
	decorator := grpctrace.WithSpanDecorator(func(ctx context.Context, rpc grpctrace.RPCInfo) {
		span := opentracing.SpanFromContext(ctx)
		if rpc.Request != nil {
			requestHandler(span, rpc.Request)
		}
	})
	for _, p := range scenPairs() {
		t.Run(p.String(), func(t *testing.T) {
			mt, srv, c := scenSetup(t, p, decorator)
			if _, err := srv.call(t.Context(), c, kindUnary, &testpb.Request{Value: "something"}); err != nil {
				t.Fatalf("Unary: %v", err)
			}
			o := scenOutcome{kind: kindUnary}
			client, server := scenExpectedSpan(p.client, true, o), scenExpectedSpan(p.server, false, o)
			logged := []string{"unary-request-handler=true value=something"}
			switch {
			case p.client == sideGrpctrace:
				client.Events = logged
			case p.server == sideGrpctrace:
				server.Events = logged
			}
			client.Children = []scenSpan{server}
			scenCompare(t, []scenSpan{client}, mt)
		})
	}
}

type scenClientTagsKey struct{}

// TestScenarioClientContextTags: middleware's TestPing_ClientContextTags.
// A middleware client takes span tags from the call's context
// (ClientAddContextTags); a grpctrace client does the same with a key of
// the caller's own and a decorator, as docs/migrating.md shows. The tags
// go on the client span only.
func TestScenarioClientContextTags(t *testing.T) {
	fromContext := grpctrace.WithSpanDecorator(func(ctx context.Context, rpc grpctrace.RPCInfo) {
		span := opentracing.SpanFromContext(ctx)
		if tags, ok := ctx.Value(scenClientTagsKey{}).(opentracing.Tags); ok && rpc.Client {
			for k, v := range tags {
				span.SetTag(k, v)
			}
		}
	})
	for _, p := range []scenPair{{sideMiddleware, sideGrpctrace}, {sideMiddleware, sideGrpctraceStats}, {sideGrpctrace, sideMiddleware}, {sideGrpctraceStats, sideMiddleware}} {
		t.Run(p.String(), func(t *testing.T) {
			mt, srv, c := scenSetup(t, p, fromContext)
			tags := opentracing.Tags{"opentracing.custom": "x"}
			ctx := grpcopentracing.ClientAddContextTags(t.Context(), tags)
			if p.client.isGrpctrace() {
				ctx = context.WithValue(t.Context(), scenClientTagsKey{}, tags)
			}
			if _, err := srv.call(ctx, c, kindUnary, nil); err != nil {
				t.Fatalf("Unary: %v", err)
			}
			o := scenOutcome{kind: kindUnary}
			client := scenExpectedSpan(p.client, true, o, scenExpectedSpan(p.server, false, o))
			client.Tags["opentracing.custom"] = "x"
			scenCompare(t, []scenSpan{client}, mt)
		})
	}
}

// TestScenarioErrorClassifierParity checks the classifiers
// docs/migrating.md gives: with them, a grpctrace span carries error=true
// for exactly the codes the peer's span at the same end of the same RPC
// does, for every non-OK code, whichever end grpctrace is on.
func TestScenarioErrorClassifierParity(t *testing.T) {
	classifiers := map[side]struct{ client, server grpctrace.Option }{
		sideOtgrpc: {
			client: grpctrace.WithErrorClassifier(func(c codes.Code) bool { return c != codes.OK && c != codes.Canceled }),
			server: grpctrace.WithErrorClassifier(func(c codes.Code) bool {
				switch c {
				case codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted,
					codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
					return true
				}
				return false
			}),
		},
		sideMiddleware: {
			client: nil, // grpctrace's default: every non-OK code
			server: grpctrace.WithErrorClassifier(func(c codes.Code) bool { return c != codes.OK }),
		},
	}
	for _, g := range []side{sideGrpctrace, sideGrpctraceStats} {
		for _, peer := range []side{sideOtgrpc, sideMiddleware} {
			t.Run(fmt.Sprintf("%s-like-%s", g, peer), func(t *testing.T) {
				mt := mocktracer.New()
				reference := startTracedServer(t, peer, mt)
				peerToPeer := reference.dial(t, peer, mt)
				grpctraceServer := startTracedServer(t, g, mt, classifiers[peer].server)
				peerToGrpctrace := grpctraceServer.dial(t, peer, mt)
				grpctraceToPeer := reference.dial(t, g, mt, classifiers[peer].client)
				for code := codes.Canceled; code <= codes.Unauthenticated; code++ {
					req := &testpb.Request{FailCode: int32(code), FailMessage: "failed"}
					errorFlags := func(srv *tracedServer, c testpb.TestServiceClient) map[string]bool {
						mt.Reset()
						if _, err := srv.call(t.Context(), c, kindUnary, req); status.Code(err) != code {
							t.Fatalf("Unary failing with %s: %v", code, err)
						}
						flags := map[string]bool{}
						for _, s := range mt.FinishedSpans() {
							flags[fmt.Sprint(s.Tag("span.kind"))] = s.Tag("error") == true
						}
						return flags
					}
					want := errorFlags(reference, peerToPeer)
					if got := errorFlags(grpctraceServer, peerToGrpctrace); got["server"] != want["server"] {
						t.Errorf("%s: grpctrace server span error=%v, %s's %v", code, got["server"], peer, want["server"])
					}
					if got := errorFlags(reference, grpctraceToPeer); got["client"] != want["client"] {
						t.Errorf("%s: grpctrace client span error=%v, %s's %v", code, got["client"], peer, want["client"])
					}
				}
			})
		}
	}
}

// scenRawTracer is the mock tracer writing baggage values raw, unescaped,
// as no common tracer does: the only case, with a baggage key that is no
// header name, where a pair cannot be a plain gRPC header.
type scenRawTracer struct{ *mocktracer.MockTracer }

func (r scenRawTracer) Inject(sc opentracing.SpanContext, format, carrier any) error {
	if err := r.MockTracer.Inject(sc, format, carrier); err != nil {
		return err
	}
	w, ok := carrier.(opentracing.TextMapWriter)
	if !ok {
		return opentracing.ErrInvalidCarrier
	}
	sc.ForeachBaggageItem(func(k, v string) bool {
		w.Set("mockpfx-baggage-"+k, v)
		return true
	})
	return nil
}

// TestScenarioUnsendableBaggage checks what docs/migrating.md says of
// grpctrace-bin: mocktracer and jaeger-client-go escape baggage values but
// not keys, so a key with a space (or non-ASCII) makes a header name gRPC
// refuses, as does a tracer writing raw non-ASCII values. A peer's client
// fails such an RPC with Internal, before any server sees it; grpctrace's
// client packs the pair into grpctrace-bin and the RPC proceeds: a
// grpctrace server gives the handler the item, a peer's server ignores the
// header, so the item is lost there but the trace is intact.
func TestScenarioUnsendableBaggage(t *testing.T) {
	cases := []struct {
		name       string
		raw        bool
		key, value string
	}{
		{"key with a space", false, "user name", "ada"},
		{"raw non-ASCII value", true, "user", "Zoë"},
	}
	pairs := append(scenPairs(), scenPair{sideGrpctrace, sideGrpctrace}, scenPair{sideGrpctraceStats, sideGrpctraceStats})
	for _, tc := range cases {
		for _, p := range pairs {
			t.Run(tc.name+"/"+p.String(), func(t *testing.T) {
				mt := mocktracer.New()
				var tracer opentracing.Tracer = mt
				if tc.raw {
					tracer = scenRawTracer{mt}
				}
				srv := startTracedServer(t, p.server, tracer)
				c := srv.dial(t, p.client, tracer)
				caller := tracer.StartSpan("caller")
				caller.SetBaggageItem(tc.key, tc.value)
				rec, err := srv.call(opentracing.ContextWithSpan(t.Context(), caller), c, kindUnary, nil)
				caller.Finish()
				if !p.client.isGrpctrace() {
					if status.Code(err) != codes.Internal || rec.Method != "" {
						t.Fatalf("%s client: RPC %v, handler record %+v; want gRPC's Internal before any handler", p.client, err, rec)
					}
					return
				}
				if err != nil {
					t.Fatalf("RPC: %v", err)
				}
				got, ok := rec.Span.(mocktracer.MockSpanContext)
				if !ok || got.TraceID != caller.Context().(mocktracer.MockSpanContext).TraceID {
					t.Errorf("handler's span context %+v, want one in the caller's trace", rec.Span)
				}
				want := map[string]string{tc.key: tc.value}
				if !p.server.isGrpctrace() {
					want = nil // the peer's server does not read grpctrace-bin
				}
				if diff := cmp.Diff(want, rec.Baggage, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("handler's baggage (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// scenRelay is a TestService whose Unary calls the next service with the
// handler's context, as a service in the middle of a call chain does.
type scenRelay struct {
	testpb.UnimplementedTestServiceServer
	next testpb.TestServiceClient
}

func (r scenRelay) Unary(ctx context.Context, req *testpb.Request) (*testpb.Response, error) {
	return r.next.Unary(ctx, req)
}

// TestScenarioHalfMigratedService: a service whose server is traced by one
// library and whose client by another (a migration half done, in either
// order) keeps the chain in one trace: the outgoing call's client span is
// the child of the server span in the handler's context, whichever library
// put it there, because both read and write it with
// opentracing.ContextWithSpan and SpanFromContext.
func TestScenarioHalfMigratedService(t *testing.T) {
	for _, p := range scenPairs() {
		// p.server traces the middle service's server, p.client its
		// outgoing calls; the callers and the last service use the
		// same library as the end they talk to.
		t.Run(p.String(), func(t *testing.T) {
			mt := mocktracer.New()
			last := startTracedServer(t, p.client, mt)
			next := last.dial(t, p.client, mt)
			opts, err := serverSideOptions(p.server, mt)
			if err != nil {
				t.Fatal(err)
			}
			lis := bufconn.Listen(1 << 20)
			middle := grpc.NewServer(opts...)
			testpb.RegisterTestServiceServer(middle, scenRelay{next: next})
			served := make(chan struct{})
			go func() {
				defer close(served)
				_ = middle.Serve(lis)
			}()
			t.Cleanup(func() {
				middle.Stop()
				<-served
			})
			dopts, err := clientSideOptions(p.server, mt)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := grpc.NewClient("passthrough:///middle", append(dopts,
				grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
				grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })

			caller := mt.StartSpan("caller")
			if _, err := testpb.NewTestServiceClient(conn).Unary(opentracing.ContextWithSpan(t.Context(), caller), &testpb.Request{}); err != nil {
				t.Fatalf("Unary through the middle service: %v", err)
			}
			caller.Finish()
			// A stats handler's server span ends at gRPC's end of the
			// RPC, after the status went out: the caller's RPC may
			// return first. Wait for the caller's span and the four
			// of the two RPCs.
			scenWaitFinished(t, mt, 5)
			o := scenOutcome{kind: kindUnary}
			want := scenSpan{Name: "caller", Children: []scenSpan{
				scenExpectedSpan(p.server, true, o,
					scenExpectedSpan(p.server, false, o,
						scenExpectedSpan(p.client, true, o,
							scenExpectedSpan(p.client, false, o)))),
			}}
			scenCompare(t, []scenSpan{want}, mt)
		})
	}
}

// TestScenarioWhatGetsPacked checks docs/migrating.md's table of what each
// tracer writes into gRPC metadata for baggage: values are escaped (a
// plain header), a key's capitals are lowercased, but a key with a space is
// written as is by mocktracer and jaeger-client-go, a header name gRPC
// cannot send, so grpctrace's carrier packs it into grpctrace-bin; the
// OpenTelemetry bridge drops such a key when it is set.
func TestScenarioWhatGetsPacked(t *testing.T) {
	cases := []struct {
		key, value string
		// packed, per tracer: whether the pair goes into grpctrace-bin;
		// a tracer missing from the map drops the item.
		packed map[string]bool
	}{
		{"user", "café ü", map[string]bool{"mocktracer": false, "jaeger": false, "otel-bridge": false}},
		{"user", "a b;c=d,é%", map[string]bool{"mocktracer": false, "jaeger": false, "otel-bridge": false}},
		{"Upper", "v", map[string]bool{"mocktracer": false, "jaeger": false, "otel-bridge": false}},
		{"user name", "v", map[string]bool{"mocktracer": true, "jaeger": true}},
		{"clé", "v", map[string]bool{"mocktracer": true, "jaeger": true}},
	}
	for _, tc := range fleetTracers {
		t.Run(tc.name, func(t *testing.T) {
			ft := tc.new(t)
			for _, c := range cases {
				span := ft.Tracer.StartSpan("caller")
				span.SetBaggageItem(c.key, c.value)
				md := grpctrace.MetadataCarrier{}
				if err := ft.Tracer.Inject(span.Context(), opentracing.HTTPHeaders, md); err != nil {
					t.Fatalf("Inject: %v", err)
				}
				span.Finish()
				wantPacked, kept := c.packed[ft.Name]
				_, packed := md["grpctrace-bin"]
				if packed != wantPacked {
					t.Errorf("baggage %q=%q: packed %v, want %v; metadata %q", c.key, c.value, packed, wantPacked, md)
				}
				// Read back through the carrier, as grpctrace's server
				// does: the item is there unless the tracer dropped it.
				sc, err := ft.Tracer.Extract(opentracing.HTTPHeaders, md)
				if err != nil {
					t.Fatalf("Extract: %v", err)
				}
				var got []string
				sc.ForeachBaggageItem(func(k, v string) bool {
					got = append(got, k+"="+v)
					return true
				})
				var want []string
				if kept {
					want = []string{strings.ToLower(c.key) + "=" + c.value}
					if ft.Name == "otel-bridge" {
						want = []string{c.key + "=" + c.value} // W3C keeps a key's case
					}
				}
				if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("baggage %q=%q read back (-want +got):\n%s", c.key, c.value, diff)
				}
			}
		})
	}
}

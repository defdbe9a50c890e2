package grpctrace_test

// Options through every install mode: the interceptors, the stats handlers
// and both together share grpctrace's options, and must honour them alike,
// up to the differences stats_handler.go documents (asInstalled).

import (
	"context"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

const (
	unaryMethod        = "/" + service + "/Unary"
	serverStreamMethod = "/" + service + "/ServerStream"
	bidiMethod         = "/" + service + "/Bidi"
)

// forEachInstrument runs f once per install mode, as a subtest.
func forEachInstrument(t *testing.T, f func(t *testing.T, instrument string)) {
	for _, instrument := range instruments {
		t.Run(instrument, func(t *testing.T) { f(t, instrument) })
	}
}

// callUnary makes a unary call that must succeed and echo value.
func callUnary(t *testing.T, ctx context.Context, c testpb.TestServiceClient, value string) {
	t.Helper()
	resp, err := c.Unary(ctx, &testpb.Request{Value: value})
	if err != nil {
		t.Fatalf("Unary: %v", err)
	}
	if resp.GetValue() != value {
		t.Fatalf("Unary replied %q, want %q", resp.GetValue(), value)
	}
}

// callServerStream makes a server-streaming call that must deliver n
// responses echoing value, then io.EOF.
func callServerStream(t *testing.T, ctx context.Context, c testpb.TestServiceClient, value string, n int) {
	t.Helper()
	s, err := c.ServerStream(ctx, &testpb.Request{Value: value, ResponseCount: int32(n)})
	if err != nil {
		t.Fatalf("ServerStream: %v", err)
	}
	for i := 1; i <= n; i++ {
		resp, err := s.Recv()
		if err != nil {
			t.Fatalf("ServerStream response %d: %v", i, err)
		}
		if resp.GetValue() != value || resp.GetSeq() != int32(i) {
			t.Fatalf("ServerStream response %d is %v, want value %q seq %d", i, resp, value, i)
		}
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("ServerStream ended with %v, want io.EOF", err)
	}
}

// named renames a span expected from the defaults.
func (n node) named(name string) node {
	n.Name = name
	return n
}

// ---------------------------------------------------------------------------
// WithFilter

// TestFilterAllModes filters Unary out, on both sides, on the client only
// and on the server only, in every install mode. A filtered side records
// nothing for the RPC (and, on the client, sends no span context), the RPC
// runs as untraced, and the unfiltered ServerStream is traced as usual.
func TestFilterAllModes(t *testing.T) {
	var filtered sync.Map // methods the filter was asked about
	noUnary := grpctrace.WithFilter(func(_ context.Context, m string) bool {
		filtered.Store(m, true)
		return m != unaryMethod
	})
	// The tree of the traced ServerStream call, under the test's span.
	streamTree := clientSpan("ServerStream", codes.OK, "").with(serverSpan("ServerStream", codes.OK, ""))
	cases := []struct {
		name           string
		client, server []grpctrace.Option
		want           []node
		// What the Unary handler must see: a span in its context, and a
		// span context sent by the client.
		unaryServerSpan, unaryPropagated bool
	}{
		{
			name:   "both sides",
			client: []grpctrace.Option{noUnary}, server: []grpctrace.Option{noUnary},
			want: root(streamTree),
		},
		{
			// The client neither traces nor propagates: the server's span
			// of the Unary call is a trace of its own.
			name:   "client only",
			client: []grpctrace.Option{noUnary},
			want:   append(root(streamTree), serverSpan("Unary", codes.OK, "")),

			unaryServerSpan: true,
		},
		{
			name:   "server only",
			server: []grpctrace.Option{noUnary},
			want:   root(clientSpan("Unary", codes.OK, ""), streamTree),

			unaryPropagated: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachInstrument(t, func(t *testing.T, instrument string) {
				var p probe
				e := newEnv(t, p.setup(setup{instrument: instrument, clientOpts: tc.client, serverOpts: tc.server}))
				ctx, rootSpan := e.rootContext(context.Background())
				callUnary(t, ctx, e.client, "u")
				callServerStream(t, ctx, e.client, "s", 2)
				rootSpan.Finish()
				e.tracer.waitSettled(t)
				diffTrees(t, asInstalled(tc.want, instrument), e.tracer.tree())

				p.mu.Lock()
				defer p.mu.Unlock()
				if len(p.seen) != 2 {
					t.Fatalf("handlers saw %d RPCs, want 2", len(p.seen))
				}
				unary, stream := p.seen[0], p.seen[1]
				if unary.HasSpan != tc.unaryServerSpan {
					t.Errorf("Unary handler's context carries a span: %v, want %v", unary.HasSpan, tc.unaryServerSpan)
				}
				if got := len(unary.MD.Get("mockpfx-ids-traceid")) == 1; got != tc.unaryPropagated {
					t.Errorf("Unary's metadata carries a span context: %v, want %v (metadata %v)", got, tc.unaryPropagated, unary.MD)
				}
				if !stream.HasSpan || len(stream.MD.Get("mockpfx-ids-traceid")) != 1 {
					t.Errorf("ServerStream handler saw span=%v metadata=%v, want a span and a span context", stream.HasSpan, stream.MD)
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

// ---------------------------------------------------------------------------
// WithOperationName

// TestOperationNameAllModes names spans with WithOperationName in every
// mode, and counts how often the function runs: its result is cached per
// method, and each constructor (each interceptor, each handler) has a
// cache of its own. Over several RPCs of each method, one after the other,
// the function must run exactly once per method per constructor that
// traces the RPC:
//
//   - client side: with the interceptors, Unary goes through the unary
//     interceptor only and ServerStream through the stream interceptor
//     only, so 1 per method; with the handler, 1 per method; with both,
//     the call span's interceptor and the attempt span's handler each name
//     the method once: 2 per method;
//   - server side: 1 per method in every mode; with both, the server
//     interceptors leave the RPC to the handler without naming it.
func TestOperationNameAllModes(t *testing.T) {
	forEachInstrument(t, func(t *testing.T, instrument string) {
		var mu sync.Mutex
		calls := map[string]int{} // "client /svc/Method" → calls
		naming := func(side string) grpctrace.Option {
			return grpctrace.WithOperationName(func(m string) string {
				mu.Lock()
				calls[side+" "+m]++
				mu.Unlock()
				return side + " op " + m[strings.LastIndexByte(m, '/')+1:]
			})
		}
		e := newEnv(t, setup{
			instrument: instrument,
			clientOpts: []grpctrace.Option{naming("client")},
			serverOpts: []grpctrace.Option{naming("server")},
		})
		ctx, rootSpan := e.rootContext(context.Background())
		const rounds = 3
		var want []node
		for range rounds {
			callUnary(t, ctx, e.client, "u")
			callServerStream(t, ctx, e.client, "s", 1)
			want = append(want,
				clientSpan("Unary", codes.OK, "").named("client op Unary").
					with(serverSpan("Unary", codes.OK, "").named("server op Unary")),
				clientSpan("ServerStream", codes.OK, "").named("client op ServerStream").
					with(serverSpan("ServerStream", codes.OK, "").named("server op ServerStream")))
		}
		rootSpan.Finish()
		e.tracer.waitSettled(t)
		diffTrees(t, asInstalled(root(want...), instrument), e.tracer.tree())

		perClientMethod := map[string]int{viaInterceptors: 1, viaHandlers: 1, viaBoth: 2}[instrument]
		wantCalls := map[string]int{
			"client " + unaryMethod:        perClientMethod,
			"client " + serverStreamMethod: perClientMethod,
			"server " + unaryMethod:        1,
			"server " + serverStreamMethod: 1,
		}
		mu.Lock()
		defer mu.Unlock()
		if diff := cmp.Diff(wantCalls, calls); diff != "" {
			t.Errorf("operation name calls over %d RPCs of each method (-want +got):\n%s", rounds, diff)
		}
	})
}

// ---------------------------------------------------------------------------
// WithParentRequired

// TestParentRequiredAllModes makes one RPC outside any trace, then one
// inside the test's trace, with WithParentRequired on the client, on the
// server, or both, in every mode. The whole tree is compared at the end,
// so a span of the first RPC would show as an extra root.
func TestParentRequiredAllModes(t *testing.T) {
	required := []grpctrace.Option{grpctrace.WithParentRequired()}
	cases := []struct {
		name           string
		client, server []grpctrace.Option
		untracedClient bool
		// want is the tree of both RPCs; outsideSpan, whether the handler
		// of the first must see a span.
		want        func(inside []node) []node
		outsideSpan bool
	}{
		{
			name:   "both sides",
			client: required, server: required,
			want: func(inside []node) []node { return inside },
		},
		{
			// The client records nothing and sends no span context; the
			// server, not required to have a parent, starts a trace.
			name:   "client only",
			client: required,
			want: func(inside []node) []node {
				return append([]node{serverSpan("Unary", codes.OK, "")}, inside...)
			},
			outsideSpan: true,
		},
		{
			// An untraced client: outside, nothing is sent; inside, the
			// test sends its span's context itself.
			name:   "server only, untraced client",
			server: required, untracedClient: true,
			want: func([]node) []node { return root(serverSpan("Unary", codes.OK, "")) },
		},
		{
			// A traced client always sends the span context of its own
			// span, root of a trace when the caller has none: the server
			// then has a parent.
			name:   "server only, traced client",
			server: required,
			want: func(inside []node) []node {
				return append([]node{clientSpan("Unary", codes.OK, "").with(serverSpan("Unary", codes.OK, ""))}, inside...)
			},
			outsideSpan: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachInstrument(t, func(t *testing.T, instrument string) {
				var p probe
				s := p.setup(setup{instrument: instrument, clientOpts: tc.client, serverOpts: tc.server})
				if tc.untracedClient {
					s.untracedSide = "client"
				}
				e := newEnv(t, s)
				callUnary(t, context.Background(), e.client, "outside")

				ctx, rootSpan := e.rootContext(context.Background())
				if tc.untracedClient {
					ctx = injectInto(t, e.tracer, ctx, rootSpan)
				}
				callUnary(t, ctx, e.client, "inside")
				rootSpan.Finish()
				e.tracer.waitSettled(t)
				inside := root(clientSpan("Unary", codes.OK, "").with(serverSpan("Unary", codes.OK, "")))
				diffTrees(t, asInstalled(tc.want(inside), instrument), e.tracer.tree())

				p.mu.Lock()
				defer p.mu.Unlock()
				if len(p.seen) != 2 {
					t.Fatalf("handlers saw %d RPCs, want 2", len(p.seen))
				}
				if p.seen[0].HasSpan != tc.outsideSpan || !p.seen[1].HasSpan {
					t.Errorf("handlers saw spans %v then %v, want %v then true", p.seen[0].HasSpan, p.seen[1].HasSpan, tc.outsideSpan)
				}
			})
		})
	}
}

// injectInto returns ctx with outgoing metadata carrying span's context,
// as a traced client would send it.
func injectInto(t *testing.T, tracer opentracing.Tracer, ctx context.Context, span opentracing.Span) context.Context {
	t.Helper()
	carrier := opentracing.TextMapCarrier{}
	if err := tracer.Inject(span.Context(), opentracing.TextMap, carrier); err != nil {
		t.Fatal(err)
	}
	md := metadata.MD{}
	for k, v := range carrier {
		md.Set(k, v)
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// ---------------------------------------------------------------------------
// WithErrorClassifier

// TestErrorClassifierAllModes gives each side a classifier of its own,
// each differing from that side's default: the client counts only NotFound
// as an error (by default every non-OK code is one), the server every
// non-OK code (by default NotFound is not). Every span keeps its status
// code tag; only the classified ones get error=true and the error event.
func TestErrorClassifierAllModes(t *testing.T) {
	clientClass := grpctrace.WithErrorClassifier(func(c codes.Code) bool { return c == codes.NotFound })
	serverClass := grpctrace.WithErrorClassifier(func(c codes.Code) bool { return c != codes.OK })
	forEachInstrument(t, func(t *testing.T, instrument string) {
		e := newEnv(t, setup{
			instrument: instrument,
			clientOpts: []grpctrace.Option{clientClass},
			serverOpts: []grpctrace.Option{serverClass},
		})
		if _, err := e.client.Unary(context.Background(), &testpb.Request{FailCode: int32(codes.NotFound), FailMessage: "nf"}); status.Code(err) != codes.NotFound {
			t.Fatalf("Unary: %v, want NotFound", err)
		}
		if _, err := e.client.Unary(context.Background(), &testpb.Request{FailCode: int32(codes.Internal), FailMessage: "broken"}); status.Code(err) != codes.Internal {
			t.Fatalf("Unary: %v, want Internal", err)
		}
		s, err := e.client.ServerStream(context.Background(), &testpb.Request{ResponseCount: 3, FailAfter: 1, FailCode: int32(codes.Internal), FailMessage: "mid-stream"})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := recvAll[testpb.Response](s); n != 1 || status.Code(err) != codes.Internal {
			t.Fatalf("ServerStream: %d responses then %v, want 1 then Internal", n, err)
		}
		callUnary(t, context.Background(), e.client, "ok")
		e.tracer.waitSettled(t)

		client := func(method string, code codes.Code) node { return rpcSpan(ext.SpanKindRPCClientEnum, method, code) }
		server := func(method string, code codes.Code) node { return rpcSpan(ext.SpanKindRPCServerEnum, method, code) }
		want := []node{
			client("Unary", codes.NotFound).failed(codes.NotFound, "nf").
				with(server("Unary", codes.NotFound).failed(codes.NotFound, "nf")),
			client("Unary", codes.Internal).
				with(server("Unary", codes.Internal).failed(codes.Internal, "broken")),
			client("ServerStream", codes.Internal).
				with(server("ServerStream", codes.Internal).failed(codes.Internal, "mid-stream")),
			client("Unary", codes.OK).with(server("Unary", codes.OK)),
		}
		diffTrees(t, asInstalled(want, instrument), e.tracer.tree())
	})
}

// ---------------------------------------------------------------------------
// WithPayloadLogging, WithPayloadLimit, WithPayloadRedactor

// The expected payloads are written out literally in Protocol Buffers text
// format rather than computed with prototext, so that the test does not
// check prototext against itself. prototext deliberately makes its output
// unstable: between two fields of a single-line text it writes one space or,
// chosen at random per build, two ("value:\"hi\"  seq:1"). Payloads are
// therefore compared with every run of spaces collapsed to one, on both
// sides; none of the test's string values holds a space.
var spaceRun = regexp.MustCompile(` {2,}`)

func collapseSpaces(s string) string { return spaceRun.ReplaceAllString(s, " ") }

// normalizePayloads returns nodes with the payload of every log collapsed.
func normalizePayloads(nodes []node) []node {
	out := cloneTrees(nodes)
	var walk func([]node)
	walk = func(ns []node) {
		for i := range ns {
			for _, l := range ns[i].Logs {
				if p, ok := l["payload"]; ok {
					l["payload"] = collapseSpaces(p)
				}
			}
			walk(ns[i].Children)
		}
	}
	walk(out)
	return out
}

// diffPayloadTrees is diffTrees with payloads normalized.
func diffPayloadTrees(t *testing.T, want, got []node) {
	t.Helper()
	diffTrees(t, normalizePayloads(want), normalizePayloads(got))
}

// payloadLog is the message event of payload logging; payload "" expects
// none (the redactor dropped it).
func payloadLog(dir, id, payload string) map[string]string {
	l := map[string]string{"event": "message", "message.type": dir, "message.id": id}
	if payload != "" {
		l["payload"] = payload
	}
	return l
}

// TestPayloadLoggingAllModes logs unary and bidi payloads in every mode:
// for the interceptors the messages they pass on, for the handlers the
// messages gRPC's stats events carry. Each side logs what it sent and
// received, numbered per direction.
func TestPayloadLoggingAllModes(t *testing.T) {
	logging := []grpctrace.Option{grpctrace.WithPayloadLogging()}
	forEachInstrument(t, func(t *testing.T, instrument string) {
		e := newEnv(t, setup{instrument: instrument, clientOpts: logging, serverOpts: logging})
		callUnary(t, context.Background(), e.client, "hi")

		b, err := e.client.Bidi(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range []string{"a", "bb"} {
			if err := b.Send(&testpb.Request{Value: v}); err != nil {
				t.Fatal(err)
			}
			if resp, err := b.Recv(); err != nil || resp.GetValue() != v || resp.GetSeq() != int32(i+1) {
				t.Fatalf("Bidi reply %v, %v; want value %q seq %d", resp, err, v, i+1)
			}
		}
		if err := b.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Recv(); err != io.EOF {
			t.Fatalf("Bidi ended with %v, want io.EOF", err)
		}
		e.tracer.waitSettled(t)

		want := []node{
			clientSpan("Unary", codes.OK, "").logged(
				payloadLog("SENT", "1", `value:"hi"`),
				payloadLog("RECEIVED", "1", `value:"hi" seq:1`),
			).with(serverSpan("Unary", codes.OK, "").logged(
				payloadLog("RECEIVED", "1", `value:"hi"`),
				payloadLog("SENT", "1", `value:"hi" seq:1`),
			)),
			clientSpan("Bidi", codes.OK, "").logged(
				payloadLog("SENT", "1", `value:"a"`),
				payloadLog("RECEIVED", "1", `value:"a" seq:1`),
				payloadLog("SENT", "2", `value:"bb"`),
				payloadLog("RECEIVED", "2", `value:"bb" seq:2`),
			).with(serverSpan("Bidi", codes.OK, "").logged(
				payloadLog("RECEIVED", "1", `value:"a"`),
				payloadLog("SENT", "1", `value:"a" seq:1`),
				payloadLog("RECEIVED", "2", `value:"bb"`),
				payloadLog("SENT", "2", `value:"bb" seq:2`),
				event("client half-close"),
			)),
		}
		diffPayloadTrees(t, asInstalled(want, instrument), e.tracer.tree())
	})
}

// TestPayloadLimitAllModes cuts payloads at 10 bytes in every mode. A text
// of exactly the limit is logged whole; a longer one is cut at the limit,
// or before it when the limit falls inside a character (é is two bytes in
// UTF-8: `value:"é` is 9 bytes, the 10th is the first half of the second
// é), and marked. Single-field requests keep prototext's random spacing
// out of the cut texts; in the responses it comes after the cut.
func TestPayloadLimitAllModes(t *testing.T) {
	opts := []grpctrace.Option{grpctrace.WithPayloadLogging(), grpctrace.WithPayloadLimit(10)}
	forEachInstrument(t, func(t *testing.T, instrument string) {
		e := newEnv(t, setup{instrument: instrument, clientOpts: opts, serverOpts: opts})
		callUnary(t, context.Background(), e.client, "hi")    // value:"hi" is 10 bytes
		callUnary(t, context.Background(), e.client, "ééééé") // value:"ééééé" is 17
		e.tracer.waitSettled(t)

		const (
			hi        = `value:"hi"`
			hiCut     = `value:"hi"…(truncated)`
			accentCut = `value:"é…(truncated)`
		)
		want := []node{
			clientSpan("Unary", codes.OK, "").logged(payloadLog("SENT", "1", hi), payloadLog("RECEIVED", "1", hiCut)).
				with(serverSpan("Unary", codes.OK, "").logged(payloadLog("RECEIVED", "1", hi), payloadLog("SENT", "1", hiCut))),
			clientSpan("Unary", codes.OK, "").logged(payloadLog("SENT", "1", accentCut), payloadLog("RECEIVED", "1", accentCut)).
				with(serverSpan("Unary", codes.OK, "").logged(payloadLog("RECEIVED", "1", accentCut), payloadLog("SENT", "1", accentCut))),
		}
		diffPayloadTrees(t, asInstalled(want, instrument), e.tracer.tree())
	})
}

// TestPayloadRedactorAllModes masks requests with a copy, replaces a
// first response with a plain string, and drops every later one, in every
// mode. The redactor is called with the RPC's method and a context that
// carries the span, and its masking never reaches the messages gRPC sends.
func TestPayloadRedactorAllModes(t *testing.T) {
	forEachInstrument(t, func(t *testing.T, instrument string) {
		var mu sync.Mutex
		var redacted []string // methods the redactor was called for
		var noSpan int
		redact := grpctrace.WithPayloadRedactor(func(ctx context.Context, method string, msg any) any {
			mu.Lock()
			redacted = append(redacted, method)
			if opentracing.SpanFromContext(ctx) == nil {
				noSpan++
			}
			mu.Unlock()
			switch m := msg.(type) {
			case *testpb.Request:
				return &testpb.Request{Value: strings.Repeat("*", len(m.GetValue()))}
			case *testpb.Response:
				if m.GetSeq() == 1 {
					return "<withheld>"
				}
			}
			return nil
		})
		opts := []grpctrace.Option{grpctrace.WithPayloadLogging(), redact}
		e := newEnv(t, setup{instrument: instrument, clientOpts: opts, serverOpts: opts})
		req := &testpb.Request{Value: "secret"}
		if resp, err := e.client.Unary(context.Background(), req); err != nil || resp.GetValue() != "secret" {
			t.Fatalf("Unary: %v, %v; want the unmasked echo", resp, err)
		}
		if req.GetValue() != "secret" {
			t.Fatalf("the redactor's masking reached the caller's request: %q", req.GetValue())
		}
		callServerStream(t, context.Background(), e.client, "secret", 2)
		e.tracer.waitSettled(t)

		const masked = `value:"******"`
		want := []node{
			clientSpan("Unary", codes.OK, "").logged(payloadLog("SENT", "1", masked), payloadLog("RECEIVED", "1", "<withheld>")).
				with(serverSpan("Unary", codes.OK, "").logged(payloadLog("RECEIVED", "1", masked), payloadLog("SENT", "1", "<withheld>"))),
			clientSpan("ServerStream", codes.OK, "").logged(
				payloadLog("SENT", "1", masked),
				payloadLog("RECEIVED", "1", "<withheld>"),
				payloadLog("RECEIVED", "2", ""),
			).with(serverSpan("ServerStream", codes.OK, "").logged(
				payloadLog("RECEIVED", "1", masked),
				payloadLog("SENT", "1", "<withheld>"),
				payloadLog("SENT", "2", ""),
			)),
		}
		diffPayloadTrees(t, asInstalled(want, instrument), e.tracer.tree())

		mu.Lock()
		defer mu.Unlock()
		// One call per message per span that logs it: 4 messages of Unary
		// and 6 of ServerStream over the client and server spans, and the
		// client's 2 plus 3 again on the attempt spans with both.
		wantCalls := map[string]int{viaInterceptors: 10, viaHandlers: 10, viaBoth: 15}[instrument]
		if len(redacted) != wantCalls {
			t.Errorf("redactor called %d times, want %d", len(redacted), wantCalls)
		}
		for _, m := range redacted {
			if m != unaryMethod && m != serverStreamMethod {
				t.Errorf("redactor called for method %q", m)
			}
		}
		if noSpan > 0 {
			t.Errorf("redactor called %d times with a context carrying no span", noSpan)
		}
	})
}

// ---------------------------------------------------------------------------
// Client stream: Header fails

// headerReportsErrors is a client stream interceptor, installed inside
// grpctrace's, whose streams report from Header the error that ends a
// stream before its headers, as streams other than gRPC's own may do.
// gRPC's own Header hides that error: it returns no metadata and a nil
// error, and leaves the status to RecvMsg. The wrapper reads the status
// with a RecvMsg of its own, so Header returns exactly that status.
func headerReportsErrors(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return headerErrStream{cs}, nil
}

type headerErrStream struct{ grpc.ClientStream }

func (s headerErrStream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	if err == nil && md == nil {
		if err = s.ClientStream.RecvMsg(new(testpb.Response)); err == nil || err == io.EOF {
			// Not a stream that failed before its headers.
			return nil, nil
		}
	}
	return md, err
}

// failingHeader is a client stream interceptor, inside grpctrace's, whose
// streams' Header fails with headerLost while the RPC itself goes on.
func failingHeader(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return lostHeaderStream{cs}, nil
}

var headerLost = status.Error(codes.Unavailable, "header lost")

type lostHeaderStream struct{ grpc.ClientStream }

func (lostHeaderStream) Header() (metadata.MD, error) { return nil, headerLost }

// clientSpansFinished returns the finished client spans' status codes.
func clientSpansFinished(r *recorder) []any {
	var got []any
	for _, s := range r.FinishedSpans() {
		if s.Tag("span.kind") == ext.SpanKindRPCClientEnum {
			got = append(got, s.Tag("rpc.grpc.status_code"))
		}
	}
	return got
}

// TestHeaderErrorEndsClientStream has the server refuse a server stream
// before sending anything, with PermissionDenied: the client span (the
// call span, and with the handler the attempt span) ends with exactly that
// status, once, whether Header reports the error (an inner interceptor's
// stream) or hides it as gRPC's own does, leaving it to Recv.
func TestHeaderErrorEndsClientStream(t *testing.T) {
	for _, reports := range []bool{true, false} {
		name := map[bool]string{true: "Header reports the error", false: "gRPC's Header hides it"}[reports]
		t.Run(name, func(t *testing.T) {
			forEachInstrument(t, func(t *testing.T, instrument string) {
				s := setup{instrument: instrument}
				if reports {
					s.dialOpts = []grpc.DialOption{grpc.WithChainStreamInterceptor(headerReportsErrors)}
				}
				e := newEnv(t, s)
				ctx, rootSpan := e.rootContext(context.Background())
				stream, err := e.client.ServerStream(ctx, &testpb.Request{FailCode: int32(codes.PermissionDenied), FailMessage: "go away"})
				if err != nil {
					t.Fatal(err)
				}
				md, err := stream.Header()
				if reports {
					if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != "go away" || md != nil {
						t.Fatalf("Header returned %v, %v; want no metadata and the server's PermissionDenied", md, err)
					}
					if instrument != viaHandlers {
						// The interceptor's call span ended in Header, with
						// its error, before anyone called Recv.
						if got := clientSpansFinished(e.tracer); len(got) == 0 {
							t.Errorf("no client span finished when Header returned its error")
						}
					}
				} else if err != nil && status.Code(err) != codes.PermissionDenied {
					t.Fatalf("Header returned %v; want nil (as gRPC does) or the server's status", err)
				}
				// The status again from Recv: the span must not end again.
				if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied {
					t.Fatalf("Recv returned %v, want PermissionDenied", err)
				}
				rootSpan.Finish()
				e.tracer.waitSettled(t) // fails if a span finished twice
				want := root(clientSpan("ServerStream", codes.PermissionDenied, "go away").
					with(serverSpan("ServerStream", codes.PermissionDenied, "go away")))
				diffTrees(t, asInstalled(want, instrument), e.tracer.tree())
			})
		})
	}
}

// TestHeaderFailureWinsOverLaterSuccess has an inner interceptor's stream
// fail Header while the RPC itself goes on and succeeds: the interceptor's
// call span ends with Header's error and keeps it, although the caller then
// reads the response and io.EOF. The client handler's attempt span, which
// sees only gRPC's RPC, ends OK.
func TestHeaderFailureWinsOverLaterSuccess(t *testing.T) {
	forEachInstrument(t, func(t *testing.T, instrument string) {
		e := newEnv(t, setup{instrument: instrument, dialOpts: []grpc.DialOption{grpc.WithChainStreamInterceptor(failingHeader)}})
		ctx, rootSpan := e.rootContext(context.Background())
		stream, err := e.client.ServerStream(ctx, &testpb.Request{Value: "v"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Header(); err != headerLost {
			t.Fatalf("Header returned %v, want %v", err, headerLost)
		}
		if n, err := recvAll[testpb.Response](stream); n != 1 || err != io.EOF {
			t.Fatalf("stream gave %d responses then %v, want 1 then io.EOF", n, err)
		}
		rootSpan.Finish()
		e.tracer.waitSettled(t)

		server := serverSpan("ServerStream", codes.OK, "")
		call := clientSpan("ServerStream", codes.Unavailable, "header lost")
		var want []node
		switch instrument {
		case viaInterceptors:
			want = root(call.with(server))
		case viaHandlers:
			want = asInstalled(root(clientSpan("ServerStream", codes.OK, "").with(server)), viaHandlers)
		case viaBoth:
			attempt := asInstalled([]node{clientSpan("ServerStream", codes.OK, "").with(server)}, viaBoth)[0].Children[0]
			want = root(call.with(attempt))
		}
		diffTrees(t, want, e.tracer.tree())
	})
}

// ---------------------------------------------------------------------------
// Server stream: failed RecvMsg and SendMsg

// bidiHandler is an innermost server stream interceptor that serves Bidi
// with handle instead of testpb's server, through the stream grpctrace's
// interceptor handed down (its *WrappedServerStream), and reports the
// error handle returns on done.
func bidiHandler(handle func(ss grpc.ServerStream) error, done chan<- error) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if info.FullMethod != bidiMethod {
			return h(srv, ss)
		}
		err := handle(ss)
		done <- err
		return err
	}
}

// TestServerStreamRecvSendErrorsLogged makes a server stream's RecvMsg or
// SendMsg fail, each in two deterministic ways, on the server interceptor
// path: the failure is logged on the server span as "receive error" or
// "send error" with the error's text, and the span ends with the status
// the handler returned.
func TestServerStreamRecvSendErrorsLogged(t *testing.T) {
	type outcome struct {
		clientCode codes.Code
		event      string
	}
	cases := []struct {
		name string
		// handle serves the server side; client drives the client side,
		// cancelling the call with cancel where the case needs it.
		handle func(ss grpc.ServerStream) error
		client func(t *testing.T, s grpc.BidiStreamingClient[testpb.Request, testpb.Response], cancel context.CancelFunc) error
		want   outcome
	}{
		{
			// The message cannot be decoded into a string: gRPC's codec
			// fails the receive.
			name: "RecvMsg fails to decode",
			handle: func(ss grpc.ServerStream) error {
				var notAMessage string
				return ss.RecvMsg(&notAMessage)
			},
			client: func(t *testing.T, s grpc.BidiStreamingClient[testpb.Request, testpb.Response], _ context.CancelFunc) error {
				if err := s.Send(&testpb.Request{Value: "a"}); err != nil {
					return err
				}
				_, err := s.Recv()
				return err
			},
			want: outcome{codes.Internal, "receive error"},
		},
		{
			// The handler is blocked in its second RecvMsg when the client,
			// having had the answer to its first message, cancels.
			name: "RecvMsg fails as the client cancels",
			handle: func(ss grpc.ServerStream) error {
				req := new(testpb.Request)
				if err := ss.RecvMsg(req); err != nil {
					return err
				}
				if err := ss.SendMsg(&testpb.Response{Value: req.GetValue(), Seq: 1}); err != nil {
					return err
				}
				return ss.RecvMsg(req)
			},
			client: cancelAfterFirstReply,
			want:   outcome{codes.Canceled, "receive error"},
		},
		{
			// A string is no proto message: gRPC's codec fails the send.
			name: "SendMsg fails to encode",
			handle: func(ss grpc.ServerStream) error {
				return ss.SendMsg("not a message")
			},
			client: func(t *testing.T, s grpc.BidiStreamingClient[testpb.Request, testpb.Response], _ context.CancelFunc) error {
				_, err := s.Recv()
				return err
			},
			want: outcome{codes.Internal, "send error"},
		},
		{
			// The handler answers the first message, waits for the client
			// to cancel, then sends. gRPC marks the stream done before it
			// cancels the stream's context, so the send fails.
			name: "SendMsg fails after the client cancelled",
			handle: func(ss grpc.ServerStream) error {
				req := new(testpb.Request)
				if err := ss.RecvMsg(req); err != nil {
					return err
				}
				if err := ss.SendMsg(&testpb.Response{Value: req.GetValue(), Seq: 1}); err != nil {
					return err
				}
				<-ss.Context().Done()
				return ss.SendMsg(&testpb.Response{Value: "too late", Seq: 2})
			},
			client: cancelAfterFirstReply,
			want:   outcome{codes.Canceled, "send error"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			e := newEnv(t, setup{innerStream: []grpc.StreamServerInterceptor{bidiHandler(tc.handle, done)}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ctx, rootSpan := e.rootContext(ctx)
			s, err := e.client.Bidi(ctx)
			if err != nil {
				t.Fatal(err)
			}
			clientErr := tc.client(t, s, cancel)
			if status.Code(clientErr) != tc.want.clientCode {
				t.Fatalf("client got %v, want code %v", clientErr, tc.want.clientCode)
			}
			rootSpan.Finish()
			e.tracer.waitSettled(t)
			var handlerErr error
			select {
			case handlerErr = <-done:
			default:
				t.Fatal("server span finished before the handler returned")
			}
			if handlerErr == nil {
				t.Fatalf("the handler's %s did not fail: the case's setup no longer makes it fail", tc.want.event)
			}
			st := status.Convert(handlerErr)
			// The handler returned the failed call's error: the status
			// the server span ends with, and for the decoding cases the
			// client's.
			server := serverSpan("Bidi", st.Code(), st.Message()).
				logged(map[string]string{"event": tc.want.event, "message": handlerErr.Error()})
			clientMsg := st.Message()
			if tc.want.clientCode == codes.Canceled {
				clientMsg = "context canceled"
				if st.Code() != codes.Canceled {
					t.Errorf("handler's error %v, want code Canceled", handlerErr)
				}
			}
			want := root(clientSpan("Bidi", tc.want.clientCode, clientMsg).with(server))
			diffTrees(t, want, e.tracer.tree())
		})
	}
}

// cancelAfterFirstReply sends a message, waits for its answer, cancels the
// call and returns what Recv then returns.
func cancelAfterFirstReply(t *testing.T, s grpc.BidiStreamingClient[testpb.Request, testpb.Response], cancel context.CancelFunc) error {
	if err := s.Send(&testpb.Request{Value: "a"}); err != nil {
		return err
	}
	if _, err := s.Recv(); err != nil {
		return err
	}
	cancel()
	_, err := s.Recv()
	return err
}

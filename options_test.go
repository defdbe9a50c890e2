package grpctrace_test

import (
	"context"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// probe is an innermost server interceptor that records what the handler
// would see in its context.
type probe struct {
	mu   sync.Mutex
	seen []seen
}

type seen struct {
	HasSpan bool
	// NoopSpan: the span is a NoopTracer's.
	NoopSpan bool
	Baggage  map[string]string
	MD       metadata.MD
}

func (p *probe) record(ctx context.Context) {
	s := seen{Baggage: map[string]string{}}
	if span := opentracing.SpanFromContext(ctx); span != nil {
		s.HasSpan = true
		_, s.NoopSpan = span.Tracer().(opentracing.NoopTracer)
		span.Context().ForeachBaggageItem(func(k, v string) bool { s.Baggage[k] = v; return true })
	}
	s.MD, _ = metadata.FromIncomingContext(ctx)
	p.mu.Lock()
	p.seen = append(p.seen, s)
	p.mu.Unlock()
}

func (p *probe) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		p.record(ctx)
		return h(ctx, req)
	}
}

func (p *probe) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		p.record(ss.Context())
		return h(srv, ss)
	}
}

func (p *probe) setup(s setup) setup {
	s.innerUnary = append(s.innerUnary, p.unary())
	s.innerStream = append(s.innerStream, p.stream())
	return s
}

func (p *probe) only(t *testing.T) seen {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) != 1 {
		t.Fatalf("probe saw %d RPCs, want 1", len(p.seen))
	}
	return p.seen[0]
}

func TestHandlerSeesSpanAndBaggage(t *testing.T) {
	for _, shape := range []string{"unary", "stream"} {
		t.Run(shape, func(t *testing.T) {
			var p probe
			e := newEnv(t, p.setup(setup{}))
			ctx, rootSpan := e.rootContext(context.Background())
			// Baggage gRPC cannot send as a plain header must still arrive.
			rootSpan.SetBaggageItem("plain", "ascii")
			rootSpan.SetBaggageItem("emoji", "héllo ✓")
			var err error
			if shape == "unary" {
				_, err = e.client.Unary(ctx, &testpb.Request{})
			} else {
				var s grpc.ServerStreamingClient[testpb.Response]
				if s, err = e.client.ServerStream(ctx, &testpb.Request{}); err == nil {
					_, err = recvAll[testpb.Response](s)
					if err.Error() == "EOF" {
						err = nil
					}
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			rootSpan.Finish()
			e.tracer.waitSettled(t)
			got := p.only(t)
			want := map[string]string{"plain": "ascii", "emoji": "héllo ✓"}
			if !got.HasSpan {
				t.Fatal("handler context carries no span")
			}
			if diff := cmp.Diff(want, got.Baggage); diff != "" {
				t.Errorf("handler's baggage (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCallerMetadataUntouched(t *testing.T) {
	var p probe
	e := newEnv(t, p.setup(setup{}))
	md := metadata.Pairs("user-key", "v")
	ctx := metadata.NewOutgoingContext(context.Background(), md)
	if _, err := e.client.Unary(ctx, &testpb.Request{}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(metadata.Pairs("user-key", "v"), md); diff != "" {
		t.Errorf("caller's metadata changed (-want +got):\n%s", diff)
	}
	got := p.only(t).MD
	if got.Get("user-key")[0] != "v" || len(got.Get("mockpfx-ids-traceid")) != 1 {
		t.Errorf("server metadata %v lacks the caller's key or the span context", got)
	}
	e.tracer.waitSettled(t)
}

func TestHostileIncomingMetadata(t *testing.T) {
	cases := []struct {
		name   string
		md     metadata.MD
		tracer func(*recorder) opentracing.Tracer
		want   node
	}{
		{
			name:   "tracer finds it corrupt",
			md:     metadata.Pairs("mockpfx-ids-traceid", "1", "mockpfx-ids-spanid", "x"),
			tracer: func(r *recorder) opentracing.Tracer { return failingExtract{r, nil} },
			want: serverSpan("Unary", codes.OK, "").logged(map[string]string{
				"event": "span context extraction failed", "message": opentracing.ErrSpanContextCorrupted.Error(),
			}),
		},
		{
			name:   "tracer panics",
			md:     metadata.Pairs("mockpfx-ids-traceid", "1"),
			tracer: func(r *recorder) opentracing.Tracer { return failingExtract{r, "index out of range"} },
			want: serverSpan("Unary", codes.OK, "").logged(map[string]string{
				"event": "span context extraction failed", "message": "tracer panicked extracting the span context: index out of range",
			}),
		},
		{
			name: "undecodable grpctrace-bin",
			md:   metadata.Pairs("grpctrace-bin", "\xff\xff\xff"),
			want: serverSpan("Unary", codes.OK, "").logged(map[string]string{
				"event": "span context extraction failed", "message": "grpctrace: undecodable entry in the grpctrace-bin header",
			}),
		},
		{
			name: "absent",
			md:   metadata.Pairs("x-other", "1"),
			want: serverSpan("Unary", codes.OK, ""),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, setup{untracedSide: "client", serverTracer: tc.tracer})
			ctx := metadata.NewOutgoingContext(context.Background(), tc.md)
			if _, err := e.client.Unary(ctx, &testpb.Request{Value: "x"}); err != nil {
				t.Fatalf("RPC failed with hostile metadata: %v", err)
			}
			e.tracer.waitSettled(t)
			diffTrees(t, []node{tc.want}, e.tracer.tree())
		})
	}
}

// failingExtract is a tracer whose extraction reports corrupt input, or
// panics, as a buggy tracer might on hostile headers.
type failingExtract struct {
	*recorder
	panicWith any
}

func (f failingExtract) Extract(any, any) (opentracing.SpanContext, error) {
	if f.panicWith != nil {
		panic(f.panicWith)
	}
	return nil, opentracing.ErrSpanContextCorrupted
}

func TestMessageEvents(t *testing.T) {
	e := newEnv(t, setup{
		serverOpts: []grpctrace.Option{grpctrace.WithMessageEvents()},
		clientOpts: []grpctrace.Option{grpctrace.WithMessageEvents()},
	})
	s, err := e.client.Bidi(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	reqs := []*testpb.Request{{Value: "a"}, {Value: "bbbb"}}
	var resps []*testpb.Response
	for _, r := range reqs {
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		resps = append(resps, resp)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := recvAll[testpb.Response](s); err.Error() != "EOF" {
		t.Fatal(err)
	}
	e.tracer.waitSettled(t)

	for i, r := range resps {
		if r.GetValue() != reqs[i].GetValue() || r.GetSeq() != int32(i+1) {
			t.Fatalf("reply %d is %v, want the echo of %v, seq %d", i+1, r, reqs[i], i+1)
		}
	}
	msg := func(dir string, id, size int) map[string]string {
		return map[string]string{
			"event": "message", "message.type": dir, "message.id": strconv.Itoa(id),
			"message.uncompressed_size": strconv.Itoa(size),
		}
	}
	// Wire sizes, worked out by hand: a string field is a tag byte, a
	// length byte and the bytes, an int32 field a tag byte and a varint
	// byte. Request "a": 3; "bbbb": 6; response "a", seq 1: 5; "bbbb",
	// seq 2: 8.
	client := clientSpan("Bidi", codes.OK, "").logged(
		msg("SENT", 1, 3), msg("RECEIVED", 1, 5),
		msg("SENT", 2, 6), msg("RECEIVED", 2, 8),
		event("close send"),
	)
	server := serverSpan("Bidi", codes.OK, "").logged(
		msg("RECEIVED", 1, 3), msg("SENT", 1, 5),
		msg("RECEIVED", 2, 6), msg("SENT", 2, 8),
		event("client half-close"),
	)
	diffTrees(t, []node{client.with(server)}, e.tracer.tree())
}

func TestPayloadLogging(t *testing.T) {
	e := newEnv(t, setup{
		serverOpts: []grpctrace.Option{grpctrace.WithPayloadLogging()},
		clientOpts: []grpctrace.Option{grpctrace.WithPayloadLogging()},
	})
	req := &testpb.Request{Value: "secret"}
	resp, err := e.client.Unary(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	e.tracer.waitSettled(t)
	if resp.GetValue() != "secret" || resp.GetSeq() != 1 {
		t.Fatalf("reply %v, want value secret, seq 1", resp)
	}
	// The payloads in the protobuf text format, written out: the request
	// and the server's echo of it.
	const reqText, respText = `value:"secret"`, `value:"secret" seq:1`
	payload := func(dir, text string) map[string]string {
		return map[string]string{"event": "message", "message.type": dir, "message.id": "1", "payload": text}
	}
	want := clientSpan("Unary", codes.OK, "").logged(payload("SENT", reqText), payload("RECEIVED", respText)).
		with(serverSpan("Unary", codes.OK, "").logged(payload("RECEIVED", reqText), payload("SENT", respText)))
	diffTrees(t, normPayloads([]node{want}), normPayloads(e.tracer.tree()))

	// A large payload is cut, never logged whole.
	big := &testpb.Request{Value: strings.Repeat("é", 10_000)}
	if _, err := e.client.Unary(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	e.tracer.waitSettled(t)
	cut := 0
	for _, s := range e.tracer.FinishedSpans() {
		for _, l := range s.Logs() {
			for _, f := range l.Fields {
				if f.Key != "payload" {
					continue
				}
				if len(f.ValueString) > 4096+len("…(truncated)") {
					t.Errorf("payload of %d bytes logged", len(f.ValueString))
				}
				if strings.HasSuffix(f.ValueString, "…(truncated)") {
					cut++
				}
			}
		}
	}
	// The big request and its echo, each logged sent and received.
	if cut != 4 {
		t.Errorf("%d payloads logged cut, want 4", cut)
	}
}

func TestDefaultsLogNoPayloadOrMessages(t *testing.T) {
	e := newEnv(t, setup{})
	s, err := e.client.Bidi(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&testpb.Request{Value: "secret"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := recvAll[testpb.Response](s); err.Error() != "EOF" {
		t.Fatal(err)
	}
	e.tracer.waitSettled(t)
	want := clientSpan("Bidi", codes.OK, "").with(serverSpan("Bidi", codes.OK, "").logged(event("client half-close")))
	diffTrees(t, []node{want}, e.tracer.tree())
}

func TestFilterAndOperationName(t *testing.T) {
	onlyUnary := grpctrace.WithFilter(func(_ context.Context, m string) bool { return strings.HasSuffix(m, "/Unary") })
	name := grpctrace.WithOperationName(func(m string) string { return "rpc " + m[strings.LastIndexByte(m, '/')+1:] })
	e := newEnv(t, setup{
		serverOpts: []grpctrace.Option{onlyUnary, name},
		clientOpts: []grpctrace.Option{onlyUnary, name},
	})
	if _, err := e.client.Unary(context.Background(), &testpb.Request{}); err != nil {
		t.Fatal(err)
	}
	s, err := e.client.ServerStream(context.Background(), &testpb.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := recvAll[testpb.Response](s); err.Error() != "EOF" {
		t.Fatal(err)
	}
	e.tracer.waitSettled(t)
	client, server := clientSpan("Unary", codes.OK, ""), serverSpan("Unary", codes.OK, "")
	client.Name, server.Name = "rpc Unary", "rpc Unary"
	diffTrees(t, []node{client.with(server)}, e.tracer.tree())
}

func TestSpanDecorator(t *testing.T) {
	for _, instrument := range instruments {
		t.Run(instrument, func(t *testing.T) { testSpanDecorator(t, instrument) })
	}
}

func testSpanDecorator(t *testing.T, instrument string) {
	var mu sync.Mutex
	var infos []grpctrace.RPCInfo
	deco := grpctrace.WithSpanDecorator(func(ctx context.Context, rpc grpctrace.RPCInfo) {
		span := opentracing.SpanFromContext(ctx)
		if span == nil {
			t.Errorf("decorator's context does not carry the span")
			return
		}
		span.SetTag("decorated", rpc.Client)
		mu.Lock()
		infos = append(infos, rpc)
		mu.Unlock()
	})
	e := newEnv(t, setup{instrument: instrument, serverOpts: []grpctrace.Option{deco}, clientOpts: []grpctrace.Option{deco, nil, grpctrace.WithTracer(nil)}})
	req := &testpb.Request{FailCode: int32(codes.NotFound), FailMessage: "nf"}
	_, rpcErr := e.client.Unary(context.Background(), req)
	e.tracer.waitSettled(t)
	client, server := clientSpan("Unary", codes.NotFound, "nf"), serverSpan("Unary", codes.NotFound, "nf")
	client.Tags["decorated"], server.Tags["decorated"] = true, false
	diffTrees(t, asInstalled([]node{client.with(server)}, instrument), e.tracer.tree())

	mu.Lock()
	defer mu.Unlock()
	// One call per span: with both front ends the client has a call span
	// and an attempt span.
	want := map[string]int{viaInterceptors: 2, viaHandlers: 2, viaBoth: 3}[instrument]
	if len(infos) != want {
		t.Fatalf("decorator called %d times, want %d", len(infos), want)
	}
	for _, info := range infos {
		if info.FullMethod != "/"+service+"/Unary" || info.Code != codes.NotFound || info.Response != nil ||
			status.Code(info.Err) != codes.NotFound {
			t.Errorf("decorator got %+v", info)
		}
		// The stats handlers do not see the unary request.
		if m, ok := info.Request.(proto.Message); ok && !proto.Equal(m, req) || !ok && instrument == viaInterceptors {
			t.Errorf("decorator got request %v, want %v", info.Request, req)
		}
	}
	if last := infos[len(infos)-1]; instrument != viaHandlers && last.Err != rpcErr {
		t.Errorf("client decorator got error %v, not the one returned to the caller", last.Err)
	}
}

func TestErrorClassifier(t *testing.T) {
	notFoundIsError := grpctrace.WithErrorClassifier(func(c codes.Code) bool { return c == codes.NotFound })
	e := newEnv(t, setup{serverOpts: []grpctrace.Option{notFoundIsError}, clientOpts: []grpctrace.Option{notFoundIsError}})
	for _, code := range []codes.Code{codes.NotFound, codes.Internal} {
		if _, err := e.client.Unary(context.Background(), &testpb.Request{FailCode: int32(code), FailMessage: "m"}); status.Code(err) != code {
			t.Fatalf("got %v, want %v", err, code)
		}
	}
	e.tracer.waitSettled(t)
	plain := func(kind ext.SpanKindEnum, code codes.Code) node { return rpcSpan(kind, "Unary", code) }
	want := []node{
		plain(ext.SpanKindRPCClientEnum, codes.NotFound).failed(codes.NotFound, "m").
			with(plain(ext.SpanKindRPCServerEnum, codes.NotFound).failed(codes.NotFound, "m")),
		plain(ext.SpanKindRPCClientEnum, codes.Internal).with(plain(ext.SpanKindRPCServerEnum, codes.Internal)),
	}
	diffTrees(t, want, e.tracer.tree())
}

func TestParentRequired(t *testing.T) {
	e := newEnv(t, setup{
		serverOpts: []grpctrace.Option{grpctrace.WithParentRequired()},
		clientOpts: []grpctrace.Option{grpctrace.WithParentRequired()},
	})
	if _, err := e.client.Unary(context.Background(), &testpb.Request{}); err != nil {
		t.Fatal(err)
	}
	// A server span would finish after the client has its response: let
	// every span started finish before counting.
	e.tracer.waitSettled(t)
	if n := len(e.tracer.FinishedSpans()); n != 0 {
		t.Fatalf("%d spans for an RPC outside any trace", n)
	}
	ctx, rootSpan := e.rootContext(context.Background())
	if _, err := e.client.Unary(ctx, &testpb.Request{}); err != nil {
		t.Fatal(err)
	}
	rootSpan.Finish()
	e.tracer.waitSettled(t)
	diffTrees(t, root(clientSpan("Unary", codes.OK, "").with(serverSpan("Unary", codes.OK, ""))), e.tracer.tree())
}

func TestPublicEndpoint(t *testing.T) {
	var p probe
	e := newEnv(t, p.setup(setup{serverOpts: []grpctrace.Option{grpctrace.WithPublicEndpoint()}}))
	ctx, rootSpan := e.rootContext(context.Background())
	rootSpan.SetBaggageItem("role", "admin")
	if _, err := e.client.Unary(ctx, &testpb.Request{}); err != nil {
		t.Fatal(err)
	}
	rootSpan.Finish()
	e.tracer.waitSettled(t)
	if seen := p.only(t); !seen.HasSpan || len(seen.Baggage) != 0 {
		t.Errorf("handler saw span=%v baggage=%v, want a span without the caller's baggage", seen.HasSpan, seen.Baggage)
	}
	// The server span is a root of its own; it records the caller's trace
	// identity, not its baggage.
	var client, server *node
	got := e.tracer.tree()
	for i := range got {
		switch got[i].Name {
		case "test":
			client = &got[i].Children[0]
		case "/" + service + "/Unary":
			server = &got[i]
		}
	}
	if client == nil || server == nil || len(client.Children) != 0 {
		t.Fatalf("want the test trace and a separate server root, got:\n%v", got)
	}
	clientMock := e.tracer.span(t, "/"+service+"/Unary", "client")
	want := serverSpan("Unary", codes.OK, "").logged(map[string]string{
		"event":               "untrusted parent",
		"mockpfx-ids-traceid": strconv.Itoa(clientMock.SpanContext.TraceID),
		"mockpfx-ids-spanid":  strconv.Itoa(clientMock.SpanContext.SpanID),
		"mockpfx-ids-sampled": "true",
	})
	diffTrees(t, []node{want}, []node{*server})
}

// TestChainedWithMiddleware puts grpctrace inside go-grpc-middleware v2
// chains: behind a selector that skips one method, in front of recovery.
func TestChainedWithMiddleware(t *testing.T) {
	var p probe
	tracer := newRecorder()
	notBidi := selector.MatchFunc(func(_ context.Context, m interceptors.CallMeta) bool { return m.Method != "Bidi" })
	s := p.setup(setup{
		serverUnary:  selector.UnaryServerInterceptor(grpctrace.UnaryServerInterceptor(grpctrace.WithTracer(tracer)), notBidi),
		serverStream: selector.StreamServerInterceptor(grpctrace.StreamServerInterceptor(grpctrace.WithTracer(tracer)), notBidi),
		untracedSide: "client",
	})
	e := newEnv(t, s)
	e.tracer = tracer
	if _, err := e.client.Unary(context.Background(), &testpb.Request{Panic: true}); status.Code(err) != codes.Internal {
		t.Fatalf("panic through recovery gave %v, want Internal", err)
	}
	b, err := e.client.Bidi(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := recvAll[testpb.Response](b); err.Error() != "EOF" {
		t.Fatal(err)
	}
	tracer.waitSettled(t)
	const panicMsg = "panic: " + testpb.PanicValue
	diffTrees(t, []node{serverSpan("Unary", codes.Internal, panicMsg)}, tracer.tree())
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) != 2 || !p.seen[0].HasSpan || p.seen[1].HasSpan {
		t.Errorf("handlers saw spans %+v, want the unary one only", p.seen)
	}
}

// TestNoopTracerDoesNothing uses the global tracer, a NoopTracer (tracing
// not configured yet): the RPC must run as untraced, with no metadata
// added, but handlers, in every install mode, find the tracer's no-op span
// in their context, as with the other OpenTracing integrations of gRPC, so
// that code that uses it unchecked keeps working.
func TestNoopTracerDoesNothing(t *testing.T) {
	if _, ok := opentracing.GlobalTracer().(opentracing.NoopTracer); !ok {
		t.Fatal("a test registered a global tracer")
	}
	for _, instrument := range instruments {
		t.Run(instrument, func(t *testing.T) {
			var p probe
			e := newEnv(t, p.setup(setup{useGlobalTracer: true, instrument: instrument}))
			if _, err := e.client.Unary(context.Background(), &testpb.Request{}); err != nil {
				t.Fatal(err)
			}
			if n, err := recvAll[testpb.Response](mustServerStream(t, e.client, context.Background())); err != io.EOF || n != 2 {
				t.Fatalf("server stream: %d responses, then %v; want 2, then EOF", n, err)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if len(p.seen) != 2 {
				t.Fatalf("probe saw %d RPCs, want 2", len(p.seen))
			}
			for i, got := range p.seen {
				if len(got.MD.Get("content-type")) == 0 {
					t.Fatalf("RPC %d: the handler saw metadata %v, without even gRPC's content-type", i, got.MD)
				}
				if !got.HasSpan || !got.NoopSpan {
					t.Errorf("RPC %d: handler context: span %v, no-op span %v; want the NoopTracer's span", i, got.HasSpan, got.NoopSpan)
				}
				for k := range got.MD {
					if strings.HasPrefix(k, "mockpfx") || k == "grpctrace-bin" {
						t.Errorf("RPC %d: metadata %q added under the NoopTracer", i, k)
					}
				}
			}
		})
	}
}

// An RPC the filter leaves untraced runs exactly as without grpctrace: its
// handler's context carries no span at all (as the documentation says).
func TestFilteredRPCHandlerSeesNoSpan(t *testing.T) {
	for _, instrument := range instruments {
		t.Run(instrument, func(t *testing.T) {
			var p probe
			none := grpctrace.WithFilter(func(context.Context, string) bool { return false })
			e := newEnv(t, p.setup(setup{instrument: instrument, serverOpts: []grpctrace.Option{none}}))
			if _, err := e.client.Unary(context.Background(), &testpb.Request{}); err != nil {
				t.Fatal(err)
			}
			if got := p.only(t); got.HasSpan {
				t.Errorf("handler of a filtered RPC sees a span (no-op: %v)", got.NoopSpan)
			}
		})
	}
}

func mustServerStream(t *testing.T, c testpb.TestServiceClient, ctx context.Context) testpb.TestService_ServerStreamClient {
	t.Helper()
	s, err := c.ServerStream(ctx, &testpb.Request{ResponseCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPayloadLimitAndRedactor(t *testing.T) {
	mask := grpctrace.WithPayloadRedactor(func(_ context.Context, method string, msg any) any {
		req, ok := msg.(*testpb.Request)
		if !ok {
			return nil // log no response payloads at all
		}
		masked := proto.Clone(req).(*testpb.Request)
		masked.Value = "***"
		return masked
	})
	opts := []grpctrace.Option{grpctrace.WithPayloadLogging(), mask, grpctrace.WithPayloadLimit(12)}
	e := newEnv(t, setup{serverOpts: opts, clientOpts: opts})
	req := &testpb.Request{Value: "card 4111 1111 1111 1111", SleepMs: 1}
	if _, err := e.client.Unary(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if req.Value != "card 4111 1111 1111 1111" {
		t.Fatalf("the redactor's masking reached the caller's message: %q", req.Value)
	}
	e.tracer.waitSettled(t)
	// The masked request is `value:"***" sleep_ms:1` in the text format;
	// its first 12 bytes, `value:"***" ` (prototext puts one or two spaces
	// between fields, never fewer), are kept, then the mark.
	const cut = `value:"***" …(truncated)`
	reqLog := func(dir string) map[string]string {
		return map[string]string{"event": "message", "message.type": dir, "message.id": "1", "payload": cut}
	}
	respLog := func(dir string) map[string]string {
		return map[string]string{"event": "message", "message.type": dir, "message.id": "1"}
	}
	want := clientSpan("Unary", codes.OK, "").logged(reqLog("SENT"), respLog("RECEIVED")).
		with(serverSpan("Unary", codes.OK, "").logged(reqLog("RECEIVED"), respLog("SENT")))
	diffTrees(t, normPayloads([]node{want}), normPayloads(e.tracer.tree()))
}

// normPayloads returns the trees with the whitespace of every logged
// payload normalised: runs of whitespace collapsed to one space, the ends
// trimmed. prototext deliberately makes its output unstable (it inserts an
// extra space between fields in some builds and not others, chosen by a
// hash of the test binary) so that nobody depends on its exact bytes; the
// expected payloads are written out literally, and only their whitespace
// may differ.
func normPayloads(nodes []node) []node {
	out := cloneTrees(nodes)
	for i := range out {
		for _, l := range out[i].Logs {
			if p, ok := l["payload"]; ok {
				l["payload"] = strings.Join(strings.Fields(p), " ")
			}
		}
		out[i].Children = normPayloads(out[i].Children)
	}
	return out
}

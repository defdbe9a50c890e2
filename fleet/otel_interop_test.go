package fleet

// grpctrace's OpenTelemetry path (WithTracerProvider, WithPropagators) next
// to what a fleet moving to OpenTelemetry runs: otelgrpc's stats handlers,
// grpctrace's own OpenTracing path through the OpenTelemetry bridge, and
// otgrpc through the bridge, all recording into one SDK with W3C trace
// context and baggage. The harness here (otelFleet, otelServer) is shared
// with otel_parity_test.go.

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
	otgrpc "github.com/opentracing-contrib/go-grpc"
	"github.com/opentracing/opentracing-go"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/baggage"
	otelbridge "go.opentelemetry.io/otel/bridge/opentracing"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/test/bufconn"
)

// otelFleet is one OpenTelemetry SDK (sampling everything, spans recorded
// in memory), the W3C propagators (trace context and baggage), and the
// OpenTracing bridge over the same SDK and propagators, as NewTracerPair
// makes it. Nothing global is set. The provider is shut down when the test
// ends.
type otelFleet struct {
	rec    *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	prop   propagation.TextMapPropagator
	bridge *otelbridge.BridgeTracer
	// tracer starts the callers' spans of the OpenTelemetry-native sides.
	tracer trace.Tracer

	mu       sync.Mutex
	warnings []string
}

func newOTelFleet(t testing.TB) *otelFleet {
	f := &otelFleet{rec: tracetest.NewSpanRecorder()}
	f.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(f.rec), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = f.tp.Shutdown(context.Background()) })
	f.prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	f.tracer = f.tp.Tracer("fleet")
	f.bridge, _ = otelbridge.NewTracerPair(f.tp.Tracer("fleet"))
	f.bridge.SetTextMapPropagator(f.prop)
	f.bridge.SetWarningHandler(func(msg string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.warnings = append(f.warnings, msg)
	})
	return f
}

// Warnings returns what the bridge warned about.
func (f *otelFleet) Warnings() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.warnings...)
}

// grpctraceOTel are the options of grpctrace's OpenTelemetry path.
func (f *otelFleet) grpctraceOTel() []grpctrace.Option {
	return []grpctrace.Option{grpctrace.WithTracerProvider(f.tp), grpctrace.WithPropagators(f.prop)}
}

// otelgrpcOptions are otelgrpc's, on the same SDK and propagators.
func (f *otelFleet) otelgrpcOptions() []otelgrpc.Option {
	return []otelgrpc.Option{otelgrpc.WithTracerProvider(f.tp), otelgrpc.WithPropagators(f.prop)}
}

// ended returns the spans the SDK has ended so far.
func (f *otelFleet) ended() []sdktrace.ReadOnlySpan { return f.rec.Ended() }

// endedSpan returns the ended span with this span context's IDs.
func (f *otelFleet) endedSpan(sc trace.SpanContext) (sdktrace.ReadOnlySpan, bool) {
	for _, s := range f.ended() {
		if s.SpanContext().TraceID() == sc.TraceID() && s.SpanContext().SpanID() == sc.SpanID() {
			return s, true
		}
	}
	return nil, false
}

// endedChildren returns the ended spans of the kind whose parent is the
// span with this span context's IDs.
func (f *otelFleet) endedChildren(parent trace.SpanContext, kind trace.SpanKind) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range f.ended() {
		if s.SpanKind() == kind && s.Parent().TraceID() == parent.TraceID() && s.Parent().SpanID() == parent.SpanID() {
			out = append(out, s)
		}
	}
	return out
}

// bridgeSpanContext returns the OpenTelemetry span context a span context
// of the bridge embeds; invalid for nil or a foreign one.
func bridgeSpanContext(sc opentracing.SpanContext) trace.SpanContext {
	if osc, ok := sc.(interface{ IsValid() bool }); ok && osc.IsValid() {
		if ids, ok := sc.(interface {
			TraceID() trace.TraceID
			SpanID() trace.SpanID
		}); ok {
			return trace.NewSpanContext(trace.SpanContextConfig{TraceID: ids.TraceID(), SpanID: ids.SpanID()})
		}
	}
	return trace.SpanContext{}
}

// otelSide is the instrumentation of one end of an RPC in otelFleet.
type otelSide string

const (
	// osGrpctraceOTel: grpctrace's interceptors, OpenTelemetry native.
	osGrpctraceOTel otelSide = "grpctrace-otel"
	// osGrpctraceOTelStats: grpctrace's stats handler, OpenTelemetry
	// native.
	osGrpctraceOTelStats otelSide = "grpctrace-otel-stats"
	// osOtelgrpc: otelgrpc v0.72.0's stats handler.
	osOtelgrpc otelSide = "otelgrpc"
	// osGrpctraceBridge: grpctrace's interceptors, OpenTracing through
	// the bridge (WithTracer(bridge)).
	osGrpctraceBridge otelSide = "grpctrace-bridge"
	// osGrpctraceBridgeStats: grpctrace's stats handler, OpenTracing
	// through the bridge.
	osGrpctraceBridgeStats otelSide = "grpctrace-bridge-stats"
	// osOtgrpc: otgrpc v0.1.4's interceptors, through the bridge.
	osOtgrpc otelSide = "otgrpc-bridge"
)

// allOTelSides lists every side, grpctrace's OpenTelemetry ones first.
var allOTelSides = []otelSide{osGrpctraceOTel, osGrpctraceOTelStats, osOtelgrpc, osGrpctraceBridge, osGrpctraceBridgeStats, osOtgrpc}

// grpctraceOTel reports whether the side is grpctrace's OpenTelemetry path.
func (s otelSide) grpctraceOTel() bool { return s == osGrpctraceOTel || s == osGrpctraceOTelStats }

// native reports whether the side's code uses the OpenTelemetry API: its
// caller sets baggage with go.opentelemetry.io/otel/baggage, its handler
// reads baggage.FromContext and trace.SpanFromContext. The other sides'
// code is OpenTracing's: SetBaggageItem, SpanFromContext, BaggageItem.
func (s otelSide) native() bool { return s.grpctraceOTel() || s == osOtelgrpc }

func (f *otelFleet) serverOptions(s otelSide) []grpc.ServerOption {
	switch s {
	case osGrpctraceOTel:
		return []grpc.ServerOption{
			grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(f.grpctraceOTel()...)),
			grpc.ChainStreamInterceptor(grpctrace.StreamServerInterceptor(f.grpctraceOTel()...)),
		}
	case osGrpctraceOTelStats:
		return []grpc.ServerOption{grpc.StatsHandler(grpctrace.NewServerHandler(f.grpctraceOTel()...))}
	case osOtelgrpc:
		return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(f.otelgrpcOptions()...))}
	case osGrpctraceBridge:
		return []grpc.ServerOption{
			grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(grpctrace.WithTracer(f.bridge))),
			grpc.ChainStreamInterceptor(grpctrace.StreamServerInterceptor(grpctrace.WithTracer(f.bridge))),
		}
	case osGrpctraceBridgeStats:
		return []grpc.ServerOption{grpc.StatsHandler(grpctrace.NewServerHandler(grpctrace.WithTracer(f.bridge)))}
	case osOtgrpc:
		return []grpc.ServerOption{
			grpc.ChainUnaryInterceptor(otgrpc.OpenTracingServerInterceptor(f.bridge)),
			grpc.ChainStreamInterceptor(otgrpc.OpenTracingStreamServerInterceptor(f.bridge)),
		}
	}
	panic("unknown side " + string(s))
}

func (f *otelFleet) clientOptions(s otelSide) []grpc.DialOption {
	switch s {
	case osGrpctraceOTel:
		return []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(f.grpctraceOTel()...)),
			grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(f.grpctraceOTel()...)),
		}
	case osGrpctraceOTelStats:
		return []grpc.DialOption{grpc.WithStatsHandler(grpctrace.NewClientHandler(f.grpctraceOTel()...))}
	case osOtelgrpc:
		return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(f.otelgrpcOptions()...))}
	case osGrpctraceBridge:
		return []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(grpctrace.WithTracer(f.bridge))),
			grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(grpctrace.WithTracer(f.bridge))),
		}
	case osGrpctraceBridgeStats:
		return []grpc.DialOption{grpc.WithStatsHandler(grpctrace.NewClientHandler(grpctrace.WithTracer(f.bridge)))}
	case osOtgrpc:
		return []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(otgrpc.OpenTracingClientInterceptor(f.bridge)),
			grpc.WithChainStreamInterceptor(otgrpc.OpenTracingStreamClientInterceptor(f.bridge)),
		}
	}
	panic("unknown side " + string(s))
}

// otelRecord is what a handler of otelServer found in its context, through
// either API.
type otelRecord struct {
	Method string
	// OTel is trace.SpanFromContext(ctx)'s span context, OTelBaggage the
	// members of baggage.FromContext(ctx) (nil when none).
	OTel        trace.SpanContext
	OTelBaggage map[string]string
	// OT is opentracing.SpanFromContext(ctx)'s span context (nil when
	// none), OTBaggage each key ForeachBaggageItem gives with what
	// BaggageItem returns for it.
	OT        opentracing.SpanContext
	OTBaggage map[string]string
	Metadata  metadata.MD
}

// otelServer is a TestService over bufconn, as tracedServer but with raw
// server options, recording what its handlers find through both APIs. It
// shares tracedServer's conventions: call tags each RPC with rpcIDKey, the
// handler echoes it in a trailer, and a last stats handler tells call the
// server ended the RPC (so every side's server span has ended).
type otelServer struct {
	lis *bufconn.Listener

	mu   sync.Mutex
	rpcs map[string]*otelEntry
}

type otelEntry struct {
	rec  otelRecord
	done chan struct{} // closed once gRPC ended the RPC on the server
}

// startOTelServer serves TestService with the options, then the end
// watcher; the server stops when the test ends.
func startOTelServer(t testing.TB, opts ...grpc.ServerOption) *otelServer {
	t.Helper()
	s := &otelServer{lis: bufconn.Listen(1 << 20), rpcs: map[string]*otelEntry{}}
	// Last: gRPC calls stats handlers in order and reports stats.End
	// after the interceptors returned and the status was written.
	opts = append(opts, grpc.StatsHandler(otelEndWatcher{s}))
	srv := grpc.NewServer(opts...)
	testpb.RegisterTestServiceServer(srv, &otelRecordingService{s: s, impl: testpb.NewServer()})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(s.lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return s
}

// dial connects through a client with the options ("passthrough:///bufnet");
// the connection is closed when the test ends.
func (s *otelServer) dial(t testing.TB, opts ...grpc.DialOption) testpb.TestServiceClient {
	t.Helper()
	opts = append(opts,
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	conn, err := grpc.NewClient("passthrough:///bufnet", opts...)
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return testpb.NewTestServiceClient(conn)
}

// otelInvoke makes one RPC under ctx and returns its trailer and error;
// serverEnded is closed once the server ended the RPC (for an RPC that
// must wait for the server's end before going on).
type otelInvoke func(ctx context.Context, serverEnded <-chan struct{}) (metadata.MD, error)

// invokeKind is invoke's RPC of the kind as an otelInvoke.
func invokeKind(c testpb.TestServiceClient, kind rpcKind, req *testpb.Request) otelInvoke {
	return func(ctx context.Context, _ <-chan struct{}) (metadata.MD, error) { return invoke(ctx, c, kind, req) }
}

// call makes the RPC and returns what the handler found and the RPC's
// error. When the handler ran, call returns once the server ended the RPC.
// The client's spans have ended too: gRPC ends an attempt, and grpctrace's
// interceptors their span, before the RPC returns its status to the caller.
func (s *otelServer) call(ctx context.Context, do otelInvoke) (otelRecord, error) {
	id := strconv.FormatUint(rpcIDs.Add(1), 10)
	e := &otelEntry{done: make(chan struct{})}
	s.mu.Lock()
	s.rpcs[id] = e
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.rpcs, id)
		s.mu.Unlock()
	}()
	trailer, err := do(metadata.AppendToOutgoingContext(ctx, rpcIDKey, id), e.done)
	if ids := trailer.Get(rpcIDKey); len(ids) == 0 || ids[0] != id {
		return otelRecord{}, err
	}
	timer := time.NewTimer(serverEndTimeout)
	defer timer.Stop()
	select {
	case <-e.done:
	case <-timer.C:
		return otelRecord{}, fmt.Errorf("server did not end RPC %s within %v (and: %v)", id, serverEndTimeout, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return e.rec, err
}

func (s *otelServer) entry(ctx context.Context) (string, *otelEntry) {
	ids := metadata.ValueFromIncomingContext(ctx, rpcIDKey)
	if len(ids) == 0 {
		return "", nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return ids[0], s.rpcs[ids[0]]
}

// record files what the handler finds in ctx and returns the trailer that
// tells call the handler ran.
func (s *otelServer) record(ctx context.Context, method string) metadata.MD {
	id, e := s.entry(ctx)
	if e == nil {
		return nil
	}
	rec := otelRecord{Method: method, OTel: trace.SpanFromContext(ctx).SpanContext()}
	rec.Metadata, _ = metadata.FromIncomingContext(ctx)
	for _, m := range baggage.FromContext(ctx).Members() {
		if rec.OTelBaggage == nil {
			rec.OTelBaggage = map[string]string{}
		}
		rec.OTelBaggage[m.Key()] = m.Value()
	}
	if span := opentracing.SpanFromContext(ctx); span != nil {
		rec.OT = span.Context()
		rec.OT.ForeachBaggageItem(func(k, _ string) bool {
			if rec.OTBaggage == nil {
				rec.OTBaggage = map[string]string{}
			}
			rec.OTBaggage[k] = span.BaggageItem(k)
			return true
		})
	}
	s.mu.Lock()
	e.rec = rec
	s.mu.Unlock()
	return metadata.Pairs(rpcIDKey, id)
}

type otelRecordingService struct {
	testpb.UnimplementedTestServiceServer
	s    *otelServer
	impl *testpb.Server
}

func (r *otelRecordingService) Unary(ctx context.Context, req *testpb.Request) (*testpb.Response, error) {
	if md := r.s.record(ctx, testpb.TestService_Unary_FullMethodName); md != nil {
		_ = grpc.SetTrailer(ctx, md)
	}
	return r.impl.Unary(ctx, req)
}

func (r *otelRecordingService) ServerStream(req *testpb.Request, stream testpb.TestService_ServerStreamServer) error {
	stream.SetTrailer(r.s.record(stream.Context(), testpb.TestService_ServerStream_FullMethodName))
	return r.impl.ServerStream(req, stream)
}

func (r *otelRecordingService) ClientStream(stream testpb.TestService_ClientStreamServer) error {
	stream.SetTrailer(r.s.record(stream.Context(), testpb.TestService_ClientStream_FullMethodName))
	return r.impl.ClientStream(stream)
}

func (r *otelRecordingService) Bidi(stream testpb.TestService_BidiServer) error {
	stream.SetTrailer(r.s.record(stream.Context(), testpb.TestService_Bidi_FullMethodName))
	return r.impl.Bidi(stream)
}

// otelEndWatcher is endWatcher for otelServer.
type otelEndWatcher struct{ s *otelServer }

type otelEndWatcherKey struct{}

func (w otelEndWatcher) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	if _, e := w.s.entry(ctx); e != nil {
		return context.WithValue(ctx, otelEndWatcherKey{}, e)
	}
	return ctx
}

func (otelEndWatcher) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.End); !ok {
		return
	}
	if e, ok := ctx.Value(otelEndWatcherKey{}).(*otelEntry); ok {
		close(e.done)
	}
}

func (otelEndWatcher) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (otelEndWatcher) HandleConn(context.Context, stats.ConnStats) {}

// otelInteropBaggage: one baggage item per column, under the key "item",
// with values that need escaping in a header in every way a propagator or
// a bridge may get wrong (space, '+', '%', the W3C baggage delimiters,
// non-ASCII).
var otelInteropBaggage = []struct{ label, value string }{
	{"plain", "plain"},
	{"a b", "a b"},
	{"a+b", "a+b"},
	{"100%", "100%"},
	{"x,y=z;q", "x,y=z;q"},
	{"Zoë", "Zoë"},
	{"日本", "日本"},
}

const otelBaggageKey = "item"

// TestOTelInterop puts grpctrace's OpenTelemetry path as client against
// otelgrpc, grpctrace's OpenTracing path through the bridge and otgrpc
// through the bridge as servers, and the other way round, all on one SDK
// and the W3C propagators, and checks that trace and baggage cross intact:
// the server span (the handler's) is the client span's child in the
// caller's trace, from the SDK's recorded spans, and the handler reads the
// caller's baggage item as set, through the API its side's code uses. Every
// pair with a grpctrace OpenTelemetry side is asserted; the others are
// printed for reference.
func TestOTelInterop(t *testing.T) {
	f := newOTelFleet(t)
	rows := []interopRow{otelPropagatorsAlone(t, f)}
	servers := map[otelSide]*otelServer{}
	for _, s := range allOTelSides {
		servers[s] = startOTelServer(t, f.serverOptions(s)...)
	}
	for _, client := range allOTelSides {
		for _, server := range allOTelSides {
			c := servers[server].dial(t, f.clientOptions(client)...)
			for _, kind := range interopKinds {
				row := interopRow{
					pair:     fmt.Sprintf("%s → %s", client, server),
					kind:     string(kind),
					asserted: client.grpctraceOTel() || server.grpctraceOTel(),
				}
				t.Run(fmt.Sprintf("%s-to-%s/%s", client, server, kind), func(t *testing.T) {
					for _, b := range otelInteropBaggage {
						cell := otelInteropCall(t, f, servers[server], c, client, server, kind, b.value)
						row.cells = append(row.cells, cell)
						if row.asserted && !cell.intact() {
							t.Errorf("baggage %s: %s", b.label, cell.problem())
						}
					}
				})
				rows = append(rows, row)
			}
		}
	}
	if w := f.Warnings(); len(w) > 0 {
		t.Logf("the bridge warned: %q", w)
	}
	t.Log(formatOTelInteropTable(rows))
}

// otelPropagatorsAlone is the table's reference row: each item through the
// propagators into an http.Header and back, without gRPC.
func otelPropagatorsAlone(t *testing.T, f *otelFleet) interopRow {
	t.Helper()
	row := interopRow{pair: "propagators alone, http.Header", kind: "-"}
	for _, b := range otelInteropBaggage {
		ctx := withBaggageItem(t, t.Context(), otelBaggageKey, b.value)
		ctx, span := f.tracer.Start(ctx, "fleet.roundtrip")
		h := propagation.HeaderCarrier{}
		f.prop.Inject(ctx, h)
		span.End()
		got := map[string]string{}
		for _, m := range baggage.FromContext(f.prop.Extract(context.Background(), h)).Members() {
			got[m.Key()] = m.Value()
		}
		row.cells = append(row.cells, interopCell{traceOK: true, got: got, want: map[string]string{otelBaggageKey: b.value}})
	}
	return row
}

// withBaggageItem returns ctx with OpenTelemetry baggage of one member,
// its value raw (not percent-encoded: the propagator encodes).
func withBaggageItem(t *testing.T, ctx context.Context, key, value string) context.Context {
	t.Helper()
	m, err := baggage.NewMemberRaw(key, value)
	if err != nil {
		t.Fatalf("baggage member %s=%q: %v", key, value, err)
	}
	bag, err := baggage.New(m)
	if err != nil {
		t.Fatalf("baggage of %s=%q: %v", key, value, err)
	}
	return baggage.ContextWithBaggage(ctx, bag)
}

// otelInteropCall makes one RPC under a caller's span carrying one baggage
// item, set as the client side's code sets it, and checks the trace and
// what the handler read, as the server side's code reads it.
func otelInteropCall(t *testing.T, f *otelFleet, srv *otelServer, c testpb.TestServiceClient, client, server otelSide, kind rpcKind, value string) interopCell {
	t.Helper()
	var (
		ctx    context.Context
		caller trace.SpanContext
		finish func()
	)
	if client.native() {
		var span trace.Span
		ctx, span = f.tracer.Start(withBaggageItem(t, t.Context(), otelBaggageKey, value), "fleet.caller")
		caller, finish = span.SpanContext(), func() { span.End() }
	} else {
		span := f.bridge.StartSpan("fleet.caller")
		span.SetBaggageItem(otelBaggageKey, value)
		ctx = opentracing.ContextWithSpan(t.Context(), span)
		caller, finish = bridgeSpanContext(span.Context()), span.Finish
	}
	rec, err := srv.call(ctx, invokeKind(c, kind, &testpb.Request{Value: "v"}))
	finish()
	cell := interopCell{err: err, want: map[string]string{otelBaggageKey: value}, packed: len(rec.Metadata.Get(packedHeader)) > 0}
	handler := rec.OTel
	cell.got = rec.OTelBaggage
	if !server.native() {
		handler = bridgeSpanContext(rec.OT)
		cell.got = rec.OTBaggage
	}
	cell.traceOK, cell.traceNote = checkOTelTrace(f, caller, handler)
	return cell
}

// checkOTelTrace checks, from the SDK's ended spans, that the caller's
// span has exactly one client child, and that the handler's span is a
// server span, child of that client span through a remote parent, in the
// caller's trace.
func checkOTelTrace(f *otelFleet, caller, handler trace.SpanContext) (bool, string) {
	if !caller.IsValid() {
		return false, "the caller's span context is invalid"
	}
	clients := f.endedChildren(caller, trace.SpanKindClient)
	if len(clients) != 1 {
		return false, fmt.Sprintf("%d ended client spans under the caller's span, want 1", len(clients))
	}
	client := clients[0]
	if !handler.IsValid() {
		return false, "the handler's context has no valid span"
	}
	server, ok := f.endedSpan(handler)
	switch {
	case !ok:
		return false, "the handler's span has not ended"
	case server.SpanKind() != trace.SpanKindServer:
		return false, fmt.Sprintf("the handler's span has kind %s", server.SpanKind())
	case server.SpanContext().TraceID() != caller.TraceID():
		return false, fmt.Sprintf("server span in trace %s, the caller in %s", server.SpanContext().TraceID(), caller.TraceID())
	case server.Parent().SpanID() != client.SpanContext().SpanID():
		return false, fmt.Sprintf("server span's parent is %s, the client span is %s", server.Parent().SpanID(), client.SpanContext().SpanID())
	case !server.Parent().IsRemote():
		return false, "server span's parent is not remote"
	}
	return true, ""
}

// formatOTelInteropTable lays the rows out as formatInteropTable does,
// with otelInteropBaggage's columns.
func formatOTelInteropTable(rows []interopRow) string {
	header := []string{"client → server", "kind", "checked", "trace"}
	for _, b := range otelInteropBaggage {
		header = append(header, b.label)
	}
	lines := [][]string{header}
	packed := 0
	for _, r := range rows {
		checked, tr := "ref", "ok"
		if r.asserted {
			checked = "assert"
		}
		broken := 0
		for _, c := range r.cells {
			if !c.traceOK {
				broken++
			}
			if c.packed {
				packed++
			}
		}
		if broken > 0 {
			tr = fmt.Sprintf("broken %d/%d", broken, len(r.cells))
		}
		if r.kind == "-" {
			tr = "-"
		}
		line := []string{r.pair, r.kind, checked, tr}
		for _, c := range r.cells {
			line = append(line, c.text())
		}
		lines = append(lines, line)
	}
	widths := make([]int, len(header))
	for _, l := range lines {
		for i, cell := range l {
			widths[i] = max(widths[i], displayWidth(cell))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "fleet OpenTelemetry interop table, one SDK, W3C trace context and baggage, key %q (checked: assert = a grpctrace OpenTelemetry side, every cell must be ok; ref = reference only; RPCs that needed the %s header: %d)\n", otelBaggageKey, packedHeader, packed)
	for n, l := range lines {
		writeTableLine(&b, l, widths)
		if n == 0 {
			sep := make([]string, len(widths))
			for i, w := range widths {
				sep[i] = strings.Repeat("-", w)
			}
			writeTableLine(&b, sep, widths)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

package demo

import (
	"context"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func attr(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

func hasEvent(s sdktrace.ReadOnlySpan, name string) bool {
	for _, e := range s.Events() {
		if e.Name == name {
			return true
		}
	}
	return false
}

// Run over a real loopback connection, with the OpenTelemetry bridge, and
// RunOpenTelemetry with grpctrace recording natively through OpenTelemetry:
// one trace, the demo span at its root, a client span per call under it
// and the server's span under each client span, with the kinds, status
// codes, error statuses, baggage and events the calls call for.
func TestRunTraceShape(t *testing.T) {
	t.Run("opentracing", func(t *testing.T) { testRunTraceShape(t, false) })
	t.Run("opentelemetry", func(t *testing.T) { testRunTraceShape(t, true) })
}

// runDemo runs the demo's calls over loopback with tracing, through
// OpenTelemetry natively (otel) or through the bridge, and returns what
// Run returned once the server has stopped.
func runDemo(t *testing.T, tracing *Tracing, otel bool, target string) (Result, error) {
	t.Helper()
	opts := Options{Tracer: tracing.Tracer, MessageEvents: true}
	if otel {
		opts = Options{TracerProvider: tracing.Provider, Propagators: tracing.Propagators, MessageEvents: true}
	}
	var srv *grpc.Server
	if target == "" {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv = NewServer(opts)
		go srv.Serve(lis)
		target = lis.Addr().String()
	}
	conn, err := Dial(target, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	callCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var res Result
	if otel {
		res, err = RunOpenTelemetry(callCtx, tracing.Provider, conn)
	} else {
		res, err = Run(callCtx, tracing.Tracer, conn)
	}
	if srv != nil {
		conn.Close()
		srv.GracefulStop()
	}
	return res, err
}

// statusCodeOf is the gRPC status code an RPC span records, by the
// conventions of its path.
func statusCodeOf(t *testing.T, s sdktrace.ReadOnlySpan, otel bool) (codes.Code, bool) {
	t.Helper()
	if !otel {
		v, ok := attr(s, "rpc.grpc.status_code")
		return codes.Code(v.AsInt64()), ok && v.Type() == attribute.INT64
	}
	v, ok := attr(s, "rpc.response.status_code")
	var c codes.Code
	if !ok || v.Type() != attribute.STRING || c.UnmarshalJSON([]byte(`"`+v.AsString()+`"`)) != nil {
		return 0, false
	}
	return c, true
}

func testRunTraceShape(t *testing.T, otel bool) {
	ctx := context.Background()
	tracing, err := NewTracing(ctx, TracingConfig{ServiceName: "demo-test", Record: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tracing.Shutdown(ctx)

	res, err := runDemo(t, tracing, otel, "")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	wantCalls := []struct {
		name, method string
		code         codes.Code
	}{
		{"unary", "Unary", codes.OK},
		{"server-stream", "ServerStream", codes.OK},
		{"client-stream", "ClientStream", codes.OK},
		{"bidi", "Bidi", codes.OK},
		{"unary-fail", "Unary", codes.NotFound},
		{"unary-panic", "Unary", codes.Internal},
	}
	if len(res.Calls) != len(wantCalls) {
		t.Fatalf("Run made %d calls, want %d", len(res.Calls), len(wantCalls))
	}
	for i, w := range wantCalls {
		c := res.Calls[i]
		if c.Name != w.name || c.Method != "/grpctrace.testpb.TestService/"+w.method || c.Code != w.code {
			t.Errorf("call %d = %s %s %v, want %s %s %v", i, c.Name, c.Method, c.Code, w.name, w.method, w.code)
		}
	}

	spans := tracing.Spans()
	if len(spans) != 13 {
		t.Fatalf("recorded %d spans, want 13 (the demo span, 6 client, 6 server)", len(spans))
	}
	traceID := res.TraceID
	if !otel && traceID != TraceID(res.Root) {
		t.Errorf("Result.TraceID %s, root's %s", traceID, TraceID(res.Root))
	}
	if otel && res.Root != nil {
		t.Errorf("RunOpenTelemetry returned an OpenTracing root %v", res.Root)
	}
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	var root sdktrace.ReadOnlySpan
	for _, s := range spans {
		if got := s.SpanContext().TraceID().String(); got != traceID {
			t.Errorf("span %s in trace %s, want %s", s.Name(), got, traceID)
		}
		byID[s.SpanContext().SpanID()] = s
		if s.Name() == RootOperation {
			root = s
		}
	}
	if root == nil || root.Parent().IsValid() {
		t.Fatalf("no parentless %q span among %d", RootOperation, len(spans))
	}

	// The client spans, children of the root, in the order of the calls.
	var clients []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.SpanKind() == trace.SpanKindClient {
			clients = append(clients, s)
		}
	}
	if len(clients) != 6 {
		t.Fatalf("%d client spans, want 6", len(clients))
	}
	for i := 1; i < len(clients); i++ {
		if clients[i].StartTime().Before(clients[i-1].StartTime()) {
			clients[i], clients[i-1] = clients[i-1], clients[i]
			i = 0
		}
	}
	servers := map[trace.SpanID]sdktrace.ReadOnlySpan{} // by parent
	for _, s := range spans {
		if s.SpanKind() == trace.SpanKindServer {
			if p, ok := byID[s.Parent().SpanID()]; !ok || p.SpanKind() != trace.SpanKindClient {
				t.Errorf("server span %s: parent %s is not a client span", s.Name(), s.Parent().SpanID())
			}
			servers[s.Parent().SpanID()] = s
		}
	}
	for i, c := range clients {
		w := wantCalls[i]
		full := "/grpctrace.testpb.TestService/" + w.method
		if otel {
			full = full[1:] // OpenTelemetry's name: no leading "/"
		}
		if c.Name() != full || c.Parent().SpanID() != root.SpanContext().SpanID() {
			t.Errorf("client span %d: %s, parent %s; want %s under the root", i, c.Name(), c.Parent().SpanID(), full)
		}
		s, ok := servers[c.SpanContext().SpanID()]
		if !ok {
			t.Errorf("%s: no server span under the client span", w.name)
			continue
		}
		if s.Name() != full {
			t.Errorf("%s: server span %s, want %s", w.name, s.Name(), full)
		}
		for side, span := range map[string]sdktrace.ReadOnlySpan{"client": c, "server": s} {
			if got, ok := statusCodeOf(t, span, otel); !ok || got != w.code {
				t.Errorf("%s %s: status code %v (recorded: %v), want %v", w.name, side, got, ok, w.code)
			}
			if otel && span.InstrumentationScope().Name != "github.com/c2e00e20/grpctrace" {
				t.Errorf("%s %s: scope %q, want grpctrace's own", w.name, side, span.InstrumentationScope().Name)
			}
		}
		if otel && !s.Parent().IsRemote() {
			t.Errorf("%s server: parent not remote", w.name)
		}
		// Clients count every non-OK code as an error; servers not
		// NotFound, which blames the request.
		wantClientErr := w.code != codes.OK
		wantServerErr := w.code == codes.Internal
		if got := c.Status().Code == otelcodes.Error; got != wantClientErr {
			t.Errorf("%s client: error status %v, want %v", w.name, got, wantClientErr)
		}
		if got := s.Status().Code == otelcodes.Error; got != wantServerErr {
			t.Errorf("%s server: error status %v, want %v", w.name, got, wantServerErr)
		}
		if v, _ := attr(s, BaggageTag); v.AsString() != BaggageValue {
			t.Errorf("%s server: %s = %q, want the client's baggage %q", w.name, BaggageTag, v.AsString(), BaggageValue)
		}
		if got, want := hasEvent(s, EventPanicRecovered), w.name == "unary-panic"; got != want {
			t.Errorf("%s server: %q event %v, want %v", w.name, EventPanicRecovered, got, want)
		}
		if !hasEvent(c, "message") || !hasEvent(s, "message") {
			t.Errorf("%s: message events missing", w.name)
		}
		// Each server span lies within its client span.
		if s.StartTime().Before(c.StartTime()) || s.EndTime().After(c.EndTime()) {
			t.Errorf("%s: server span [%v, %v] outside the client span [%v, %v]", w.name, s.StartTime(), s.EndTime(), c.StartTime(), c.EndTime())
		}
	}
}

// A call that does not end as planned makes Run (and RunOpenTelemetry)
// fail and marks the root.
func TestRunReportsUnexpectedOutcome(t *testing.T) {
	t.Run("opentracing", func(t *testing.T) { testRunReportsUnexpectedOutcome(t, false) })
	t.Run("opentelemetry", func(t *testing.T) { testRunReportsUnexpectedOutcome(t, true) })
}

func testRunReportsUnexpectedOutcome(t *testing.T, otel bool) {
	ctx := context.Background()
	tracing, err := NewTracing(ctx, TracingConfig{Record: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tracing.Shutdown(ctx)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nobody listens there any more
	res, err := runDemo(t, tracing, otel, addr)
	if err == nil {
		t.Fatal("Run without a server: no error")
	}
	for _, c := range res.Calls {
		if c.Code != codes.Unavailable {
			t.Errorf("%s: %v, want Unavailable", c.Name, c.Code)
		}
	}
	roots := 0
	for _, s := range tracing.Spans() {
		if s.Name() == RootOperation {
			roots++
			if s.Status().Code != otelcodes.Error {
				t.Errorf("root span status %v, want Error", s.Status())
			}
		}
	}
	if roots != 1 {
		t.Errorf("%d %q spans recorded, want 1", roots, RootOperation)
	}
}

func TestNewOTLPExporterEndpoints(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		protocol, endpoint string
		ok                 bool
	}{
		{ProtocolGRPC, "127.0.0.1:4317", true},
		{ProtocolGRPC, "http://127.0.0.1:4317", true},
		{ProtocolGRPC, "https://collector.example:4317", true},
		{ProtocolGRPC, "http://127.0.0.1:4317/v1/traces", false},
		{ProtocolHTTP, "127.0.0.1:4318", true},
		{ProtocolHTTP, "http://127.0.0.1:4318/custom/traces", true},
		{ProtocolGRPC, "ftp://127.0.0.1:4317", false},
		{ProtocolGRPC, "http://", false},
		{"thrift", "127.0.0.1:4317", false},
	} {
		exp, err := NewOTLPExporter(ctx, tc.protocol, tc.endpoint)
		if (err == nil) != tc.ok {
			t.Errorf("NewOTLPExporter(%q, %q): error %v, want ok %v", tc.protocol, tc.endpoint, err, tc.ok)
		}
		if exp != nil {
			exp.Shutdown(ctx)
		}
	}
}

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

// Run over a real loopback connection, with the OpenTelemetry bridge:
// one trace, the demo span at its root, a client span per call under it
// and the server's span under each client span, with the kinds, status
// codes, error statuses, baggage and events the calls call for.
func TestRunTraceShape(t *testing.T) {
	ctx := context.Background()
	tracing, err := NewTracing(ctx, TracingConfig{ServiceName: "demo-test", Record: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tracing.Shutdown(ctx)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Tracer: tracing.Tracer, MessageEvents: true}
	srv := NewServer(opts)
	go srv.Serve(lis)
	conn, err := Dial(lis.Addr().String(), opts)
	if err != nil {
		t.Fatal(err)
	}
	callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := Run(callCtx, tracing.Tracer, conn)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	conn.Close()
	srv.GracefulStop()

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
	traceID := TraceID(res.Root)
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
			if v, _ := attr(span, "rpc.grpc.status_code"); v.AsInt64() != int64(w.code) || v.Type() != attribute.INT64 {
				t.Errorf("%s %s: rpc.grpc.status_code = %v, want %d", w.name, side, v.String(), w.code)
			}
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

// A call that does not end as planned makes Run fail and marks the root.
func TestRunReportsUnexpectedOutcome(t *testing.T) {
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
	conn, err := Dial(addr, Options{Tracer: tracing.Tracer})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	res, err := Run(ctx, tracing.Tracer, conn)
	if err == nil {
		t.Fatal("Run without a server: no error")
	}
	for _, c := range res.Calls {
		if c.Code != codes.Unavailable {
			t.Errorf("%s: %v, want Unavailable", c.Name, c.Code)
		}
	}
	for _, s := range tracing.Spans() {
		if s.Name() == RootOperation && s.Status().Code != otelcodes.Error {
			t.Errorf("root span status %v, want Error", s.Status())
		}
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

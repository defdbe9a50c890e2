package benchmarks

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opentracing/opentracing-go/ext"
	"github.com/opentracing/opentracing-go/mocktracer"
	"go.opentelemetry.io/otel/propagation"
	"go.uber.org/goleak"

	"github.com/c2e00e20/grpctrace/testpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// span is what the tests check of a finished span, whichever tracer
// recorded it.
type span struct {
	kind              string // client or server
	trace, id, parent string
	operation         string
}

// recorded returns the spans t keeps: the mock tracer's finished spans, or
// those the SDK's in-memory processor kept.
func recorded(t *Tracer) []span {
	var spans []span
	if m, ok := t.OT.(*mocktracer.MockTracer); ok {
		for _, s := range m.FinishedSpans() {
			kind, _ := s.Tag(string(ext.SpanKind)).(ext.SpanKindEnum)
			spans = append(spans, span{
				kind:      string(kind),
				trace:     fmt.Sprint(s.SpanContext.TraceID),
				id:        fmt.Sprint(s.SpanContext.SpanID),
				parent:    fmt.Sprint(s.ParentID),
				operation: s.OperationName,
			})
		}
	}
	if t.kept != nil {
		for _, s := range t.kept.ended() {
			spans = append(spans, span{
				kind:      strings.ToLower(s.SpanKind().String()),
				trace:     s.SpanContext().TraceID().String(),
				id:        s.SpanContext().SpanID().String(),
				parent:    s.Parent().SpanID().String(),
				operation: s.Name(),
			})
		}
	}
	return spans
}

// waitSpans waits until t has recorded n spans: a stats handler may end the
// server span just after the client has seen the RPC's end.
func waitSpans(tb testing.TB, t *Tracer, n int) []span {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans := recorded(t)
		if len(spans) >= n || time.Now().After(deadline) {
			if len(spans) != n {
				tb.Fatalf("%d spans recorded, want %d: %+v", len(spans), n, spans)
			}
			return spans
		}
		time.Sleep(time.Millisecond)
	}
}

// checkPair checks that spans are one client span and one server span,
// the server's the client's child.
func checkPair(tb testing.TB, spans []span) {
	tb.Helper()
	if len(spans) != 2 {
		tb.Fatalf("%d spans, want a client and a server span: %+v", len(spans), spans)
	}
	client, server := spans[0], spans[1]
	if client.kind == "server" {
		client, server = server, client
	}
	if client.kind != "client" || server.kind != "server" {
		tb.Fatalf("span kinds %q and %q, want client and server: %+v", client.kind, server.kind, spans)
	}
	if server.trace != client.trace || server.parent != client.id {
		tb.Fatalf("server span is not the client span's child: %+v", spans)
	}
}

// keptBridge is the bridge column's tracer with an SDK processor that keeps
// the spans instead of dropping them, so that tests can look at them.
func keptBridge() *Tracer {
	kept := new(keepSpans)
	tp := sdkProvider(kept)
	w3c := propagation.TraceContext{}
	return &Tracer{Name: TracerBridge, OT: bridge(tp, w3c), Provider: tp, Propagator: w3c, kept: kept}
}

// recordingTracers are the mock column's tracer and the bridge column's
// with its spans kept.
func recordingTracers() []*Tracer {
	return []*Tracer{NewTracer(TracerMock), keptBridge()}
}

func instrumented() []Contender {
	var cs []Contender
	for _, c := range Contenders {
		if c.options != nil {
			cs = append(cs, c)
		}
	}
	return cs
}

// TestOneClientAndOneServerSpanPerRPC checks, in each case the benchmarks
// run, that every contender really traces: one client span and one server
// span, its child, per RPC, and none per stream message.
func TestOneClientAndOneServerSpanPerRPC(t *testing.T) {
	for _, c := range instrumented() {
		for _, tr := range recordingTracers() {
			t.Run(c.Name+"/"+tr.Name, func(t *testing.T) {
				conn, err := Connect(c, tr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				ctx := context.Background()

				if err := conn.Unary(ctx); err != nil {
					t.Fatal(err)
				}
				checkPair(t, waitSpans(t, tr, 2))
				tr.Reset()

				resp := new(testpb.Response)
				if err := conn.BidiStream(ctx, resp); err != nil {
					t.Fatal(err)
				}
				checkPair(t, waitSpans(t, tr, 2))
				tr.Reset()

				s, err := conn.Client.Bidi(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for range 3 {
					if err := PingPong(s, resp); err != nil {
						t.Fatal(err)
					}
				}
				if spans := recorded(tr); len(spans) != 0 {
					t.Fatalf("spans finished while the stream is open: %+v", spans)
				}
				if err := CloseStream(s, resp); err != nil {
					t.Fatal(err)
				}
				checkPair(t, waitSpans(t, tr, 2))
			})
		}
	}
}

// TestBridgeColumnRecords checks the bridge column exactly as benchmarked:
// the SDK samples and ends two spans per RPC, which the processor drops.
func TestBridgeColumnRecords(t *testing.T) {
	for _, c := range instrumented() {
		t.Run(c.Name, func(t *testing.T) {
			tr := NewTracer(TracerBridge)
			conn, err := Connect(c, tr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			const rpcs = 3
			for range rpcs {
				if err := conn.Unary(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for tr.dropped.ended.Load() < 2*rpcs && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if got := tr.dropped.ended.Load(); got != 2*rpcs {
				t.Fatalf("%d spans ended for %d RPCs, want %d", got, rpcs, 2*rpcs)
			}
		})
	}
}

// TestEveryCaseRunsUnderEveryTracer runs each case once for the base and
// every contender with every tracer, as the benchmarks do.
func TestEveryCaseRunsUnderEveryTracer(t *testing.T) {
	for _, c := range Contenders {
		names := TracerNames
		if c.options == nil {
			names = []string{NoTracer}
		}
		for _, name := range names {
			t.Run(c.Name+"/"+name, func(t *testing.T) {
				var tr *Tracer
				if name != NoTracer {
					tr = NewTracer(name)
				}
				conn, err := Connect(c, tr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				ctx := context.Background()
				resp := new(testpb.Response)
				if err := conn.Unary(ctx); err != nil {
					t.Fatal(err)
				}
				if err := conn.BidiStream(ctx, resp); err != nil {
					t.Fatal(err)
				}
				s, err := conn.Client.Bidi(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := PingPong(s, resp); err != nil {
					t.Fatal(err)
				}
				if err := CloseStream(s, resp); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestFloor checks that the floor does what it claims: a client span and
// a server span, the server's the client's child through the metadata.
func TestFloor(t *testing.T) {
	t.Run("opentracing/mock", func(t *testing.T) {
		tr := NewTracer(TracerMock)
		md := openTracingFloor(tr.OT)
		checkFloor(t, tr, md, "mockpfx-ids-traceid")
	})
	t.Run("opentracing/bridge", func(t *testing.T) {
		tr := keptBridge()
		md := openTracingFloor(tr.OT)
		checkFloor(t, tr, md, "traceparent")
	})
	t.Run("otel/sdk", func(t *testing.T) {
		tr := keptBridge() // its Provider is the SDK keeping spans
		md := otelFloor(tr.Provider.Tracer("test"), tr.Propagator)
		checkFloor(t, tr, md, "traceparent")
	})
	t.Run("noop", func(t *testing.T) {
		tr := NewTracer(TracerNoop)
		for _, f := range FloorNames {
			Floor(f, tr)()
		}
	})
	t.Run("bridge column", func(t *testing.T) {
		tr := NewTracer(TracerBridge)
		for _, f := range FloorNames {
			Floor(f, tr)()
		}
		if got := tr.dropped.ended.Load(); got != 4 {
			t.Fatalf("%d spans ended by two floor RPCs, want 4", got)
		}
	})
}

func checkFloor(t *testing.T, tr *Tracer, md *floorCarrier, key string) {
	t.Helper()
	if len(md.md[key]) != 1 {
		t.Fatalf("metadata %v lacks %s", md.md, key)
	}
	spans := recorded(tr)
	checkPair(t, spans)
	for _, s := range spans {
		if s.operation != FloorOperation {
			t.Errorf("span named %q, want %q", s.operation, FloorOperation)
		}
	}
}

func TestFloorCarrier(t *testing.T) {
	c := newFloorCarrier()
	for i := range 6 {
		c.Set(fmt.Sprintf("Key-%d", i), fmt.Sprint(i))
	}
	if len(c.md) != 6 || c.Get("KEY-5") != "5" || c.Get("key-0") != "0" || c.Get("missing") != "" {
		t.Fatalf("metadata %v", c.md)
	}
	if len(c.Keys()) != 6 {
		t.Fatalf("keys %v", c.Keys())
	}
	n := 0
	if err := c.ForeachKey(func(k, v string) error { n++; return nil }); err != nil || n != 6 {
		t.Fatalf("ForeachKey saw %d pairs, %v", n, err)
	}
	stop := fmt.Errorf("stop")
	if err := c.ForeachKey(func(k, v string) error { return stop }); err != stop {
		t.Fatalf("ForeachKey returned %v, want the handler's error", err)
	}
}

// TestBenchmarkNames checks the list the driver runs against the
// benchmarks' structure.
func TestBenchmarkNames(t *testing.T) {
	all := All()
	if want := len(RPCCases)*(1+(len(Contenders)-1)*len(TracerNames)) + len(FloorNames)*len(TracerNames); len(all) != want {
		t.Fatalf("%d benchmarks, want %d", len(all), want)
	}
	seen := map[string]bool{}
	for _, b := range all {
		if seen[b.Name()] {
			t.Fatalf("%s twice", b.Name())
		}
		seen[b.Name()] = true
		levels := strings.Split(b.Pattern(), "/")
		names := append([]string{"Benchmark" + b.Case}, strings.Split(b.Name(), "/")[1:]...)
		if len(levels) != 3 {
			t.Fatalf("pattern %q", b.Pattern())
		}
		for i, l := range levels {
			if !regexp.MustCompile(l).MatchString(names[i]) {
				t.Fatalf("pattern %q does not match %q", b.Pattern(), b.Name())
			}
		}
	}
}

// TestOTelContendersRecordThroughOpenTelemetry checks that each contender
// records through the API it is said to use: the OpenTelemetry contenders
// through the tracer's Provider, never its OpenTracing tracer, and the
// others the other way round; and that each is measured against the floor
// of that API.
func TestOTelContendersRecordThroughOpenTelemetry(t *testing.T) {
	for _, c := range instrumented() {
		t.Run(c.Name, func(t *testing.T) {
			tr := NewTracer(TracerMock)
			conn, err := Connect(c, tr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.Unary(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkPair(t, waitSpans(t, tr, 2))
			ot := len(tr.OT.(*mocktracer.MockTracer).FinishedSpans())
			otel := len(tr.kept.ended())
			wantFloor := FloorOpenTracing
			if c.OTel {
				ot, otel = otel, ot
				wantFloor = FloorOTel
			}
			if ot != 2 || otel != 0 {
				t.Errorf("OTel %v: %d spans through the API it uses, %d through the other; want 2 and 0", c.OTel, ot, otel)
			}
			if got := FloorOf(c.Name); got != wantFloor {
				t.Errorf("FloorOf(%s) = %s, want %s", c.Name, got, wantFloor)
			}
			if IsOTel(c.Name) != c.OTel {
				t.Errorf("IsOTel(%s) = %v", c.Name, IsOTel(c.Name))
			}
		})
	}
	if got := OTelPeers(); len(got) != 1 || got[0] != OTelGRPC {
		t.Errorf("OTelPeers() = %v, want [%s]", got, OTelGRPC)
	}
}

// TestOTelContendersNameSpansAlike checks that grpctrace's OpenTelemetry
// path names its spans as otelgrpc does, so that the two are compared
// doing the same work.
func TestOTelContendersNameSpansAlike(t *testing.T) {
	for _, name := range []string{GRPCTraceOTel, GRPCTraceOTelStats, OTelGRPC} {
		t.Run(name, func(t *testing.T) {
			var c Contender
			for _, cc := range Contenders {
				if cc.Name == name {
					c = cc
				}
			}
			tr := NewTracer(TracerMock)
			conn, err := Connect(c, tr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.Unary(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, s := range waitSpans(t, tr, 2) {
				if want := strings.TrimPrefix(FloorOperation, "/"); s.operation != want {
					t.Errorf("%s span named %q, want %q", s.kind, s.operation, want)
				}
			}
		})
	}
}

package demo

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func sc(traceID, spanID byte) trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{15: traceID},
		SpanID:     trace.SpanID{7: spanID},
		TraceFlags: trace.FlagsSampled,
	})
}

// Two traces, given out of order: a root with a client and a server span
// under it and a failed client span; and a lone server span whose parent
// is elsewhere. The expected text is worked out by hand from the rules
// Render documents (20 columns over 10ms: 0.5ms a column).
func TestRender(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	ms := time.Millisecond
	stubs := tracetest.SpanStubs{
		{
			Name: "/pkg.Svc/Unary", SpanKind: trace.SpanKindServer,
			SpanContext: sc(2, 9), Parent: sc(2, 0xff).WithRemote(true),
			StartTime: at(20 * ms), EndTime: at(20*ms + 500*time.Microsecond),
			Attributes: []attribute.KeyValue{attribute.String("rpc.method", "Unary"), attribute.Int64("rpc.grpc.status_code", 0)},
		},
		{
			Name: "/pkg.Svc/Bidi", SpanKind: trace.SpanKindClient,
			SpanContext: sc(1, 4), Parent: sc(1, 1),
			StartTime: at(6 * ms), EndTime: at(9*ms + 500*time.Microsecond),
			Attributes: []attribute.KeyValue{attribute.Int64("rpc.grpc.status_code", 14), attribute.String("rpc.method", "Bidi")},
			Events: []sdktrace.Event{{
				Name: "error", Time: at(9*ms + 500*time.Microsecond),
				Attributes: []attribute.KeyValue{attribute.String("event", "error"), attribute.String("message", "gone")},
			}},
			Status: sdktrace.Status{Code: otelcodes.Error},
		},
		{
			Name: "/pkg.Svc/Unary", SpanKind: trace.SpanKindServer,
			SpanContext: sc(1, 3), Parent: sc(1, 2),
			StartTime: at(2 * ms), EndTime: at(5 * ms),
			Attributes: []attribute.KeyValue{attribute.String("rpc.method", "Unary"), attribute.Int64("rpc.grpc.status_code", 0)},
		},
		{
			Name: "checkout", SpanKind: trace.SpanKindInternal,
			SpanContext: sc(1, 1),
			StartTime:   at(0), EndTime: at(10 * ms),
			Attributes: []attribute.KeyValue{attribute.String("user", "ada lovelace")},
		},
		{
			Name: "/pkg.Svc/Unary", SpanKind: trace.SpanKindClient,
			SpanContext: sc(1, 2), Parent: sc(1, 1),
			StartTime: at(1 * ms), EndTime: at(6 * ms),
			Attributes: []attribute.KeyValue{attribute.String("rpc.method", "Unary"), attribute.Int64("rpc.grpc.status_code", 0)},
			Events: []sdktrace.Event{{
				Name: "message", Time: at(2 * ms),
				Attributes: []attribute.KeyValue{attribute.String("message.type", "SENT")},
			}},
		},
	}
	var out strings.Builder
	if err := Render(&out, stubs.Snapshots(), RenderOptions{Width: 20}); err != nil {
		t.Fatal(err)
	}
	want := `trace 00000000000000000000000000000001: 4 spans, 10ms

checkout (internal) 10ms
│ user="ada lovelace"
├─ /pkg.Svc/Unary (client) 5ms OK
│  │ rpc.grpc.status_code=0 rpc.method=Unary
│  │ +1ms message message.type=SENT
│  └─ /pkg.Svc/Unary (server) 3ms OK
│       rpc.grpc.status_code=0 rpc.method=Unary
└─ /pkg.Svc/Bidi (client) 3.5ms Unavailable ✗
     rpc.grpc.status_code=14 rpc.method=Bidi
     +3.5ms error message=gone

waterfall: 10ms in 20 columns, 500µs each
                  0         5ms
checkout          ├──────────────────┤    10ms
  Unary client      ├─•───────┤            5ms OK
    Unary server      ├─────┤              3ms OK
  Bidi client                 ├──────✗   3.5ms Unavailable
├─┤ span, from start to end   • log event   ✗ ended in error

trace 00000000000000000000000000000002: 1 span, 500µs

/pkg.Svc/Unary (server) 500µs OK  (parent 00000000000000ff not recorded here)
  rpc.grpc.status_code=0 rpc.method=Unary

waterfall: 500µs in 20 columns, 25µs each
              0
Unary server  ├──────────────────┤   500µs OK
├─┤ span, from start to end   • log event   ✗ ended in error
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("Render (-want +got):\n%s", diff)
	}
}

// Spans written with OpenTelemetry's RPC conventions, as grpctrace writes
// them on its OpenTelemetry path: the status is the rpc.response.status_code
// name, printed as gRPC names the code, and the waterfall labels the method
// without its service.
func TestRenderOpenTelemetryConventions(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ms := time.Millisecond
	stubs := tracetest.SpanStubs{
		{
			Name: "pkg.Svc/Unary", SpanKind: trace.SpanKindClient,
			SpanContext: sc(1, 1),
			StartTime:   t0, EndTime: t0.Add(10 * ms),
			Attributes: []attribute.KeyValue{
				attribute.String("rpc.method", "pkg.Svc/Unary"), attribute.String("rpc.response.status_code", "NOT_FOUND"),
			},
			Status: sdktrace.Status{Code: otelcodes.Error, Description: "no such record"},
		},
		{
			Name: "pkg.Svc/Unary", SpanKind: trace.SpanKindServer,
			SpanContext: sc(1, 2), Parent: sc(1, 1).WithRemote(true),
			StartTime: t0.Add(5 * ms), EndTime: t0.Add(10 * ms),
			Attributes: []attribute.KeyValue{
				attribute.String("rpc.method", "pkg.Svc/Unary"), attribute.String("rpc.response.status_code", "NO_SUCH_CODE"),
			},
		},
	}
	var out strings.Builder
	if err := Render(&out, stubs.Snapshots(), RenderOptions{Width: 20}); err != nil {
		t.Fatal(err)
	}
	want := `trace 00000000000000000000000000000001: 2 spans, 10ms

pkg.Svc/Unary (client) 10ms NotFound ✗ no such record
│ rpc.method=pkg.Svc/Unary rpc.response.status_code=NOT_FOUND
└─ pkg.Svc/Unary (server) 5ms NO_SUCH_CODE
     rpc.method=pkg.Svc/Unary rpc.response.status_code=NO_SUCH_CODE

waterfall: 10ms in 20 columns, 500µs each
                0         5ms
Unary client    ├──────────────────✗    10ms NotFound
  Unary server            ├────────┤     5ms NO_SUCH_CODE
├─┤ span, from start to end   • log event   ✗ ended in error
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("Render (-want +got):\n%s", diff)
	}
}

func TestRenderCutsLongValues(t *testing.T) {
	stubs := tracetest.SpanStubs{{
		Name: "op", SpanContext: sc(1, 1),
		StartTime: time.Unix(0, 0), EndTime: time.Unix(0, int64(time.Millisecond)),
		Attributes: []attribute.KeyValue{attribute.String("stack", "line one\nline two is long")},
	}}
	var out strings.Builder
	if err := Render(&out, stubs.Snapshots(), RenderOptions{MaxValue: 10}); err != nil {
		t.Fatal(err)
	}
	if want := `  stack="line one\nl"…` + "\n"; !strings.Contains(out.String(), want) {
		t.Errorf("Render does not contain %q:\n%s", want, out.String())
	}
}

func TestFmtDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                         "0",
		750:                       "750ns",
		8710:                      "8.71µs",
		24700:                     "24.7µs",
		214 * time.Microsecond:    "214µs",
		time.Millisecond:          "1ms",
		3270 * time.Microsecond:   "3.27ms",
		41200 * time.Microsecond:  "41.2ms",
		999 * time.Millisecond:    "999ms",
		1250 * time.Millisecond:   "1.25s",
		-1500 * time.Microsecond:  "-1.5ms",
		12345 * time.Millisecond:  "12.3s",
		123456 * time.Millisecond: "123s",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestNiceStep(t *testing.T) {
	for d, want := range map[time.Duration]time.Duration{
		time.Millisecond:          time.Millisecond,
		1100 * time.Microsecond:   2 * time.Millisecond,
		2500 * time.Microsecond:   5 * time.Millisecond,
		5001 * time.Microsecond:   10 * time.Millisecond,
		250 * time.Microsecond:    500 * time.Microsecond,
		3 * time.Second:           5 * time.Second,
		time.Duration(0):          1,
		1700 * time.Millisecond:   2 * time.Second,
		999999 * time.Microsecond: time.Second,
	} {
		if got := niceStep(d); got != want {
			t.Errorf("niceStep(%v) = %v, want %v", d, got, want)
		}
	}
}

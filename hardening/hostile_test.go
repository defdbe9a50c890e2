package hardening

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opentracing/opentracing-go"
	"go.opentelemetry.io/otel/baggage"
	oteltrace "go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/hardening/internal/spanlog"
	"github.com/c2e00e20/grpctrace/testpb"
)

// outcome is what a raw HTTP/2 client saw of one RPC.
type outcome struct {
	HTTPStatus  string
	GRPCStatus  string
	GRPCMessage string
	Response    string        // the response message's value
	Reset       http2.ErrCode // RST_STREAM's code, 0 for none
	GoAway      bool
	ConnErr     string
}

// rawUnary makes a Unary call with a hand-built HTTP/2 request carrying
// extra header fields exactly as given (names uppercase, values of any
// bytes, any number), which no gRPC client would send.
func rawUnary(t *testing.T, addr string, extra [][2]string) outcome {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = 1 << 24
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}

	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	fields := [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", service + "Unary"}, {":authority", addr},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	}
	for _, f := range append(fields, extra...) {
		if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			t.Fatal(err)
		}
	}
	const maxFrame = 16 << 10 // the server's SETTINGS_MAX_FRAME_SIZE, HTTP/2's default
	b := block.Bytes()
	first := b[:min(len(b), maxFrame)]
	b = b[len(first):]
	var out outcome
	// The server may close the connection at any point of the request
	// (headers over its limit): that is an outcome, not a test failure.
	werr := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndHeaders: len(b) == 0})
	for werr == nil && len(b) > 0 {
		chunk := b[:min(len(b), maxFrame)]
		b = b[len(chunk):]
		werr = fr.WriteContinuation(1, len(b) == 0, chunk)
	}
	msg, err := proto.Marshal(&testpb.Request{Value: "hostile"})
	if err != nil {
		t.Fatal(err)
	}
	data := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	if werr == nil {
		werr = fr.WriteData(1, true, append(data, msg...))
	}
	if werr != nil {
		out.ConnErr = "connection ended"
	}
	var body []byte
	for range 10_000 {
		f, err := fr.ReadFrame()
		if err != nil {
			out.ConnErr = "connection ended"
			if !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
				out.ConnErr = err.Error()
			}
			break
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			out.GoAway = true
			if f.LastStreamID < 1 {
				return out
			}
		case *http2.RSTStreamFrame:
			out.Reset = f.ErrCode
			return out
		case *http2.MetaHeadersFrame:
			for _, hf := range f.Fields {
				switch hf.Name {
				case ":status":
					out.HTTPStatus = hf.Value
				case "grpc-status":
					out.GRPCStatus = hf.Value
				case "grpc-message":
					out.GRPCMessage = hf.Value
				}
			}
			if f.StreamEnded() {
				out.Response = responseValue(t, body)
				return out
			}
		case *http2.DataFrame:
			body = append(body, f.Data()...)
			if f.StreamEnded() {
				out.Response = responseValue(t, body)
				return out
			}
		}
	}
	return out
}

func responseValue(t *testing.T, body []byte) string {
	if len(body) < 5 {
		return ""
	}
	var resp testpb.Response
	if err := proto.Unmarshal(body[5:], &resp); err != nil {
		t.Errorf("response: %v", err)
	}
	return resp.GetValue()
}

// hostileServer is a test server, traced or not.
type hostileServer struct {
	name string
	path tracePath // "" when untraced
	addr string
	mem  *spanlog.Memory // nil when untraced
	open *openSpans      // nil when untraced
}

// hostileServers starts the same service untraced, then, on each of
// grpctrace's paths (OpenTracing through the bridge, OpenTelemetry with
// WithTracerProvider), traced with the interceptors and traced with the
// stats handler, each with opts.
func hostileServers(t *testing.T, trace []grpctrace.Option, opts ...grpc.ServerOption) []hostileServer {
	out := []hostileServer{{name: "untraced", addr: serveTestService(t, slices.Clip(opts)...)}}
	for _, path := range tracePaths {
		for _, kind := range []string{"interceptors", "handler"} {
			tr := newTracingOn(t, path)
			s := hostileServer{name: kind, path: path, mem: tr.mem, open: tr.open}
			if path != pathOpenTracing {
				s.name = string(path) + " " + kind
			}
			o := slices.Clip(opts)
			if kind == "interceptors" {
				o = append(o, grpc.UnaryInterceptor(grpctrace.UnaryServerInterceptor(tr.options(trace...)...)))
			} else {
				o = append(o, grpc.StatsHandler(grpctrace.NewServerHandler(tr.options(trace...)...)))
			}
			s.addr = serveTestService(t, o...)
			out = append(out, s)
		}
	}
	return out
}

const (
	validTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	canary           = "CANARY-7f3a"
)

// packed is a grpctrace-bin header value (base64, as sent on the wire)
// holding the given pairs.
func packed(pairs ...string) string {
	var b []byte
	var all []string
	for i := 0; i+1 < len(pairs); i += 2 {
		b = binary.AppendUvarint(b[:0], uint64(len(pairs[i])))
		all = append(all, string(b)+pairs[i]+pairs[i+1])
	}
	// One header value per entry would be separate fields; the test sends
	// one entry per call of packed.
	return base64.RawStdEncoding.EncodeToString([]byte(strings.Join(all, "")))
}

func hostileCases() []struct {
	name    string
	headers [][2]string
	// reaches: the RPC reaches grpctrace (gRPC accepted the headers).
	reaches bool
	// extractFailed: grpctrace logs "span context extraction failed".
	extractFailed bool
	parent        bool // the span joins the caller's trace
} {
	var bag64k, manyKeys, uberBag [][2]string
	var members []string
	for i := 0; len(strings.Join(members, ",")) < 64<<10; i++ {
		members = append(members, fmt.Sprintf("k%05d=%s", i, strings.Repeat("v", 40)))
	}
	bag64k = [][2]string{{"traceparent", validTraceparent}, {"baggage", strings.Join(members, ",")}}
	for i := 0; i < 3000; i++ {
		manyKeys = append(manyKeys, [2]string{fmt.Sprintf("x-key-%04d", i), "v"})
	}
	for i := 0; i < 1000; i++ {
		uberBag = append(uberBag, [2]string{fmt.Sprintf("uberctx-k%04d", i), strings.Repeat("b", 64)})
	}
	type c = struct {
		name          string
		headers       [][2]string
		reaches       bool
		extractFailed bool
		parent        bool
	}
	return []c{
		{"valid traceparent", [][2]string{{"traceparent", validTraceparent}}, true, false, true},
		{"64 KiB of W3C baggage", bag64k, true, false, true},
		{"64 KiB of baggage headers", append([][2]string{{"traceparent", validTraceparent}}, uberBag...), true, false, true},
		{"3000 keys", append([][2]string{{"traceparent", validTraceparent}}, manyKeys...), true, false, true},
		{"invalid UTF-8 values", [][2]string{{"traceparent", "00-\xff\xfe" + validTraceparent[5:]}, {"baggage", "k=\xc3\x28,\xff=v"}, {"x-other", "\x80\x81"}}, true, false, false},
		{"invalid UTF-8 name", [][2]string{{"x-\xff", "v"}}, false, false, false},
		{"uppercase name", [][2]string{{"Traceparent", validTraceparent}}, false, false, false},
		{"all-zero trace id", [][2]string{{"traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}}, true, false, false},
		{"non-hex trace id", [][2]string{{"traceparent", "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}, true, false, false},
		{"short trace id", [][2]string{{"traceparent", "00-4bf92f35-00f067aa0ba902b7-01"}}, true, false, false},
		{"version ff", [][2]string{{"traceparent", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}, true, false, false},
		{"64 KiB trace id", [][2]string{{"traceparent", "00-" + strings.Repeat("a", 64<<10) + "-00f067aa0ba902b7-01"}}, true, false, false},
		{"undecodable grpctrace-bin", [][2]string{{"traceparent", validTraceparent}, {"grpctrace-bin", base64.RawStdEncoding.EncodeToString([]byte("\xff\xff\xff"))}}, true, true, true},
		{"grpctrace-bin not base64", [][2]string{{"grpctrace-bin", "!!!not base64!!!"}}, false, false, false},
		{"packed traceparent", [][2]string{{"grpctrace-bin", packed("traceparent", validTraceparent)}}, true, false, true},
		{"grpc-timeout garbage", [][2]string{{"grpc-timeout", "forever"}}, false, false, false},
	}
}

// TestHostileHeaders sends hostile headers from a raw HTTP/2 client to the
// same service untraced, and traced by the interceptors and by the stats
// handler on each of grpctrace's paths: the RPC's outcome must be the same
// on all five, byte for byte (headers gRPC itself refuses are refused alike); a traced RPC's span
// joins the caller's trace only for a valid trace context, logs an
// undecodable packed header, and records nothing of the baggage.
func TestHostileHeaders(t *testing.T) {
	servers := hostileServers(t, nil)
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			var want outcome
			for i, s := range servers {
				if s.mem != nil {
					s.mem.Reset()
				}
				got := rawUnary(t, s.addr, tc.headers)
				if i == 0 {
					want = got
					t.Logf("hostile: %s: %+v", tc.name, got)
					if reached := got.GRPCStatus == "0" && got.Response == "hostile"; reached != tc.reaches {
						t.Errorf("untraced outcome %+v; want the RPC to succeed: %v", got, tc.reaches)
					}
					continue
				}
				if got != want {
					t.Errorf("%s: outcome %+v, untraced %+v", s.name, got, want)
				}
				// A span grpctrace starts for an RPC starts before gRPC
				// answers it, but the stats handler's ends after: wait
				// for the spans started to end before counting them.
				s.open.waitSettled(t)
				spans := s.mem.Spans()
				if !tc.reaches {
					if n := len(spans); n != 0 {
						t.Errorf("%s: %d spans for an RPC gRPC refused", s.name, n)
					}
					continue
				}
				if len(spans) != 1 || !namedOn(s.path, "Unary", "server")(spans[0]) {
					t.Fatalf("%s: spans %+v, want one server span %q", s.name, spans, spanName(s.path, "Unary"))
				}
				span := spans[0]
				if code, ok := span.Code(); !ok || code != codes.OK || span.Status == "Error" {
					t.Errorf("%s: span status code %v (recorded: %v), span status %q, want OK and no error", s.name, code, ok, span.Status)
				}
				if joined := span.TraceID == validTraceparent[3:35]; joined != tc.parent {
					t.Errorf("%s: span in trace %s, joined the caller's: %v, want %v", s.name, span.TraceID, joined, tc.parent)
				}
				if got := span.HasEvent("span context extraction failed"); got != tc.extractFailed {
					t.Errorf("%s: extraction failure logged: %v, want %v; events %+v", s.name, got, tc.extractFailed, span.Events)
				}
				if size := spanSize(span); size > 4<<10 {
					t.Errorf("%s: span holds %d bytes of attributes and events: hostile input recorded", s.name, size)
				}
			}
		})
	}
}

// spanSize is the size of a span's attributes and events, as text.
func spanSize(s spanlog.Span) int {
	return len(fmt.Sprint(s.Attributes)) + len(fmt.Sprint(s.Events))
}

// TestHostileHeadersMemory sends the largest hostile headers 300 times to
// each traced server, forgetting the spans as they come: the heap after GC
// must not grow by anything near what was sent (300 × 64 KiB, about
// 19 MiB).
func TestHostileHeadersMemory(t *testing.T) {
	var big [][2]string
	for _, tc := range hostileCases() {
		if tc.name == "64 KiB of W3C baggage" {
			big = tc.headers
		}
	}
	for _, s := range hostileServers(t, nil)[1:] {
		t.Run(s.name, func(t *testing.T) {
			rawUnary(t, s.addr, big) // warm up
			_, before := settle()
			for range 300 {
				if got := rawUnary(t, s.addr, big); got.GRPCStatus != "0" {
					t.Fatalf("outcome %+v", got)
				}
				s.mem.Reset()
			}
			_, after := settle()
			t.Logf("hostile: %s: heap after GC %s before, %s after 300 RPCs with 64 KiB of baggage", s.name, mib(before), mib(after))
			if int64(after)-int64(before) > 2<<20 {
				t.Errorf("heap grew by %d B", int64(after)-int64(before))
			}
		})
	}
}

// TestHeaderLimit: headers over the server's limit (grpc.MaxHeaderListSize)
// get gRPC's own refusal, the same traced or not, from a raw client, and
// from a gRPC client whose trace headers push the request over the limit,
// on each path: the caller gets gRPC's error unchanged, and the client span
// records it.
func TestHeaderLimit(t *testing.T) {
	const limit = 16 << 10
	servers := hostileServers(t, nil, grpc.MaxHeaderListSize(limit))
	over := [][2]string{{"traceparent", validTraceparent}, {"x-big", strings.Repeat("x", 2*limit)}}
	var want outcome
	for i, s := range servers {
		got := rawUnary(t, s.addr, over)
		if i == 0 {
			want = got
			t.Logf("hostile: raw request over the %d B header limit: %+v", limit, got)
			if got.GRPCStatus == "0" {
				t.Fatalf("over the limit, the untraced server answered %+v", got)
			}
		} else if got != want {
			t.Errorf("%s: %+v, untraced %+v", s.name, got, want)
		}
	}

	// A gRPC client: untraced with 32 KiB of its own metadata, and traced
	// with baggage, which tracing turns into headers: on the OpenTracing
	// path 32 KiB of it; on the OpenTelemetry path, whose baggage holds at
	// most 8 KiB, 7 KiB of it on top of 12 KiB of metadata that alone is
	// under the limit.
	untraced, err := grpc.NewClient(servers[0].addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer untraced.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-big", strings.Repeat("x", 2*limit))
	_, wantErr := testpb.NewTestServiceClient(untraced).Unary(ctx, &testpb.Request{})
	if status.Code(wantErr) == codes.OK {
		t.Fatal("over the limit, the untraced client succeeded")
	}
	pad := metadata.AppendToOutgoingContext(context.Background(), "x-pad", strings.Repeat("x", limit-4<<10))
	if _, err := testpb.NewTestServiceClient(untraced).Unary(pad, &testpb.Request{}); err != nil {
		t.Fatalf("under the limit, the untraced client got %v", err)
	}

	for _, path := range tracePaths {
		t.Run(string(path), func(t *testing.T) {
			tr := newTracingOn(t, path)
			var server hostileServer
			for _, s := range servers {
				if s.path == path && strings.HasSuffix(s.name, "interceptors") {
					server = s
				}
			}
			c := tr.dial(t, server.addr)
			var gotErr error
			if path == pathOpenTelemetry {
				m, err := baggage.NewMemberRaw("big", strings.Repeat("x", 7<<10))
				if err != nil {
					t.Fatal(err)
				}
				bag, err := baggage.New(m)
				if err != nil {
					t.Fatal(err)
				}
				ctx, root := tr.provider.Tracer("hardening").Start(baggage.ContextWithBaggage(pad, bag), "root")
				_, gotErr = c.Unary(ctx, &testpb.Request{})
				root.End()
			} else {
				root := tr.tracer.StartSpan("root")
				root.SetBaggageItem("big", strings.Repeat("x", 2*limit))
				_, gotErr = c.Unary(opentracing.ContextWithSpan(context.Background(), root), &testpb.Request{})
				root.Finish()
			}
			if status.Code(gotErr) != status.Code(wantErr) || status.Convert(gotErr).Message() != status.Convert(wantErr).Message() {
				t.Errorf("traced client got %v; gRPC's own error for the same size is %v", gotErr, wantErr)
			}
			client := namedOn(path, "Unary", "client")
			spans, werr := tr.mem.Wait(5*time.Second, func(s []spanlog.Span) bool { return count(s, client) == 1 })
			if werr != nil {
				t.Fatal(werr)
			}
			if code, _ := find(t, spans, client).Code(); code != status.Code(wantErr) {
				t.Errorf("client span status %v, the caller got %v", code, gotErr)
			}
			t.Logf("hostile: gRPC client over the limit: untraced %v; traced (%s, baggage) %v", wantErr, path, gotErr)
		})
	}
}

// TestPublicEndpointHostileClient: a public endpoint facing a hostile
// client that sends a valid trace context with baggage (W3C, packed and
// Jaeger-style headers, the values marked with a canary), on each path,
// interceptors and stats handler: the handler's context has no baggage
// and its span starts a new trace; the caller's trace is recorded for
// correlation (OpenTracing: event "untrusted parent" with its traceparent;
// OpenTelemetry: a link to the caller's span); and no attribute or event
// of the span holds the canary.
func TestPublicEndpointHostileClient(t *testing.T) {
	headers := [][2]string{
		{"traceparent", validTraceparent},
		{"baggage", "role=" + canary + ",tenant=" + canary},
		{"grpctrace-bin", packed("baggage", "user="+canary)},
		{"uberctx-role", canary},
		{"ot-baggage-role", canary},
	}
	for _, path := range tracePaths {
		for _, kind := range []string{"interceptors", "handler"} {
			name := kind
			if path != pathOpenTracing {
				name = string(path) + " " + kind
			}
			t.Run(name, func(t *testing.T) {
				tr := newTracingOn(t, path)
				seen := make(chan string, 1)
				// The handler's view, through an interceptor after
				// grpctrace's: its span's baggage (OpenTracing), its
				// context's (OpenTelemetry).
				probeBaggage := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
					var items []string
					switch {
					case path == pathOpenTelemetry:
						if !oteltrace.SpanContextFromContext(ctx).IsValid() {
							items = append(items, "no span")
						}
						for _, m := range baggage.FromContext(ctx).Members() {
							items = append(items, m.Key()+"="+m.Value())
						}
					case opentracing.SpanFromContext(ctx) != nil:
						opentracing.SpanFromContext(ctx).Context().ForeachBaggageItem(func(k, v string) bool { items = append(items, k+"="+v); return true })
					default:
						items = append(items, "no span")
					}
					seen <- strings.Join(items, ",")
					return h(ctx, req)
				}
				opts := tr.options(grpctrace.WithPublicEndpoint())
				var so []grpc.ServerOption
				if kind == "interceptors" {
					so = append(so, grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(opts...), probeBaggage))
				} else {
					so = append(so, grpc.StatsHandler(grpctrace.NewServerHandler(opts...)), grpc.UnaryInterceptor(probeBaggage))
				}
				addr := serveTestService(t, so...)

				if got := rawUnary(t, addr, headers); got.GRPCStatus != "0" {
					t.Fatalf("outcome %+v", got)
				}
				if b := <-seen; b != "" {
					t.Errorf("the handler's context carries baggage %q", b)
				}
				spans, err := tr.mem.Wait(5*time.Second, func(sp []spanlog.Span) bool { return len(sp) > 0 })
				if err != nil {
					t.Fatal(err)
				}
				span := spans[0]
				if span.TraceID == validTraceparent[3:35] || span.ParentID != "" {
					t.Errorf("public endpoint joined the caller's trace: %+v", span)
				}
				if path == pathOpenTelemetry {
					caller := spanlog.Link{TraceID: validTraceparent[3:35], SpanID: validTraceparent[36:52]}
					if len(span.Links) != 1 || span.Links[0] != caller {
						t.Errorf("caller's trace not linked for correlation: links %+v, want [%+v]", span.Links, caller)
					}
				} else {
					var untrusted *spanlog.Event
					for i, e := range span.Events {
						if e.Name == "untrusted parent" {
							untrusted = &span.Events[i]
						}
					}
					if untrusted == nil || untrusted.Attributes["traceparent"] != validTraceparent {
						t.Errorf("caller's trace not recorded for correlation: events %+v", span.Events)
					}
				}
				if text := fmt.Sprint(span.Attributes, span.Events, span.Links); strings.Contains(text, canary) {
					t.Errorf("the caller's baggage reached the span: %s", text)
				}
			})
		}
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// noOTelEnv clears the OpenTelemetry variables the demo reads, so that
// the environment the tests run in cannot change what they check.
func noOTelEnv(t *testing.T) {
	for _, v := range []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	} {
		t.Setenv(v, "")
	}
}

// syncBuffer is a bytes.Buffer safe to read while run writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var traceIDLine = regexp.MustCompile(`(?m)^trace id: ([0-9a-f]{32})$`)

func traceIDOf(t *testing.T, out string) string {
	t.Helper()
	m := traceIDLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no trace id line in the output:\n%s", out)
	}
	return m[1]
}

const svc = "/grpctrace.testpb.TestService/"

// The default run: server and client in one process, every RPC shape in
// one trace, printed as a tree and as a waterfall.
func TestRunAll(t *testing.T) {
	noOTelEnv(t)
	var stdout, stderr syncBuffer
	if err := run(context.Background(), nil, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	out := stdout.String()
	id := traceIDOf(t, out)

	for _, want := range []string{
		"trace " + id + ": 13 spans, ",
		"\ndemo (internal) ",
		"├─ " + svc + "Unary (client) ",
		"└─ " + svc + "Unary (server) ",
		"├─ " + svc + "ServerStream (client) ",
		"└─ " + svc + "ServerStream (server) ",
		"├─ " + svc + "ClientStream (client) ",
		"└─ " + svc + "ClientStream (server) ",
		"├─ " + svc + "Bidi (client) ",
		"└─ " + svc + "Bidi (server) ",
		"demo.baggage.user=ada",
		"panic recovered panic=\"testpb: handler panic requested\"",
		"error error.kind=NotFound message=\"no such record\"",
		"close send",
		"client half-close",
		"\nwaterfall: ",
		"├─┤ span, from start to end",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if n := strings.Count(out, "(client) "); n != 6 {
		t.Errorf("%d client spans in the tree, want 6", n)
	}
	if n := strings.Count(out, "(server) "); n != 6 {
		t.Errorf("%d server spans in the tree, want 6", n)
	}
	// The failed call: an error on the client, not on the server (NotFound
	// blames the request); the panic: an error on both sides.
	for _, re := range []string{
		`(?m)Unary \(client\) \S+ NotFound ✗$`,
		`(?m)Unary \(server\) \S+ NotFound$`,
		`(?m)Unary \(client\) \S+ Internal ✗$`,
		`(?m)Unary \(server\) \S+ Internal ✗$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output does not match %s", re)
		}
	}
	checkWaterfall(t, out)
}

// checkWaterfall checks the waterfall of a run in one process: one row
// per span, the demo span, then client and server rows in call order,
// indented under it.
func checkWaterfall(t *testing.T, out string) {
	t.Helper()
	at := strings.Index(out, "\nwaterfall: ")
	if at < 0 {
		t.Errorf("no waterfall in the output:\n%s", out)
		return
	}
	rows := regexp.MustCompile(`(?m)^( *)(\S+(?: client| server)?) +([├│✗].*)$`).FindAllStringSubmatch(out[at:], -1)
	var got []string
	for _, r := range rows {
		got = append(got, r[1]+r[2])
	}
	want := []string{
		"demo",
		"  Unary client", "    Unary server",
		"  ServerStream client", "    ServerStream server",
		"  ClientStream client", "    ClientStream server",
		"  Bidi client", "    Bidi server",
		"  Unary client", "    Unary server",
		"  Unary client", "    Unary server",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("waterfall rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The demo span spans the whole axis; every other bar starts with ├
	// (or is a single │ or ✗ column) after the demo span's start.
	if len(rows) > 0 && !regexp.MustCompile(`^├─+┤ `).MatchString(rows[0][3]) {
		t.Errorf("demo span bar %q does not span the axis", rows[0][3])
	}
}

// treeSpan is one span's title line in a printed tree.
type treeSpan struct {
	name, kind string
	depth      int
	parent     *treeSpan // nil for a root
}

// treeTitle is a span's title line: the tree's prefix, its connector (none
// for a root), the name and the kind.
var treeTitle = regexp.MustCompile(`^((?:│  |   )*)(├─ |└─ )?(\S+) \((client|server|internal)\) `)

// parseTrees reads the span titles of the printed trees, each with the
// span it is drawn under.
func parseTrees(out string) []*treeSpan {
	var spans, stack []*treeSpan
	for _, line := range strings.Split(out, "\n") {
		m := treeTitle.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s := &treeSpan{name: m[3], kind: m[4]}
		if m[2] != "" {
			s.depth = utf8.RuneCountInString(m[1])/3 + 1
		}
		stack = stack[:min(len(stack), s.depth)]
		if s.depth > 0 && len(stack) == s.depth {
			s.parent = stack[s.depth-1]
		}
		stack = append(stack, s)
		spans = append(spans, s)
	}
	return spans
}

// -api opentelemetry: grpctrace records natively through OpenTelemetry;
// the same calls, printed as the same trees (the spans named as
// OpenTelemetry names them, without the leading "/") and waterfall.
func TestRunOpenTelemetryAPI(t *testing.T) {
	noOTelEnv(t)
	var stdout, stderr syncBuffer
	if err := run(context.Background(), []string{"-api", "opentelemetry"}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	out := stdout.String()
	id := traceIDOf(t, out)
	const otelSvc = "grpctrace.testpb.TestService/"
	for _, want := range []string{
		"tracer: OpenTelemetry SDK, recorded natively through the OpenTelemetry API, service grpctrace-demo, ",
		"trace " + id + ": 13 spans, ",
		"\ndemo (internal) ",
		"demo.baggage.user=ada",
		"rpc.system.name=grpc",
		"panic recovered panic=\"testpb: handler panic requested\"",
		"close send",
		"client half-close",
		"message.type=SENT",
		"\nwaterfall: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The tree: the demo span, the client span of each call under it in
	// call order, and each call's server span the child of its client span.
	spans := parseTrees(out)
	var calls []string
	for _, s := range spans {
		switch s.kind {
		case "internal":
			if s.name != "demo" || s.parent != nil {
				t.Errorf("internal span %q under %v, want the demo span at the root", s.name, s.parent)
			}
		case "client":
			calls = append(calls, strings.TrimPrefix(s.name, otelSvc))
			if !strings.HasPrefix(s.name, otelSvc) {
				t.Errorf("client span %s: OpenTelemetry names spans %sMethod, without a leading \"/\"", s.name, otelSvc)
			}
			if s.parent == nil || s.parent.name != "demo" {
				t.Errorf("client span %s not under the demo span", s.name)
			}
		case "server":
			if s.parent == nil || s.parent.kind != "client" || s.parent.name != s.name {
				t.Errorf("server span %s is not the child of its client span (parent %+v)", s.name, s.parent)
			}
		}
	}
	if got, want := strings.Join(calls, " "), "Unary ServerStream ClientStream Bidi Unary Unary"; got != want {
		t.Errorf("client spans %s, want %s", got, want)
	}
	if len(spans) != 13 {
		t.Errorf("%d spans in the tree, want 13", len(spans))
	}
	// The failed call: an error on the client, not on the server; the
	// panic: an error on both sides; the status message as the error's
	// description.
	for _, re := range []string{
		`(?m)├─ ` + otelSvc + `Unary \(client\) \S+ NotFound ✗ no such record$`,
		`(?m)└─ ` + otelSvc + `Unary \(server\) \S+ NotFound$`,
		`(?m)└─ ` + otelSvc + `Unary \(client\) \S+ Internal ✗ panic: testpb: handler panic requested$`,
		`(?m)└─ ` + otelSvc + `Unary \(server\) \S+ Internal ✗ panic: testpb: handler panic requested$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output does not match %s", re)
		}
	}
	checkWaterfall(t, out)
}

// The tree parser the tests read the printed trees with.
func TestParseTrees(t *testing.T) {
	spans := parseTrees(`trace 1: 4 spans, 1ms

demo (internal) 1ms
├─ a (client) 1ms OK
│  │ rpc.method=a (server) x
│  └─ a (server) 1ms OK
└─ b (client) 1ms OK
     detail (client) y
`)
	var got []string
	for _, s := range spans {
		parent := "-"
		if s.parent != nil {
			parent = s.parent.name + "/" + s.parent.kind
		}
		got = append(got, fmt.Sprintf("%s/%s@%d<%s", s.name, s.kind, s.depth, parent))
	}
	if want := "demo/internal@0<- a/client@1<demo/internal a/server@2<a/client b/client@1<demo/internal"; strings.Join(got, " ") != want {
		t.Errorf("parseTrees: %s, want %s", strings.Join(got, " "), want)
	}
}

// -mode=server and -mode=client in one test process: the client's output
// has the client spans under the demo span, the server's the server spans
// of the same trace, whose parents it did not record. Server and client
// join one trace whichever API each records through.
func TestRunServerAndClient(t *testing.T) {
	for _, apis := range [][2]string{
		{apiOpenTracing, apiOpenTracing},
		{apiOpenTelemetry, apiOpenTelemetry},
		{apiOpenTelemetry, apiOpenTracing},
		{apiOpenTracing, apiOpenTelemetry},
	} {
		t.Run("server="+apis[0]+"/client="+apis[1], func(t *testing.T) { testRunServerAndClient(t, apis[0], apis[1]) })
	}
}

func testRunServerAndClient(t *testing.T, serverAPI, clientAPI string) {
	noOTelEnv(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var srvOut, srvErr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-mode=server", "-listen=127.0.0.1:0", "-api=" + serverAPI}, &srvOut, &srvErr)
	}()

	listening := regexp.MustCompile(`listening on (\S+)`)
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; time.Sleep(10 * time.Millisecond) {
		if m := listening.FindStringSubmatch(srvOut.String()); m != nil {
			addr = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start:\n%s\n%s", srvOut.String(), srvErr.String())
		}
	}

	var cliOut, cliErr syncBuffer
	if err := run(context.Background(), []string{"-mode=client", "-target=" + addr, "-api=" + clientAPI}, &cliOut, &cliErr); err != nil {
		t.Fatalf("client: %v\n%s", err, cliErr.String())
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("server: %v\n%s", err, srvErr.String())
	}
	id := traceIDOf(t, cliOut.String())
	cli, srv := cliOut.String(), srvOut.String()
	if !strings.Contains(cli, "trace "+id+": 7 spans") || strings.Count(cli, "(client) ") != 6 || strings.Contains(cli, "(server) ") {
		t.Errorf("client output: want the demo span and 6 client spans of trace %s:\n%s", id, cli)
	}
	if !strings.Contains(srv, "trace "+id+": 6 spans") || strings.Count(srv, "(server) ") != 6 || strings.Contains(srv, "(client) ") {
		t.Errorf("server output: want 6 server spans of trace %s:\n%s", id, srv)
	}
	if n := strings.Count(srv, "not recorded here"); n != 6 {
		t.Errorf("server output: %d spans with a remote parent, want 6", n)
	}
	if n := strings.Count(srv, "demo.baggage.user=ada"); n != 6 {
		t.Errorf("server output: %d spans with the client's baggage, want 6", n)
	}
	if !strings.Contains(srv, "service grpctrace-demo-server") || !strings.Contains(cli, "service grpctrace-demo-client") {
		t.Errorf("default service names missing:\n%s\n%s", srv, cli)
	}
}

// otlpReceiver is an OTLP trace receiver, over gRPC or HTTP, that keeps
// what it is sent.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu   sync.Mutex
	reqs []*collectortrace.ExportTraceServiceRequest
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	var msg collectortrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &msg)
	}
	if err != nil || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	r.Export(req.Context(), &msg)
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// spans returns, per service name, the trace IDs of the spans received.
func (r *otlpReceiver) spans() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]string{}
	for _, req := range r.reqs {
		for _, rs := range req.GetResourceSpans() {
			var service string
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					out[service] = append(out[service], hex.EncodeToString(s.GetTraceId()))
				}
			}
		}
	}
	return out
}

func grpcReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &otlpReceiver{}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, rcv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return rcv, lis.Addr().String()
}

func checkExported(t *testing.T, rcv *otlpReceiver, out, service string) {
	t.Helper()
	id := traceIDOf(t, out)
	got := rcv.spans()
	if len(got) != 1 || len(got[service]) != 13 {
		t.Fatalf("received spans by service: %v; want 13 spans of %s", got, service)
	}
	for _, tid := range got[service] {
		if tid != id {
			t.Errorf("received a span of trace %s, want %s", tid, id)
		}
	}
}

// -otlp exports the spans to an OTLP/gRPC receiver; -print=false prints no
// trees.
func TestRunOTLPFlag(t *testing.T) {
	noOTelEnv(t)
	rcv, addr := grpcReceiver(t)
	var stdout, stderr syncBuffer
	if err := run(context.Background(), []string{"-otlp", addr, "-print=false", "-service", "flagged"}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	checkExported(t, rcv, stdout.String(), "flagged")
	if strings.Contains(stdout.String(), "waterfall") {
		t.Errorf("-print=false printed a waterfall:\n%s", stdout.String())
	}
}

// With no -otlp, the standard environment variables choose the endpoint,
// the protocol and the service name.
func TestRunOTLPEnvironment(t *testing.T) {
	noOTelEnv(t)
	t.Run("grpc", func(t *testing.T) {
		rcv, addr := grpcReceiver(t)
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr)
		t.Setenv("OTEL_SERVICE_NAME", "from-env")
		var stdout, stderr syncBuffer
		if err := run(context.Background(), nil, &stdout, &stderr); err != nil {
			t.Fatalf("run: %v\n%s", err, stderr.String())
		}
		checkExported(t, rcv, stdout.String(), "from-env")
		if !strings.Contains(stdout.String(), "waterfall") {
			t.Errorf("exporting stopped the printing:\n%s", stdout.String())
		}
	})
	t.Run("http/protobuf", func(t *testing.T) {
		rcv := &otlpReceiver{}
		hs := httptest.NewServer(rcv)
		defer hs.Close()
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", hs.URL)
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
		var stdout, stderr syncBuffer
		if err := run(context.Background(), []string{"-print=false"}, &stdout, &stderr); err != nil {
			t.Fatalf("run: %v\n%s", err, stderr.String())
		}
		checkExported(t, rcv, stdout.String(), "grpctrace-demo")
	})
}

// A collector that cannot be reached makes the run fail, rather than
// losing the spans quietly.
func TestRunOTLPUnreachable(t *testing.T) {
	noOTelEnv(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	var stdout, stderr syncBuffer
	err = run(context.Background(), []string{"-otlp", addr, "-print=false", "-shutdown-timeout", "500ms"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "exporting spans") {
		t.Fatalf("run with no collector: %v, want an export error", err)
	}
}

func TestUsage(t *testing.T) {
	noOTelEnv(t)
	var stdout, stderr syncBuffer
	if err := run(context.Background(), []string{"-h"}, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{
		"-mode", "-api", "-listen", "-target", "-otlp", "-otlp-protocol", "-print", "-service", "-width",
		"-message-events", "-payloads", "-timeout", "-shutdown-timeout",
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("-h does not document %s", want)
		}
	}
	for _, args := range [][]string{
		{"-mode=proxy"},
		{"-api=opencensus"},
		{"-print=false"},
		{"-width=3"},
		{"extra"},
		{"-nosuchflag"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

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
	// One waterfall row per span: the demo span, then client and server
	// rows in call order, indented under it.
	rows := regexp.MustCompile(`(?m)^( *)(\S+(?: client| server)?) +([├│✗].*)$`).FindAllStringSubmatch(out[strings.Index(out, "\nwaterfall: "):], -1)
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

// -mode=server and -mode=client in one test process: the client's output
// has the client spans under the demo span, the server's the server spans
// of the same trace, whose parents it did not record.
func TestRunServerAndClient(t *testing.T) {
	noOTelEnv(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var srvOut, srvErr syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-mode=server", "-listen=127.0.0.1:0"}, &srvOut, &srvErr) }()

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
	if err := run(context.Background(), []string{"-mode=client", "-target=" + addr}, &cliOut, &cliErr); err != nil {
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
		"-mode", "-listen", "-target", "-otlp", "-otlp-protocol", "-print", "-service", "-width",
		"-message-events", "-payloads", "-timeout", "-shutdown-timeout",
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("-h does not document %s", want)
		}
	}
	for _, args := range [][]string{
		{"-mode=proxy"},
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

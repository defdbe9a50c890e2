package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uber/jaeger-client-go"
	"github.com/uber/jaeger-client-go/transport"

	"github.com/c2e00e20/grpctrace/examples/demo"
)

var (
	buildOnce sync.Once
	binDir    string
	demoBin   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// demoBinary builds the demo command (examples/cmd/demo) once.
func demoBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = err
			return
		}
		if binDir, buildErr = os.MkdirTemp("", "grpctrace-e2e-"); buildErr != nil {
			return
		}
		demoBin = filepath.Join(binDir, "demo")
		cmd := exec.Command(goTool, "build", "-o", demoBin, "./cmd/demo")
		cmd.Dir = filepath.Join("..", "examples")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building the demo: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return demoBin
}

// command returns the demo binary run with args, killed if this test
// process dies first.
func command(ctx context.Context, t *testing.T, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, demoBinary(t), args...)
	cmd.Env = os.Environ()
	killWithParent(cmd)
	return cmd
}

var traceIDLine = regexp.MustCompile(`(?m)^trace id: ([0-9a-f]{32})$`)

func traceIDIn(t *testing.T, out string) string {
	t.Helper()
	m := traceIDLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no trace id in the demo's output:\n%s", out)
	}
	return m[1]
}

func processTag(tr jTrace, s jSpan, key string) any {
	v, _ := tag(tr.Processes[s.ProcessID].Tags, key)
	return v
}

// syncBuilder is a strings.Builder safe for one writer and other readers.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuilder) WriteString(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.WriteString(s)
}

func (b *syncBuilder) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// 1. The demo, as shipped: the OpenTelemetry SDK behind the OpenTracing
// bridge, exporting over OTLP to the endpoint of the standard environment
// variable, server and client in one process.
func TestOpenTelemetryBridgeOTLP(t *testing.T) {
	e := needJaeger(t)
	service := "grpctrace-e2e-otel-" + runID
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := command(ctx, t)
	cmd.Env = append(cmd.Env, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+e.otlp, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_SERVICE_NAME="+service)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	if !strings.Contains(string(out), "exported over OTLP (grpc) to http://"+e.otlp) || !strings.Contains(string(out), "waterfall:") {
		t.Errorf("demo output does not report the export, or lacks the waterfall:\n%s", out)
	}
	id := traceIDIn(t, string(out))

	tr := waitTrace(t, e, id, 13)
	d := checkDemoTrace(t, tr, service, service)
	checkSearch(t, e, id, service)

	if v := processTag(tr, d.root, "telemetry.sdk.name"); v != "opentelemetry" {
		t.Errorf("process tag telemetry.sdk.name = %v, want opentelemetry (the OTel SDK)", v)
	}
	// The bridge turns the error tag into the span's status.
	for i, w := range demoRPCs {
		for side, s := range map[string]jSpan{"client": d.clients[i], "server": d.servers[i]} {
			wantErr := w.clientErr
			if side == "server" {
				wantErr = w.serverErr
			}
			if got, _ := tag(s.Tags, "otel.status_code"); (got == "ERROR") != wantErr {
				t.Errorf("call %d %s: otel.status_code %v, want ERROR %v", i, side, got, wantErr)
			}
		}
	}
}

// newJaegerTracer returns a jaeger-client-go tracer for service that
// samples everything and reports to Jaeger's collector in Thrift over HTTP.
func newJaegerTracer(t *testing.T, collector, service string) (*jaeger.Tracer, func()) {
	reporter := jaeger.NewRemoteReporter(
		transport.NewHTTPTransport(collector),
		jaeger.ReporterOptions.BufferFlushInterval(100*time.Millisecond),
		jaeger.ReporterOptions.Logger(testLogger{t}),
	)
	tracer, closer := jaeger.NewTracer(service, jaeger.NewConstSampler(true), reporter,
		jaeger.TracerOptions.Gen128Bit(true),
		jaeger.TracerOptions.Logger(testLogger{t}),
	)
	return tracer.(*jaeger.Tracer), func() {
		if err := closer.Close(); err != nil {
			t.Errorf("closing the %s tracer: %v", service, err)
		}
	}
}

type testLogger struct{ t *testing.T }

func (l testLogger) Error(msg string)                  { l.t.Errorf("jaeger-client-go: %s", msg) }
func (l testLogger) Infof(msg string, args ...any)     { l.t.Logf("jaeger-client-go: "+msg, args...) }
func (l testLogger) Debugf(msg string, args ...any)    {}
func (l testLogger) Errorf(msg string, args ...any)    { l.t.Errorf("jaeger-client-go: "+msg, args...) }
func (l testLogger) Warnf(msg string, args ...any)     { l.t.Logf("jaeger-client-go: "+msg, args...) }
func (l testLogger) Printf(format string, args ...any) { l.t.Logf(format, args...) }

// 2. A native OpenTracing tracer, jaeger-client-go, on each side (two
// services), reporting to Jaeger's collector in Thrift over HTTP, with
// baggage set on the client's span and read by the server's handlers.
func TestJaegerClientThrift(t *testing.T) {
	e := needJaeger(t)
	clientService := "grpctrace-e2e-jaeger-client-" + runID
	serverService := "grpctrace-e2e-jaeger-server-" + runID
	clientTracer, closeClient := newJaegerTracer(t, e.collector, clientService)
	serverTracer, closeServer := newJaegerTracer(t, e.collector, serverService)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := demo.NewServer(demo.Options{Tracer: serverTracer, MessageEvents: true})
	go srv.Serve(lis)
	conn, err := demo.Dial(lis.Addr().String(), demo.Options{Tracer: clientTracer, MessageEvents: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, runErr := demo.Run(ctx, clientTracer, conn)
	conn.Close()
	srv.GracefulStop()
	closeClient() // flush the reporters
	closeServer()
	if runErr != nil {
		t.Fatalf("demo calls: %v", runErr)
	}
	id := res.Root.(jaeger.SpanContext).TraceID().String()
	if len(id) != 32 {
		t.Fatalf("trace ID %q: want 128 bits", id)
	}

	tr := waitTrace(t, e, id, 13)
	d := checkDemoTrace(t, tr, clientService, serverService)
	checkSearch(t, e, id, clientService, serverService)

	// The spans came from jaeger-client-go, which names itself in its
	// process tags (jaeger.version=Go-x.y.z, which Jaeger v2 keeps as
	// opencensus.exporterversion=Jaeger-Go-x.y.z), and which logs the
	// baggage item set on the root.
	for _, s := range []jSpan{d.root, d.servers[0]} {
		if v := fmt.Sprint(processTag(tr, s, "opencensus.exporterversion")); !strings.HasPrefix(v, "Jaeger-Go-") {
			t.Errorf("span %s: process tag opencensus.exporterversion = %q, want jaeger-client-go's Jaeger-Go-x.y.z", s.OperationName, v)
		}
	}
	if !hasLog(d.root, map[string]string{"event": "baggage", "key": demo.BaggageKey, "value": demo.BaggageValue}) {
		t.Errorf("root span logs %+v: no baggage event for %s", d.root.Logs, demo.BaggageKey)
	}
}

// 3. Client and server in two OS processes (the demo binary with
// -mode=server and -mode=client, each its own service, exporting over OTLP
// with the -otlp flag) joined in one trace over TCP on 127.0.0.1.
func TestCrossProcess(t *testing.T) {
	e := needJaeger(t)
	serverService := "grpctrace-e2e-xproc-server-" + runID
	clientService := "grpctrace-e2e-xproc-client-" + runID
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	srvCmd := command(ctx, t, "-mode=server", "-listen=127.0.0.1:0", "-otlp", e.otlp, "-service", serverService)
	stdout, err := srvCmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var srvErr bytes.Buffer
	srvCmd.Stderr = &srvErr
	if err := srvCmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Read the server's output as it comes, report its address, then reap
	// it.
	var srvOut syncBuilder
	addrs := make(chan string, 1)
	exited := make(chan error, 1)
	go func() {
		listening := regexp.MustCompile(`listening on (\S+)`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			srvOut.WriteString(sc.Text() + "\n")
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addrs <- m[1]
			}
		}
		exited <- srvCmd.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			srvCmd.Process.Kill()
			<-exited
		}
	})
	var addr string
	select {
	case addr = <-addrs:
	case err := <-exited:
		stopped = true
		t.Fatalf("server exited before listening: %v\n%s\n%s", err, srvOut.String(), srvErr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("server not listening after 30s:\n%s", srvOut.String())
	}
	_, portText, _ := net.SplitHostPort(addr)
	serverPort, _ := strconv.Atoi(portText)

	cliCmd := command(ctx, t, "-mode=client", "-target", addr, "-otlp", e.otlp, "-service", clientService)
	var cliErr bytes.Buffer
	cliCmd.Stderr = &cliErr
	out, err := cliCmd.Output()
	if err != nil {
		t.Fatalf("client: %v\n%s\n%s", err, out, cliErr.String())
	}
	id := traceIDIn(t, string(out))

	// SIGTERM: the server drains, flushes its spans and prints them.
	if err := srvCmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("server exit: %v\n%s\n%s", err, srvOut.String(), srvErr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server still running 30s after SIGTERM")
	}
	if want := "trace " + id + ": 6 spans"; !strings.Contains(srvOut.String(), want) {
		t.Errorf("server output lacks %q:\n%s", want, srvOut.String())
	}

	tr := waitTrace(t, e, id, 13)
	d := checkDemoTrace(t, tr, clientService, serverService)
	checkSearch(t, e, id, clientService, serverService)

	// Two processes, and they are the ones started here.
	clientPID, serverPID := float64(cliCmd.Process.Pid), float64(srvCmd.Process.Pid)
	if got := processTag(tr, d.root, "process.pid"); got != clientPID {
		t.Errorf("client spans from pid %v, want the client process %v", got, clientPID)
	}
	for i, s := range d.servers {
		if got := processTag(tr, s, "process.pid"); got != serverPID {
			t.Errorf("call %d server span from pid %v, want the server process %v", i, got, serverPID)
		}
		// The server saw the client's loopback address, the client the
		// server's port.
		if got, _ := tag(s.Tags, "peer.ipv4"); got != "127.0.0.1" {
			t.Errorf("call %d server span: peer.ipv4 %v, want 127.0.0.1", i, got)
		}
		if got, _ := tag(d.clients[i].Tags, "peer.port"); got != float64(serverPort) {
			t.Errorf("call %d client span: peer.port %v, want the server's %d", i, got, serverPort)
		}
	}
}

package hardening

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opentracing/opentracing-go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/hardening/internal/probe"
	"github.com/c2e00e20/grpctrace/hardening/internal/spanlog"
	"github.com/c2e00e20/grpctrace/testpb"
)

const service = "/grpctrace.testpb.TestService/"

var (
	buildOnce sync.Once
	binDir    string
	peerBin   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// faultpeer builds cmd/faultpeer once.
func faultpeer(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "grpctrace-faultpeer-"); buildErr != nil {
			return
		}
		peerBin = filepath.Join(binDir, "faultpeer")
		cmd := exec.Command("go", "build", "-o", peerBin, "./cmd/faultpeer")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building faultpeer: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return peerBin
}

// peer is a running faultpeer process.
type peer struct {
	t      *testing.T
	cmd    *exec.Cmd
	spans  string // its span file
	lines  chan string
	stderr *syncBuffer
	done   chan struct{} // closed when the process has been waited for
	err    error         // Wait's, once done is closed
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startPeer runs faultpeer with args and -spans set to a file of its own;
// the process is killed at the end of the test if it still runs.
func startPeer(t *testing.T, args ...string) *peer {
	t.Helper()
	p := &peer{
		t:      t,
		spans:  filepath.Join(t.TempDir(), "spans.jsonl"),
		lines:  make(chan string, 16),
		stderr: &syncBuffer{},
		done:   make(chan struct{}),
	}
	p.cmd = exec.Command(faultpeer(t), append(args, "-spans", p.spans, "-timeout", "2m")...)
	p.cmd.Stderr = p.stderr
	killWithParent(p.cmd)
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody is waiting for more lines
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// await waits at most d for a line of output starting with prefix and
// returns the rest of it.
func (p *peer) await(prefix string, d time.Duration) string {
	p.t.Helper()
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for {
		select {
		case l := <-p.lines:
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return strings.TrimSpace(rest)
			}
		case <-p.done:
			p.t.Fatalf("faultpeer exited (%v) before printing %q; stderr:\n%s", p.err, prefix, p.stderr)
		case <-timeout.C:
			p.t.Fatalf("faultpeer printed no %q within %v; stderr:\n%s", prefix, d, p.stderr)
		}
	}
}

// kill sends SIGKILL and waits, at most 10 s, for the process to be gone.
func (p *peer) kill() time.Time {
	p.t.Helper()
	at := time.Now()
	if err := p.cmd.Process.Kill(); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Fatal("killed faultpeer still running after 10 s")
	}
	return at
}

// readSpans reads the process's span file.
func (p *peer) readSpans() []spanlog.Span {
	p.t.Helper()
	spans, err := spanlog.Read(p.spans)
	if err != nil {
		p.t.Fatal(err)
	}
	return spans
}

// waitSpans polls the process's span file, every 10 ms for at most d,
// until ok holds; the file is the only channel out of another process.
func (p *peer) waitSpans(d time.Duration, ok func([]spanlog.Span) bool) []spanlog.Span {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for {
		spans := p.readSpans()
		if ok(spans) {
			return spans
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("span file never held the spans awaited within %v; it holds %d: %+v", d, len(spans), spans)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tracePath is one of grpctrace's two ways of recording.
type tracePath string

const (
	// pathOpenTracing: grpctrace.WithTracer, the OpenTelemetry SDK behind
	// the OpenTracing bridge.
	pathOpenTracing tracePath = "opentracing"
	// pathOpenTelemetry: grpctrace.WithTracerProvider with the SDK's
	// tracer provider and WithPropagators (W3C trace context and
	// baggage).
	pathOpenTelemetry tracePath = "opentelemetry"
)

// tracePaths are both paths, in the order the tests run them.
var tracePaths = []tracePath{pathOpenTracing, pathOpenTelemetry}

// tracing is a tracer of the test process, recording in memory, on one of
// the paths: either tracer (OpenTracing) or provider (OpenTelemetry) is
// set.
type tracing struct {
	path     tracePath
	tracer   opentracing.Tracer
	provider trace.TracerProvider
	mem      *spanlog.Memory
	open     *openSpans
}

// newTracing returns a tracing on the OpenTracing path.
func newTracing(t *testing.T) *tracing { return newTracingOn(t, pathOpenTracing) }

// newTracingOn returns a tracing on the path.
func newTracingOn(t *testing.T, path tracePath) *tracing {
	mem := spanlog.NewMemory()
	open := &openSpans{changed: make(chan struct{})}
	tr := &tracing{path: path, mem: mem, open: open}
	// open after mem: a span counted as ended is in mem.
	var tp *sdktrace.TracerProvider
	if path == pathOpenTelemetry {
		tr.provider, tp = spanlog.TracerProvider(mem, mem, open)
	} else {
		tr.tracer, tp = spanlog.Tracer(mem, mem, open)
	}
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tr
}

// options returns grpctrace's options recording through tr, followed by
// more.
func (tr *tracing) options(more ...grpctrace.Option) []grpctrace.Option {
	return append(traceOptions(tr.path, tr.tracer, tr.provider), more...)
}

// traceOptions returns the options choosing the path: WithTracer(tracer),
// or WithTracerProvider(provider) with the W3C propagators.
func traceOptions(path tracePath, tracer opentracing.Tracer, provider trace.TracerProvider) []grpctrace.Option {
	if path == pathOpenTelemetry {
		return []grpctrace.Option{grpctrace.WithTracerProvider(provider), grpctrace.WithPropagators(spanlog.Propagator())}
	}
	return []grpctrace.Option{grpctrace.WithTracer(tracer)}
}

// spanName is the name grpctrace gives the span of a test service method
// on the path: the full method on the OpenTracing path, without its
// leading "/" on the OpenTelemetry path.
func spanName(path tracePath, method string) string {
	if path == pathOpenTelemetry {
		return strings.TrimPrefix(service, "/") + method
	}
	return service + method
}

// openSpans is a span processor counting the spans started and ended, so
// that a test can wait for every span started to have ended (and been
// recorded) before asserting that none was.
type openSpans struct {
	mu             sync.Mutex
	started, ended int
	changed        chan struct{} // closed and replaced on every change
}

func (o *openSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) { o.add(1, 0) }
func (o *openSpans) OnEnd(sdktrace.ReadOnlySpan)                     { o.add(0, 1) }
func (*openSpans) ForceFlush(context.Context) error                  { return nil }
func (*openSpans) Shutdown(context.Context) error                    { return nil }

func (o *openSpans) add(started, ended int) {
	o.mu.Lock()
	o.started += started
	o.ended += ended
	close(o.changed)
	o.changed = make(chan struct{})
	o.mu.Unlock()
}

// waitSettled waits, at most 10 s, until every span started has ended.
func (o *openSpans) waitSettled(t *testing.T) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		o.mu.Lock()
		started, ended, changed := o.started, o.ended, o.changed
		o.mu.Unlock()
		if started == ended {
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("%d spans started, %d ended after 10 s", started, ended)
		}
	}
}

// dial returns a traced client of the test service at addr.
func (tr *tracing) dial(t *testing.T, addr string) testpb.TestServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(tr.options()...)),
		grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(tr.options()...)),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return testpb.NewTestServiceClient(conn)
}

// serve starts a traced test server on 127.0.0.1, with the probes and the
// given interceptors after grpctrace's, and returns its address.
func (tr *tracing) serve(t *testing.T, unary grpc.UnaryServerInterceptor, stream grpc.StreamServerInterceptor, opts ...grpc.ServerOption) string {
	t.Helper()
	u := []grpc.UnaryServerInterceptor{grpctrace.UnaryServerInterceptor(tr.options()...), probe.Unary}
	s := []grpc.StreamServerInterceptor{grpctrace.StreamServerInterceptor(tr.options()...), probe.Stream}
	if unary != nil {
		u = append(u, unary)
	}
	if stream != nil {
		s = append(s, stream)
	}
	return serveTestService(t, append(opts, grpc.ChainUnaryInterceptor(u...), grpc.ChainStreamInterceptor(s...))...)
}

// serveTestService serves the test service on 127.0.0.1 with opts until the
// test ends, and returns its address.
func serveTestService(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	testpb.RegisterTestServiceServer(srv, testpb.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return lis.Addr().String()
}

// waitFinished waits until this process has finished a span of the method
// and kind, checks that no span finished twice, and returns every span and
// that one.
func (tr *tracing) waitFinished(t *testing.T, method, kind string) ([]spanlog.Span, spanlog.Span) {
	t.Helper()
	spans, err := tr.mem.Wait(10*time.Second, func(s []spanlog.Span) bool { return count(s, named(method, kind)) > 0 })
	if err != nil {
		t.Fatal(err)
	}
	noTwice(t, spans)
	return spans, find(t, spans, named(method, kind))
}

// noTwice fails the test if a span was finished twice.
func noTwice(t *testing.T, spans []spanlog.Span) {
	t.Helper()
	for _, s := range spans {
		if s.Twice {
			t.Errorf("span %q finished twice", s.Name)
		}
	}
}

func named(method, kind string) func(spanlog.Span) bool {
	return namedOn(pathOpenTracing, method, kind)
}

// namedOn matches the span of the method and kind as the path names it.
func namedOn(path tracePath, method, kind string) func(spanlog.Span) bool {
	name := spanName(path, method)
	return func(s spanlog.Span) bool { return s.Name == name && s.Kind == kind && !s.Twice }
}

func count(spans []spanlog.Span, match func(spanlog.Span) bool) int {
	n := 0
	for _, s := range spans {
		if match(s) {
			n++
		}
	}
	return n
}

// handlerOutcome checks that a server span's status is the one its
// handler returned, as the probe tagged it, and returns that status and
// the handler's context error.
func handlerOutcome(t *testing.T, s spanlog.Span) (codes.Code, string) {
	t.Helper()
	code, ok := s.Code()
	if !ok {
		t.Fatalf("server span without a status: %+v", s)
	}
	returned, ok := s.Attributes[probe.TagCode].(float64)
	if !ok {
		if i, isInt := s.Attributes[probe.TagCode].(int64); isInt {
			returned, ok = float64(i), true
		}
	}
	if !ok {
		t.Fatalf("server span not tagged by the probe: %+v", s)
	}
	if code != codes.Code(returned) {
		t.Errorf("server span status %v, but its handler returned %v", code, codes.Code(returned))
	}
	ctxErr, _ := s.Attributes[probe.TagContext].(string)
	return code, ctxErr
}

func find(t *testing.T, spans []spanlog.Span, match func(spanlog.Span) bool) spanlog.Span {
	t.Helper()
	s, err := spanlog.Find(spans, match)
	if err != nil {
		t.Fatalf("%v among %+v", err, spans)
	}
	return s
}

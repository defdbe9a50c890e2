package hardening

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opentracing/opentracing-go"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/hardening/internal/probe"
	"github.com/c2e00e20/grpctrace/hardening/internal/spanlog"
	"github.com/c2e00e20/grpctrace/testpb"
)

var (
	soakRPCs        = flag.Int("soak.rpcs", 2000, "RPCs the soak makes, split between the paths of -soak.paths (make soak: SOAK_RPCS)")
	soakConcurrency = flag.Int("soak.concurrency", 64, "RPCs the soak keeps in flight")
	soakSeed        = flag.Uint64("soak.seed", 0, "seed of the soak's choices; 0 picks one, which the soak logs")
	soakTimeout     = flag.Duration("soak.timeout", 15*time.Minute, "the soak fails if its RPCs take longer")
	soakPaths       = flag.String("soak.paths", "opentracing,opentelemetry", "grpctrace's paths the soak runs, one subtest each: opentracing (WithTracer, the OpenTelemetry bridge), opentelemetry (WithTracerProvider)")
	// soakHeapBound is how much more heap, after GC, the soak may end with
	// than it started with.
	soakHeapBound = flag.Int64("soak.heapbound", 4<<20, "bytes of heap growth allowed, after GC, on each path")
)

// TestSoak makes -soak.rpcs RPCs of every shape, at a concurrency of
// -soak.concurrency, over TCP on 127.0.0.1, through grpctrace's
// interceptors, on each of grpctrace's paths in turn (-soak.paths, a
// subtest each, the RPCs split between them): the OpenTelemetry SDK behind
// the OpenTracing bridge (WithTracer), and the SDK's tracer provider itself
// (WithTracerProvider, with the W3C trace context and baggage
// propagators). The RPCs are successes, server errors (mid-stream too),
// handler panics and client cancellations at random moments. Each RPC runs
// under a root span of its own, so that each trace is one RPC. At the end
// every RPC must have exactly one client span, child of its root, and one
// server span, child of the client span, both named for the method as the
// path names it; the client span's status must be the one the caller got,
// the server span's the one the handler returned, each flagged an error
// exactly when the default classifier says so (on the OpenTelemetry path
// with the status message as the description); every span started must
// have ended, once; and goroutines and heap, after GC, must be back to
// where they were.
func TestSoak(t *testing.T) {
	n, conc := *soakRPCs, *soakConcurrency
	var paths []tracePath
	for p := range strings.SplitSeq(*soakPaths, ",") {
		switch p := tracePath(strings.TrimSpace(p)); p {
		case pathOpenTracing, pathOpenTelemetry:
			paths = append(paths, p)
		default:
			t.Fatalf("-soak.paths: unknown path %q, want %s or %s", p, pathOpenTracing, pathOpenTelemetry)
		}
	}
	if len(paths) == 0 || n < len(paths) || conc <= 0 {
		t.Fatal("-soak.paths must name a path, -soak.rpcs be at least one per path, -soak.concurrency positive")
	}
	seed := *soakSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("soak: %d RPCs at concurrency %d over %v, seed %d (-soak.seed to repeat)", n, conc, paths, seed)
	for i, p := range paths {
		share := n / len(paths)
		if i < n%len(paths) {
			share++
		}
		t.Run(string(p), func(t *testing.T) { soak(t, p, share, conc, seed) })
	}
}

// soak is TestSoak on one path.
func soak(t *testing.T, path tracePath, n, conc int, seed uint64) {
	t.Logf("soak: %s: %d RPCs at concurrency %d, seed %d", path, n, conc, seed)
	goroutinesStart := runtime.NumGoroutine()
	check := newSoakCheck(path)
	r := &soakRun{t: t, outcomes: map[string]int{}, took: map[string]time.Duration{}}
	var tp *sdktrace.TracerProvider
	var opts []grpctrace.Option
	if path == pathOpenTelemetry {
		var provider trace.TracerProvider
		provider, tp = spanlog.TracerProvider(check, check)
		r.otel = provider.Tracer("github.com/c2e00e20/grpctrace/hardening")
		opts = traceOptions(path, nil, provider)
	} else {
		r.tracer, tp = spanlog.Tracer(check, check)
		opts = traceOptions(path, r.tracer, nil)
	}
	s := startSoakServer(t, opts)
	conn, err := grpc.NewClient(s.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(opts...)),
		grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(opts...)),
	)
	if err != nil {
		t.Fatal(err)
	}
	r.client, r.arrivals = testpb.NewTestServiceClient(conn), &s.arrivals

	// Warm up (connection, gRPC's pools, the method caches), then take
	// the baseline.
	warmup := min(256, n)
	r.run(warmup, conc, seed^0x5eed, time.Minute)
	check.waitSettled(t, warmup)
	goroutinesBefore, heapBefore := settle()

	start := time.Now()
	r.run(n, conc, seed, *soakTimeout)
	elapsed := time.Since(start)
	check.waitSettled(t, warmup+n)
	goroutinesAfter := waitGoroutines(goroutinesBefore, 10*time.Second)
	_, heapAfter := settle()

	conn.Close()
	s.stop()
	_ = tp.Shutdown(context.Background())
	goroutinesEnd := waitGoroutines(goroutinesStart, 10*time.Second)

	check.mu.Lock()
	defer check.mu.Unlock()
	t.Logf("soak: %s: %d RPCs in %v (%.0f RPC/s), plus %d warm-up RPCs", path, n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), warmup)
	t.Logf("soak: %s: spans started %d, finished %d, finished twice %d; traces complete %d (root + 1 client + 1 server each), incomplete %d",
		path, check.started, check.ended, check.twice, check.complete, len(check.traces))
	t.Logf("soak: %s: RPCs by shape/outcome asked -> status the caller got: %s", path, r.summary())
	t.Logf("soak: %s: goroutines: %d before the server, %d at the baseline, %d after the RPCs, %d after closing", path, goroutinesStart, goroutinesBefore, goroutinesAfter, goroutinesEnd)
	t.Logf("soak: %s: heap after GC: %s at the baseline, %s after the RPCs (%+d B, %+.1f B/RPC; bound %s)",
		path, mib(heapBefore), mib(heapAfter), int64(heapAfter)-int64(heapBefore), float64(int64(heapAfter)-int64(heapBefore))/float64(n), mib(uint64(*soakHeapBound)))

	for _, v := range check.violations {
		t.Error(v)
	}
	if check.violationCount > len(check.violations) {
		t.Errorf("... %d violations in all", check.violationCount)
	}
	if check.started != check.ended || check.twice != 0 {
		t.Errorf("%d spans started, %d finished, %d finished twice", check.started, check.ended, check.twice)
	}
	if want := 3 * (warmup + n); check.started != int64(want) || check.complete != warmup+n || len(check.traces) != 0 {
		t.Errorf("%d spans, %d complete traces, %d incomplete; want %d spans in %d complete traces", check.started, check.complete, len(check.traces), want, warmup+n)
	}
	if goroutinesAfter > goroutinesBefore {
		t.Errorf("goroutines: %d after the RPCs, %d before", goroutinesAfter, goroutinesBefore)
	}
	if goroutinesEnd > goroutinesStart {
		t.Errorf("goroutines: %d after closing, %d before the server", goroutinesEnd, goroutinesStart)
	}
	if int64(heapAfter)-int64(heapBefore) > *soakHeapBound {
		t.Errorf("heap grew by %d B over the soak, more than %d", int64(heapAfter)-int64(heapBefore), *soakHeapBound)
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }

// settle collects garbage, cleanups included, and returns the goroutines
// and the heap in use.
func settle() (int, uint64) {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapAlloc
}

// waitGoroutines waits, polling every 10 ms for at most d, for the
// goroutines to be at most want, and returns how many there are.
func waitGoroutines(want int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// soakServer is the traced test server, with, after grpctrace: the probe,
// a recovery turning panics into Internal, and the arrival signal.
type soakServer struct {
	addr     string
	arrivals sync.Map // request value -> chan struct{}, closed when the request arrives
	stop     func()
}

const arrivePrefix = "arrive:"

func startSoakServer(t *testing.T, opts []grpctrace.Option) *soakServer {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &soakServer{addr: lis.Addr().String()}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(opts...), probe.Unary, recoverUnary, s.arriveUnary),
		grpc.ChainStreamInterceptor(grpctrace.StreamServerInterceptor(opts...), probe.Stream, recoverStream, s.arriveStream),
	)
	testpb.RegisterTestServiceServer(srv, testpb.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	s.stop = func() {
		srv.Stop()
		<-served
	}
	return s
}

func (s *soakServer) arrived(req any) {
	if r, ok := req.(*testpb.Request); ok && strings.HasPrefix(r.GetValue(), arrivePrefix) {
		if ch, ok := s.arrivals.LoadAndDelete(r.GetValue()); ok {
			close(ch.(chan struct{}))
		}
	}
}

func (s *soakServer) arriveUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	s.arrived(req)
	return h(ctx, req)
}

func (s *soakServer) arriveStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, &arrivingStream{ServerStream: ss, s: s})
}

type arrivingStream struct {
	grpc.ServerStream
	s *soakServer
}

func (a *arrivingStream) RecvMsg(m any) error {
	err := a.ServerStream.RecvMsg(m)
	if err == nil {
		a.s.arrived(m)
	}
	return err
}

func recoverUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, status.Errorf(codes.Internal, "panic: %v", p)
		}
	}()
	return h(ctx, req)
}

func recoverStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = status.Errorf(codes.Internal, "panic: %v", p)
		}
	}()
	return h(srv, ss)
}

// soakRun makes the soak's RPCs, under root spans of tracer (OpenTracing
// path) or otel (OpenTelemetry path).
type soakRun struct {
	t        *testing.T
	tracer   opentracing.Tracer
	otel     trace.Tracer
	client   testpb.TestServiceClient
	arrivals *sync.Map
	ids      atomic.Int64

	mu       sync.Mutex
	outcomes map[string]int
	took     map[string]time.Duration
}

// Statuses a soak RPC may end with, by what it asked for.
var soakErrors = []codes.Code{codes.NotFound, codes.Internal, codes.PermissionDenied, codes.ResourceExhausted, codes.FailedPrecondition}

// run makes n RPCs, conc at a time, failing the test past timeout.
func (r *soakRun) run(n, conc int, seed uint64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for next.Add(1) <= int64(n) {
				if time.Now().After(deadline) {
					r.t.Errorf("soak past its %v timeout", timeout)
					return
				}
				r.one(rng)
			}
		}()
	}
	wg.Wait()
}

// one makes one RPC of a random shape and outcome, under a root span
// tagged with the status the caller got and the statuses the server may
// end with.
func (r *soakRun) one(rng *rand.Rand) {
	shape := []string{"Unary", "ServerStream", "ClientStream", "Bidi"}[rng.IntN(4)]
	outcome := "ok"
	switch p := rng.IntN(100); {
	case p < 25:
		outcome = "error"
	case p < 42:
		outcome = "cancel"
	case p < 47 && shape == "Unary":
		outcome = "panic"
	}
	ctx, finish := r.root(shape + "/" + outcome)
	ctx, cancel := context.WithTimeout(ctx, time.Minute) // a safety net
	defer cancel()

	fail := soakErrors[rng.IntN(len(soakErrors))]
	want := codes.OK
	server := []codes.Code{codes.OK}
	switch outcome {
	case "error":
		want, server = fail, []codes.Code{fail}
	case "panic":
		want, server = codes.Internal, []codes.Code{codes.Internal}
	case "cancel":
		want, server = codes.Canceled, []codes.Code{codes.Canceled}
	}
	began := time.Now()
	err := r.call(ctx, cancel, rng, shape, outcome, fail)
	took := time.Since(began)
	got := status.Code(err)
	if err == io.EOF {
		got = codes.OK
	}
	if got != want {
		r.t.Errorf("%s/%s: caller got %v, want %v", shape, outcome, err, want)
	}
	message := ""
	if err != io.EOF {
		message = status.Convert(err).Message()
	}
	finish(got, codeList(server), message)
	r.mu.Lock()
	r.outcomes[shape+"/"+outcome+" -> "+got.String()]++
	r.took[shape+"/"+outcome+" -> "+got.String()] += took
	r.mu.Unlock()
}

// root starts an RPC's root span, tagged soak.rpc; the function returned
// tags it with the status the caller got (soak.code, soak.message) and the
// statuses the server may end with (soak.server), and ends it.
func (r *soakRun) root(rpc string) (context.Context, func(got codes.Code, server, message string)) {
	if r.otel != nil {
		ctx, span := r.otel.Start(context.Background(), "soak", trace.WithAttributes(attribute.String("soak.rpc", rpc)))
		return ctx, func(got codes.Code, server, message string) {
			span.SetAttributes(attribute.Int64("soak.code", int64(got)), attribute.String("soak.server", server), attribute.String("soak.message", message))
			span.End()
		}
	}
	span := r.tracer.StartSpan("soak", opentracing.Tag{Key: "soak.rpc", Value: rpc})
	return opentracing.ContextWithSpan(context.Background(), span), func(got codes.Code, server, message string) {
		span.SetTag("soak.code", uint32(got))
		span.SetTag("soak.server", server)
		span.SetTag("soak.message", message)
		span.Finish()
	}
}

func codeList(cs []codes.Code) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = strconv.Itoa(int(c))
	}
	return strings.Join(s, ",")
}

// awaitArrival registers a request value to wait for; the returned
// function waits, at most 10 s, for the server to have received it.
func (r *soakRun) awaitArrival(ctx context.Context) (string, func() bool) {
	value := arrivePrefix + strconv.FormatInt(r.ids.Add(1), 10)
	ch := make(chan struct{})
	r.arrivals.Store(value, ch)
	return value, func() bool {
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		select {
		case <-ch:
			return true
		case <-ctx.Done():
		case <-t.C:
			r.t.Errorf("request %s never arrived", value)
		}
		r.arrivals.Delete(value)
		return false
	}
}

// cancelSoon cancels after up to 200 µs, so that cancellations land at
// every point of the stream's life.
func cancelSoon(rng *rand.Rand, cancel context.CancelFunc) {
	if d := time.Duration(rng.IntN(200)) * time.Microsecond; d > 0 && rng.IntN(2) == 0 {
		time.AfterFunc(d, cancel)
		return
	}
	cancel()
}

// call makes the RPC and returns the error that ended it for the caller
// (nil or io.EOF for OK).
func (r *soakRun) call(ctx context.Context, cancel context.CancelFunc, rng *rand.Rand, shape, outcome string, fail codes.Code) error {
	c := r.client
	switch shape {
	case "Unary":
		req := &testpb.Request{Value: "v"}
		switch outcome {
		case "error":
			req.FailCode, req.FailMessage = int32(fail), "soak"
		case "panic":
			req.Panic = true
		case "cancel":
			value, arrived := r.awaitArrival(ctx)
			req.Value, req.SleepMs = value, 60_000
			go func() {
				if arrived() {
					cancelSoon(rng2(rng), cancel)
				}
			}()
		}
		_, err := c.Unary(ctx, req)
		return err

	case "ServerStream":
		req := &testpb.Request{Value: "v", ResponseCount: int32(1 + rng.IntN(20))}
		stopAfter := -1
		switch outcome {
		case "error":
			req.FailAfter, req.FailCode, req.FailMessage = int32(1+rng.IntN(5)), int32(fail), "soak"
		case "cancel":
			// The server would stream for ever: the cancellation ends it.
			req.ResponseCount, stopAfter = 1<<30, 1+rng.IntN(5)
		}
		s, err := c.ServerStream(ctx, req)
		if err != nil {
			return err
		}
		for i := 0; i < 1<<20; i++ {
			if i == stopAfter {
				cancelSoon(rng, cancel)
			}
			if _, err := s.Recv(); err != nil {
				return err
			}
		}
		return fmt.Errorf("server stream never ended")

	case "ClientStream":
		s, err := c.ClientStream(ctx)
		if err != nil {
			return err
		}
		reqs := make([]*testpb.Request, 1+rng.IntN(5))
		for i := range reqs {
			reqs[i] = &testpb.Request{Value: "v"}
		}
		var arrived func() bool
		switch outcome {
		case "error":
			last := reqs[len(reqs)-1]
			last.FailCode, last.FailMessage = int32(fail), "soak"
		case "cancel":
			var value string
			value, arrived = r.awaitArrival(ctx)
			last := reqs[len(reqs)-1]
			last.Value, last.SleepMs = value, 60_000
		}
		for _, req := range reqs {
			if err := s.Send(req); err != nil {
				break // io.EOF: the status is for CloseAndRecv
			}
		}
		if arrived != nil && arrived() {
			cancelSoon(rng, cancel)
		}
		_, err = s.CloseAndRecv()
		return err

	case "Bidi":
		s, err := c.Bidi(ctx)
		if err != nil {
			return err
		}
		exchanges := 1 + rng.IntN(4)
		for i := range exchanges {
			req := &testpb.Request{Value: "v"}
			if outcome == "error" && i == exchanges-1 {
				req.FailCode, req.FailMessage = int32(fail), "soak"
			}
			if err := s.Send(req); err != nil {
				break
			}
			if _, err := s.Recv(); err != nil {
				return err
			}
		}
		if outcome == "cancel" {
			// The server has answered: its handler waits in Recv.
			cancelSoon(rng, cancel)
		} else if err := s.CloseSend(); err != nil {
			return err
		}
		for i := 0; i < 1<<20; i++ {
			if _, err := s.Recv(); err != nil {
				return err
			}
		}
		return fmt.Errorf("bidi stream never ended")
	}
	return fmt.Errorf("unknown shape %s", shape)
}

// rng2 derives a generator for another goroutine.
func rng2(rng *rand.Rand) *rand.Rand { return rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())) }

func (r *soakRun) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.outcomes))
	for k := range r.outcomes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n    %-40s %6d RPCs, %v each on average", k, r.outcomes[k], (r.took[k] / time.Duration(r.outcomes[k])).Round(time.Microsecond))
	}
	return b.String()
}

// soakCheck is a span processor that checks each trace as soon as it is
// complete (root, client and server spans ended) and forgets it, so that
// its memory does not grow with the soak.
type soakCheck struct {
	path           tracePath
	mu             sync.Mutex
	changed        *sync.Cond
	started, ended int64
	twice          int
	complete       int
	traces         map[trace.TraceID]*soakTrace
	violations     []string
	violationCount int
}

type soakSpan struct {
	name       string
	id, parent trace.SpanID
	attrs      map[string]any
	code       int64
	hasCode    bool
	status     otelcodes.Code
	desc       string
}

type soakTrace struct{ root, client, server *soakSpan }

func newSoakCheck(path tracePath) *soakCheck {
	c := &soakCheck{path: path, traces: map[trace.TraceID]*soakTrace{}}
	c.changed = sync.NewCond(&c.mu)
	return c
}

func (c *soakCheck) violation(format string, args ...any) {
	c.violationCount++
	if len(c.violations) < 20 {
		c.violations = append(c.violations, fmt.Sprintf(format, args...))
	}
}

func (c *soakCheck) OnStart(context.Context, sdktrace.ReadWriteSpan) {
	c.mu.Lock()
	c.started++
	c.mu.Unlock()
}

// serverFaults are the codes a server span is flagged an error for by
// default: the ones that blame the server.
var serverFaults = []codes.Code{codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss}

func (c *soakCheck) OnEnd(s sdktrace.ReadOnlySpan) {
	sp := &soakSpan{name: s.Name(), id: s.SpanContext().SpanID(), parent: s.Parent().SpanID(), attrs: map[string]any{}, status: s.Status().Code, desc: s.Status().Description}
	badCode := ""
	for _, a := range s.Attributes() {
		switch a.Key {
		case "rpc.grpc.status_code": // the OpenTracing path
			sp.code, sp.hasCode = a.Value.AsInt64(), true
		case "rpc.response.status_code": // the OpenTelemetry path
			if code, ok := spanlog.CodeOf(a.Value.AsString()); ok {
				sp.code, sp.hasCode = int64(code), true
			} else {
				badCode = a.Value.String()
			}
		case "soak.code", "soak.server", "soak.rpc", "soak.message", "rpc.method", probe.TagCode:
			sp.attrs[string(a.Key)] = a.Value.AsInterface()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.changed.Broadcast()
	c.ended++
	if badCode != "" {
		c.violation("span %q: rpc.response.status_code %q is no canonical code name", s.Name(), badCode)
	}
	id := s.SpanContext().TraceID()
	tr := c.traces[id]
	if tr == nil {
		tr = &soakTrace{}
		c.traces[id] = tr
	}
	var slot **soakSpan
	switch s.SpanKind() {
	case trace.SpanKindInternal:
		slot = &tr.root
	case trace.SpanKindClient:
		slot = &tr.client
	case trace.SpanKindServer:
		slot = &tr.server
	default:
		c.violation("span %q of kind %v", s.Name(), s.SpanKind())
		return
	}
	if *slot != nil {
		c.violation("trace %s: two %v spans (%s)", id, s.SpanKind(), s.Name())
		return
	}
	*slot = sp
	if tr.root == nil || tr.client == nil || tr.server == nil {
		return
	}
	delete(c.traces, id)
	c.complete++
	rpc, _ := tr.root.attrs["soak.rpc"].(string)
	if tr.client.parent != tr.root.id || tr.server.parent != tr.client.id {
		c.violation("trace %s (%v): client span not the root's child, or server span not the client's", id, rpc)
	}
	shape, _, _ := strings.Cut(rpc, "/")
	if want := spanName(c.path, shape); tr.client.name != want || tr.server.name != want {
		c.violation("trace %s (%v): client span %q, server span %q, want both %q", id, rpc, tr.client.name, tr.server.name, want)
	}
	if c.path == pathOpenTelemetry {
		for side, sp := range map[string]*soakSpan{"client": tr.client, "server": tr.server} {
			if got := sp.attrs["rpc.method"]; got != spanName(c.path, shape) {
				c.violation("trace %s (%v): %s span rpc.method %v, want %q", id, rpc, side, got, spanName(c.path, shape))
			}
		}
	}
	caller, _ := tr.root.attrs["soak.code"].(int64)
	if !tr.client.hasCode || tr.client.code != caller {
		c.violation("trace %s (%v): client span status %d, the caller got %d", id, rpc, tr.client.code, caller)
	}
	if handler, _ := tr.server.attrs[probe.TagCode].(int64); !tr.server.hasCode || tr.server.code != handler {
		c.violation("trace %s (%v): server span status %d, the handler returned %d", id, rpc, tr.server.code, handler)
	}
	allowed, _ := tr.root.attrs["soak.server"].(string)
	if !slices.Contains(strings.Split(allowed, ","), strconv.FormatInt(tr.server.code, 10)) {
		c.violation("trace %s (%v): server span status %d, want one of %s", id, rpc, tr.server.code, allowed)
	}
	// The span's own status: Error exactly when the default classifier
	// says so (the client: every code but OK; the server: the codes that
	// blame it), Unset otherwise, never Ok.
	message, _ := tr.root.attrs["soak.message"].(string)
	for _, side := range []struct {
		name    string
		span    *soakSpan
		isError bool
	}{
		{"client", tr.client, tr.client.code != int64(codes.OK)},
		{"server", tr.server, slices.Contains(serverFaults, codes.Code(tr.server.code))},
	} {
		want := otelcodes.Unset
		if side.isError {
			want = otelcodes.Error
		}
		if side.span.status != want {
			c.violation("trace %s (%v): %s span with status code %d has span status %v %q, want %v", id, rpc, side.name, side.span.code, side.span.status, side.span.desc, want)
		}
	}
	// On the OpenTelemetry path the description of an error is the status
	// message (the bridge leaves it empty).
	if c.path == pathOpenTelemetry && tr.client.status == otelcodes.Error && tr.client.desc != message {
		c.violation("trace %s (%v): client span status description %q, the caller's status message %q", id, rpc, tr.client.desc, message)
	}
}

func (*soakCheck) ForceFlush(context.Context) error { return nil }
func (*soakCheck) Shutdown(context.Context) error   { return nil }

// Write receives the tracer's report of a span finished twice.
func (c *soakCheck) Write(s spanlog.Span) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.twice++
	c.violation("span %q finished twice", s.Name)
}

// waitSettled waits, at most 30 s, for every span started to have ended
// and rpcs traces to be complete.
func (c *soakCheck) waitSettled(t *testing.T, rpcs int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	wake := time.AfterFunc(30*time.Second, func() {
		c.mu.Lock()
		c.changed.Broadcast()
		c.mu.Unlock()
	})
	defer wake.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for (c.started != c.ended || c.complete < rpcs) && time.Now().Before(deadline) {
		c.changed.Wait()
	}
	if c.started != c.ended || c.complete < rpcs {
		t.Errorf("after 30 s: %d spans started, %d ended, %d of %d traces complete", c.started, c.ended, c.complete, rpcs)
	}
}

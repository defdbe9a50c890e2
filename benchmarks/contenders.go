// Package benchmarks measures grpctrace next to peer gRPC tracing
// libraries, each instrumenting both the client and the server of an
// in-memory (bufconn) connection, with the same tracers, against the
// tracer's own cost of one traced RPC as the floor.
//
// The benchmarks are in the package's tests; cmd/benchcompare runs them in
// interleaved rounds and writes RESULTS.md. It is a module of its own so
// that the peers never enter the library's go.mod.
package benchmarks

import (
	"context"
	"errors"
	"io"
	"net"

	grpcopentracing "github.com/grpc-ecosystem/go-grpc-middleware/tracing/opentracing"
	otgrpc "github.com/opentracing-contrib/go-grpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// Contender names, as they appear in benchmark names (impl=NAME).
const (
	Base               = "base"                 // no instrumentation
	GRPCTrace          = "grpctrace"            // this library's interceptors
	GRPCTraceStats     = "grpctrace-stats"      // this library's stats handlers
	GRPCTraceOTel      = "grpctrace-otel"       // this library's interceptors, recording through OpenTelemetry
	GRPCTraceOTelStats = "grpctrace-otel-stats" // this library's stats handlers, recording through OpenTelemetry
	OTGRPC             = "otgrpc"               // github.com/opentracing-contrib/go-grpc
	Middleware         = "middleware"           // github.com/grpc-ecosystem/go-grpc-middleware v1 tracing/opentracing
	OTelGRPC           = "otelgrpc"             // OpenTelemetry's otelgrpc stats handlers
)

// Contender is one way of instrumenting both sides of a connection.
type Contender struct {
	Name string
	// Peer is true for the libraries grpctrace is compared with.
	Peer bool
	// OTel is true for the contenders that record through the
	// OpenTelemetry API (the tracer's Provider and Propagator), false for
	// those that record through OpenTracing (its OT).
	OTel bool
	// options returns the server and client options that instrument both
	// sides with t; nil for the base.
	options func(t *Tracer) ([]grpc.ServerOption, []grpc.DialOption)
}

// Contenders lists the base first, then grpctrace's interceptors and stats
// handlers recording through OpenTracing, then the same through
// OpenTelemetry, then the peers.
var Contenders = []Contender{
	{Name: Base},
	{Name: GRPCTrace, options: grpctraceOptions},
	{Name: GRPCTraceStats, options: grpctraceStatsOptions},
	{Name: GRPCTraceOTel, OTel: true, options: grpctraceOTelOptions},
	{Name: GRPCTraceOTelStats, OTel: true, options: grpctraceOTelStatsOptions},
	{Name: OTGRPC, Peer: true, options: otgrpcOptions},
	{Name: Middleware, Peer: true, options: middlewareOptions},
	{Name: OTelGRPC, Peer: true, OTel: true, options: otelgrpcOptions},
}

// Peers returns the names of the peer contenders.
func Peers() []string {
	var names []string
	for _, c := range Contenders {
		if c.Peer {
			names = append(names, c.Name)
		}
	}
	return names
}

// OTelPeers returns the names of the peer contenders that record through
// the OpenTelemetry API, those grpctrace's OpenTelemetry path is compared
// with.
func OTelPeers() []string {
	var names []string
	for _, c := range Contenders {
		if c.Peer && c.OTel {
			names = append(names, c.Name)
		}
	}
	return names
}

// IsOTel reports whether the named contender records through the
// OpenTelemetry API.
func IsOTel(contender string) bool {
	for _, c := range Contenders {
		if c.Name == contender {
			return c.OTel
		}
	}
	return false
}

func grpctraceOptions(t *Tracer) ([]grpc.ServerOption, []grpc.DialOption) {
	opt := grpctrace.WithTracer(t.OT)
	return []grpc.ServerOption{
			grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(opt)),
			grpc.ChainStreamInterceptor(grpctrace.StreamServerInterceptor(opt)),
		}, []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(opt)),
			grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(opt)),
		}
}

func grpctraceStatsOptions(t *Tracer) ([]grpc.ServerOption, []grpc.DialOption) {
	opt := grpctrace.WithTracer(t.OT)
	return []grpc.ServerOption{grpc.StatsHandler(grpctrace.NewServerHandler(opt))},
		[]grpc.DialOption{grpc.WithStatsHandler(grpctrace.NewClientHandler(opt))}
}

// grpctraceOTelOptions installs grpctrace's interceptors on its
// OpenTelemetry path, with the provider and propagator otelgrpc gets.
func grpctraceOTelOptions(t *Tracer) ([]grpc.ServerOption, []grpc.DialOption) {
	opts := []grpctrace.Option{grpctrace.WithTracerProvider(t.Provider), grpctrace.WithPropagators(t.Propagator)}
	return []grpc.ServerOption{
			grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(opts...)),
			grpc.ChainStreamInterceptor(grpctrace.StreamServerInterceptor(opts...)),
		}, []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(opts...)),
			grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(opts...)),
		}
}

// grpctraceOTelStatsOptions installs grpctrace's stats handlers on its
// OpenTelemetry path, with the provider and propagator otelgrpc gets.
func grpctraceOTelStatsOptions(t *Tracer) ([]grpc.ServerOption, []grpc.DialOption) {
	opts := []grpctrace.Option{grpctrace.WithTracerProvider(t.Provider), grpctrace.WithPropagators(t.Propagator)}
	return []grpc.ServerOption{grpc.StatsHandler(grpctrace.NewServerHandler(opts...))},
		[]grpc.DialOption{grpc.WithStatsHandler(grpctrace.NewClientHandler(opts...))}
}

func otgrpcOptions(t *Tracer) ([]grpc.ServerOption, []grpc.DialOption) {
	return []grpc.ServerOption{
			grpc.ChainUnaryInterceptor(otgrpc.OpenTracingServerInterceptor(t.OT)),
			grpc.ChainStreamInterceptor(otgrpc.OpenTracingStreamServerInterceptor(t.OT)),
		}, []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(otgrpc.OpenTracingClientInterceptor(t.OT)),
			grpc.WithChainStreamInterceptor(otgrpc.OpenTracingStreamClientInterceptor(t.OT)),
		}
}

func middlewareOptions(t *Tracer) ([]grpc.ServerOption, []grpc.DialOption) {
	opt := grpcopentracing.WithTracer(t.OT)
	return []grpc.ServerOption{
			grpc.ChainUnaryInterceptor(grpcopentracing.UnaryServerInterceptor(opt)),
			grpc.ChainStreamInterceptor(grpcopentracing.StreamServerInterceptor(opt)),
		}, []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(grpcopentracing.UnaryClientInterceptor(opt)),
			grpc.WithChainStreamInterceptor(grpcopentracing.StreamClientInterceptor(opt)),
		}
}

// otelgrpcOptions installs otelgrpc's stats handlers with the tracer's
// provider and propagator. Metrics are off (a no-op meter provider): the
// comparison is of tracing.
func otelgrpcOptions(t *Tracer) ([]grpc.ServerOption, []grpc.DialOption) {
	opts := []otelgrpc.Option{
		otelgrpc.WithTracerProvider(t.Provider),
		otelgrpc.WithPropagators(t.Propagator),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(opts...))},
		[]grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(opts...))}
}

// Conn is a client connected over bufconn to a test service server, both
// instrumented by one contender with one tracer.
type Conn struct {
	Client testpb.TestServiceClient
	conn   *grpc.ClientConn
	srv    *grpc.Server
	served chan struct{}
}

// Connect starts a server and a client instrumented by c with t (t is
// ignored for the base).
func Connect(c Contender, t *Tracer) (*Conn, error) {
	var srvOpts []grpc.ServerOption
	dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if c.options != nil {
		s, d := c.options(t)
		srvOpts = append(srvOpts, s...)
		dialOpts = append(dialOpts, d...)
	}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(srvOpts...)
	testpb.RegisterTestServiceServer(srv, testpb.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	dialOpts = append(dialOpts, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return lis.DialContext(ctx)
	}))
	conn, err := grpc.NewClient("passthrough:///bufnet", dialOpts...)
	if err != nil {
		srv.Stop()
		<-served
		return nil, err
	}
	return &Conn{Client: testpb.NewTestServiceClient(conn), conn: conn, srv: srv, served: served}, nil
}

// Close closes the client and stops the server.
func (c *Conn) Close() {
	c.conn.Close()
	c.srv.Stop()
	<-c.served
}

// Request is what every case sends.
var Request = &testpb.Request{Value: "ping"}

// Unary is the unary case: one round trip.
func (c *Conn) Unary(ctx context.Context) error {
	_, err := c.Client.Unary(ctx, Request)
	return err
}

// PingPong is the per-message case: one request and one response on a
// bidi stream that stays open.
func PingPong(s testpb.TestService_BidiClient, resp *testpb.Response) error {
	if err := s.Send(Request); err != nil {
		return err
	}
	return s.RecvMsg(resp)
}

// CloseStream half-closes a bidi stream and reads its end.
func CloseStream(s testpb.TestService_BidiClient, resp *testpb.Response) error {
	if err := s.CloseSend(); err != nil {
		return err
	}
	if err := s.RecvMsg(resp); err != io.EOF {
		if err == nil {
			err = errors.New("stream did not end after CloseSend")
		}
		return err
	}
	return nil
}

// BidiStream is the stream case: open a bidi stream, one message each way,
// close it.
func (c *Conn) BidiStream(ctx context.Context, resp *testpb.Response) error {
	s, err := c.Client.Bidi(ctx)
	if err != nil {
		return err
	}
	if err := PingPong(s, resp); err != nil {
		return err
	}
	return CloseStream(s, resp)
}

// Case names: the benchmark functions, without their Benchmark prefix.
const (
	CaseUnary       = "Unary"       // one unary round trip
	CaseBidiMessage = "BidiMessage" // one message each way on an open bidi stream
	CaseBidiStream  = "BidiStream"  // open a bidi stream, one message each way, close
	CaseFloor       = "Floor"       // the tracer alone, see Floor
)

// RPCCases lists the cases over gRPC.
var RPCCases = []string{CaseUnary, CaseBidiMessage, CaseBidiStream}

// NoTracer is the tracer name of the base, which has none.
const NoTracer = "none"

// Benchmark names one benchmark: Case/impl=Impl/tracer=Tracer.
type Benchmark struct {
	Case, Impl, Tracer string
}

// Name is the benchmark's name as go test prints it, without the
// Benchmark prefix and the GOMAXPROCS suffix.
func (b Benchmark) Name() string {
	return b.Case + "/impl=" + b.Impl + "/tracer=" + b.Tracer
}

// Pattern is the -test.bench argument that runs this benchmark alone.
func (b Benchmark) Pattern() string {
	return "^Benchmark" + b.Case + "$/^impl=" + b.Impl + "$/^tracer=" + b.Tracer + "$"
}

// All lists every benchmark: the base and every contender with every
// tracer in each case over gRPC, then every floor with every tracer.
func All() []Benchmark {
	var all []Benchmark
	for _, cs := range RPCCases {
		for _, c := range Contenders {
			if c.options == nil {
				all = append(all, Benchmark{cs, c.Name, NoTracer})
				continue
			}
			for _, t := range TracerNames {
				all = append(all, Benchmark{cs, c.Name, t})
			}
		}
	}
	for _, f := range FloorNames {
		for _, t := range TracerNames {
			all = append(all, Benchmark{CaseFloor, f, t})
		}
	}
	return all
}

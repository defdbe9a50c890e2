package fleet

// Servers and clients of testpb.TestService over bufconn, each end traced
// by one "side": grpctrace's interceptors, grpctrace's stats handlers,
// otgrpc's interceptors or go-grpc-middleware v1's interceptors, with any
// OpenTracing tracer. The handlers record the span and the baggage they
// find in their context, and tracedServer.call waits until the server has
// finished the RPC, so that a test reads finished spans without sleeping.
//
// Entry points (kept stable, other files of the package use them):
//
//	startTracedServer(t, side, tracer, opts...) *tracedServer
//	(*tracedServer).dial(t, side, tracer, opts...) testpb.TestServiceClient
//	(*tracedServer).dialConn(t, side, tracer, opts...) *grpc.ClientConn
//	(*tracedServer).call(ctx, client, kind, req) (handlerRecord, error)
//	serverSideOptions(side, tracer, opts...) / clientSideOptions(side, tracer, opts...)

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
	grpcopentracing "github.com/grpc-ecosystem/go-grpc-middleware/tracing/opentracing"
	otgrpc "github.com/opentracing-contrib/go-grpc"
	"github.com/opentracing/opentracing-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// side is the tracing instrumentation of one end of an RPC.
type side string

const (
	// sideGrpctrace: grpctrace's unary and stream interceptors.
	sideGrpctrace side = "grpctrace"
	// sideGrpctraceStats: grpctrace's stats handler alone
	// (NewServerHandler / NewClientHandler, no interceptor).
	sideGrpctraceStats side = "grpctrace-stats"
	// sideOtgrpc: opentracing-contrib/go-grpc v0.1.4's interceptors.
	sideOtgrpc side = "otgrpc"
	// sideMiddleware: go-grpc-middleware v1.4.0's tracing/opentracing
	// interceptors.
	sideMiddleware side = "middleware"
)

// allSides lists every side, grpctrace's first.
var allSides = []side{sideGrpctrace, sideGrpctraceStats, sideOtgrpc, sideMiddleware}

// isGrpctrace reports whether the side is one of grpctrace's.
func (s side) isGrpctrace() bool { return s == sideGrpctrace || s == sideGrpctraceStats }

// serverSideOptions returns the server options that trace with the side and
// tracer. grpctrace options apply to grpctrace's sides only; giving them for
// a peer's side is an error, so that no test believes it configured a peer.
func serverSideOptions(s side, tracer opentracing.Tracer, opts ...grpctrace.Option) ([]grpc.ServerOption, error) {
	if !s.isGrpctrace() && len(opts) > 0 {
		return nil, fmt.Errorf("grpctrace options given for side %s", s)
	}
	gopts := append([]grpctrace.Option{grpctrace.WithTracer(tracer)}, opts...)
	switch s {
	case sideGrpctrace:
		return []grpc.ServerOption{
			grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(gopts...)),
			grpc.ChainStreamInterceptor(grpctrace.StreamServerInterceptor(gopts...)),
		}, nil
	case sideGrpctraceStats:
		return []grpc.ServerOption{grpc.StatsHandler(grpctrace.NewServerHandler(gopts...))}, nil
	case sideOtgrpc:
		return []grpc.ServerOption{
			grpc.ChainUnaryInterceptor(otgrpc.OpenTracingServerInterceptor(tracer)),
			grpc.ChainStreamInterceptor(otgrpc.OpenTracingStreamServerInterceptor(tracer)),
		}, nil
	case sideMiddleware:
		return []grpc.ServerOption{
			grpc.ChainUnaryInterceptor(grpcopentracing.UnaryServerInterceptor(grpcopentracing.WithTracer(tracer))),
			grpc.ChainStreamInterceptor(grpcopentracing.StreamServerInterceptor(grpcopentracing.WithTracer(tracer))),
		}, nil
	}
	return nil, fmt.Errorf("unknown side %q", s)
}

// clientSideOptions returns the dial options that trace with the side and
// tracer; grpctrace options as for serverSideOptions.
func clientSideOptions(s side, tracer opentracing.Tracer, opts ...grpctrace.Option) ([]grpc.DialOption, error) {
	if !s.isGrpctrace() && len(opts) > 0 {
		return nil, fmt.Errorf("grpctrace options given for side %s", s)
	}
	gopts := append([]grpctrace.Option{grpctrace.WithTracer(tracer)}, opts...)
	switch s {
	case sideGrpctrace:
		return []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(gopts...)),
			grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(gopts...)),
		}, nil
	case sideGrpctraceStats:
		// The attempt span alone: it is the span whose context the
		// server receives.
		return []grpc.DialOption{grpc.WithStatsHandler(grpctrace.NewClientHandler(gopts...))}, nil
	case sideOtgrpc:
		return []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(otgrpc.OpenTracingClientInterceptor(tracer)),
			grpc.WithChainStreamInterceptor(otgrpc.OpenTracingStreamClientInterceptor(tracer)),
		}, nil
	case sideMiddleware:
		return []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(grpcopentracing.UnaryClientInterceptor(grpcopentracing.WithTracer(tracer))),
			grpc.WithChainStreamInterceptor(grpcopentracing.StreamClientInterceptor(grpcopentracing.WithTracer(tracer))),
		}, nil
	}
	return nil, fmt.Errorf("unknown side %q", s)
}

// handlerRecord is what a handler of tracedServer found in its context.
type handlerRecord struct {
	// Method is the RPC's full method.
	Method string
	// Span is the context of the handler's span
	// (opentracing.SpanFromContext), nil when there was none.
	Span opentracing.SpanContext
	// Baggage maps each key ForeachBaggageItem gave to what
	// Span.BaggageItem returns for it: the items as the handler's code
	// reads them, in the key case the tracer delivered.
	Baggage map[string]string
	// Metadata is the RPC's incoming metadata, as the handler got it.
	Metadata metadata.MD
}

// rpcIDKey is the metadata key under which call tags each RPC, so that the
// server files what its handler found under the RPC's identity; the
// handler echoes it in a trailer to tell the client it ran.
const rpcIDKey = "fleet-rpc-id"

// tracedServer is a TestService served over bufconn with one side's
// tracing. Its handlers behave as testpb.Server's (the request's
// instructions apply) after recording what they found.
type tracedServer struct {
	Side side
	lis  *bufconn.Listener

	mu   sync.Mutex
	rpcs map[string]*rpcEntry // by rpcIDKey, registered by call
}

// rpcEntry is one RPC made by call.
type rpcEntry struct {
	rec  handlerRecord
	done chan struct{} // closed once gRPC ended the RPC on the server
}

var rpcIDs atomic.Uint64

// startTracedServer serves TestService on an in-memory listener, traced by
// the side with tracer (and, for grpctrace's sides, opts). The server stops
// when the test ends.
func startTracedServer(t testing.TB, s side, tracer opentracing.Tracer, opts ...grpctrace.Option) *tracedServer {
	t.Helper()
	sopts, err := serverSideOptions(s, tracer, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ts := &tracedServer{Side: s, lis: bufconn.Listen(1 << 20), rpcs: map[string]*rpcEntry{}}
	// The RPC's end is observed by a stats handler given after the
	// tracing: gRPC calls stats handlers in order, and reports stats.End
	// after the handler and the interceptors returned and the status was
	// written, so by then every side has finished its server span
	// (grpctrace's stats handler at this very event, just before).
	sopts = append(sopts, grpc.StatsHandler(endWatcher{ts}))
	srv := grpc.NewServer(sopts...)
	testpb.RegisterTestServiceServer(srv, &recordingService{ts: ts, impl: testpb.NewServer()})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ts.lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return ts
}

// dialConn connects to the server through a client traced by the side with
// tracer (and, for grpctrace's sides, opts); the connection is closed when
// the test ends.
func (ts *tracedServer) dialConn(t testing.TB, s side, tracer opentracing.Tracer, opts ...grpctrace.Option) *grpc.ClientConn {
	t.Helper()
	dopts, err := clientSideOptions(s, tracer, opts...)
	if err != nil {
		t.Fatal(err)
	}
	dopts = append(dopts,
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ts.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	conn, err := grpc.NewClient("passthrough:///bufnet", dopts...)
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// dial is dialConn's connection as a TestService client.
func (ts *tracedServer) dial(t testing.TB, s side, tracer opentracing.Tracer, opts ...grpctrace.Option) testpb.TestServiceClient {
	t.Helper()
	return testpb.NewTestServiceClient(ts.dialConn(t, s, tracer, opts...))
}

// rpcKind is the shape of an RPC call makes.
type rpcKind string

const (
	kindUnary        rpcKind = "unary"
	kindServerStream rpcKind = "server-stream"
	kindClientStream rpcKind = "client-stream"
	kindBidi         rpcKind = "bidi"
)

// allKinds lists every RPC shape.
var allKinds = []rpcKind{kindUnary, kindServerStream, kindClientStream, kindBidi}

// serverEndTimeout bounds the wait for the server's end of an RPC whose
// handler ran; it is a watchdog for a broken test, never reached otherwise.
const serverEndTimeout = 10 * time.Second

// call makes one RPC of the kind through c (a client of ts) with ctx and
// req (nil: an empty request; streams send it once, then half-close) and
// reads it to its end. It returns what the handler found and the RPC's
// error. When the handler ran, call returns only after gRPC ended the RPC
// on the server, so both sides' spans are finished: the client's span ends
// when the RPC returns its status to the caller. When the handler did not
// run (the RPC failed before), the record is empty.
func (ts *tracedServer) call(ctx context.Context, c testpb.TestServiceClient, kind rpcKind, req *testpb.Request) (handlerRecord, error) {
	if req == nil {
		req = &testpb.Request{}
	}
	id := strconv.FormatUint(rpcIDs.Add(1), 10)
	e := &rpcEntry{done: make(chan struct{})}
	ts.mu.Lock()
	ts.rpcs[id] = e
	ts.mu.Unlock()
	defer func() {
		ts.mu.Lock()
		delete(ts.rpcs, id)
		ts.mu.Unlock()
	}()

	trailer, err := invoke(metadata.AppendToOutgoingContext(ctx, rpcIDKey, id), c, kind, req)
	if ids := trailer.Get(rpcIDKey); len(ids) == 0 || ids[0] != id {
		return handlerRecord{}, err
	}
	timer := time.NewTimer(serverEndTimeout)
	defer timer.Stop()
	select {
	case <-e.done:
	case <-timer.C:
		return handlerRecord{}, fmt.Errorf("server did not end RPC %s within %v (and: %v)", id, serverEndTimeout, err)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return e.rec, err
}

// invoke makes the RPC and returns its trailer and error.
func invoke(ctx context.Context, c testpb.TestServiceClient, kind rpcKind, req *testpb.Request) (metadata.MD, error) {
	var trailer metadata.MD
	switch kind {
	case kindUnary:
		_, err := c.Unary(ctx, req, grpc.Trailer(&trailer))
		return trailer, err
	case kindServerStream:
		st, err := c.ServerStream(ctx, req)
		if err != nil {
			return nil, err
		}
		err = recvAll(st.Recv)
		return st.Trailer(), err
	case kindClientStream:
		st, err := c.ClientStream(ctx)
		if err != nil {
			return nil, err
		}
		// io.EOF from Send: the server ended the RPC; CloseAndRecv
		// has its status.
		if err := st.Send(req); err != nil && err != io.EOF {
			return st.Trailer(), err
		}
		_, err = st.CloseAndRecv()
		return st.Trailer(), err
	case kindBidi:
		st, err := c.Bidi(ctx)
		if err != nil {
			return nil, err
		}
		if err := st.Send(req); err != nil && err != io.EOF {
			return st.Trailer(), err
		}
		if err := st.CloseSend(); err != nil {
			return st.Trailer(), err
		}
		err = recvAll(st.Recv)
		return st.Trailer(), err
	}
	return nil, fmt.Errorf("unknown RPC kind %q", kind)
}

// recvAll receives until the stream ends; nil when it ends with OK.
func recvAll(recv func() (*testpb.Response, error)) error {
	for {
		if _, err := recv(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// entry returns the RPC that call registered for the incoming context,
// nil for an RPC made otherwise.
func (ts *tracedServer) entry(ctx context.Context) (string, *rpcEntry) {
	ids := metadata.ValueFromIncomingContext(ctx, rpcIDKey)
	if len(ids) == 0 {
		return "", nil
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ids[0], ts.rpcs[ids[0]]
}

// record files what the handler finds in ctx and returns the trailer that
// tells call the handler ran.
func (ts *tracedServer) record(ctx context.Context, method string) metadata.MD {
	id, e := ts.entry(ctx)
	if e == nil {
		return nil
	}
	rec := handlerRecord{Method: method}
	rec.Metadata, _ = metadata.FromIncomingContext(ctx)
	if span := opentracing.SpanFromContext(ctx); span != nil {
		rec.Span = span.Context()
		// Keys from ForeachBaggageItem, values through BaggageItem, as
		// handler code reads a key it knows: a tracer that changed a
		// key's case shows it here.
		rec.Span.ForeachBaggageItem(func(k, _ string) bool {
			if rec.Baggage == nil {
				rec.Baggage = map[string]string{}
			}
			rec.Baggage[k] = span.BaggageItem(k)
			return true
		})
	}
	ts.mu.Lock()
	e.rec = rec
	ts.mu.Unlock()
	return metadata.Pairs(rpcIDKey, id)
}

// recordingService records, then serves as testpb.Server does.
type recordingService struct {
	testpb.UnimplementedTestServiceServer
	ts   *tracedServer
	impl *testpb.Server
}

func (r *recordingService) Unary(ctx context.Context, req *testpb.Request) (*testpb.Response, error) {
	if md := r.ts.record(ctx, testpb.TestService_Unary_FullMethodName); md != nil {
		_ = grpc.SetTrailer(ctx, md)
	}
	return r.impl.Unary(ctx, req)
}

func (r *recordingService) ServerStream(req *testpb.Request, stream testpb.TestService_ServerStreamServer) error {
	stream.SetTrailer(r.ts.record(stream.Context(), testpb.TestService_ServerStream_FullMethodName))
	return r.impl.ServerStream(req, stream)
}

func (r *recordingService) ClientStream(stream testpb.TestService_ClientStreamServer) error {
	stream.SetTrailer(r.ts.record(stream.Context(), testpb.TestService_ClientStream_FullMethodName))
	return r.impl.ClientStream(stream)
}

func (r *recordingService) Bidi(stream testpb.TestService_BidiServer) error {
	stream.SetTrailer(r.ts.record(stream.Context(), testpb.TestService_Bidi_FullMethodName))
	return r.impl.Bidi(stream)
}

// endWatcher is the server's last stats handler: it closes the done
// channel of a registered RPC when gRPC reports the RPC's end.
type endWatcher struct{ ts *tracedServer }

type endWatcherKey struct{}

func (w endWatcher) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	if _, e := w.ts.entry(ctx); e != nil {
		return context.WithValue(ctx, endWatcherKey{}, e)
	}
	return ctx
}

func (endWatcher) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.End); !ok {
		return
	}
	if e, ok := ctx.Value(endWatcherKey{}).(*rpcEntry); ok {
		close(e.done)
	}
}

func (endWatcher) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (endWatcher) HandleConn(context.Context, stats.ConnStats) {}

// TestTracedServerCall checks the harness itself: call finds the record of
// each RPC shape, returns the RPC's own error, and does not wait for a
// server that never saw the RPC.
func TestTracedServerCall(t *testing.T) {
	ft := newMockTracer(t)
	srv := startTracedServer(t, sideGrpctrace, ft.Tracer)
	c := srv.dial(t, sideGrpctrace, ft.Tracer)
	methods := map[rpcKind]string{
		kindUnary:        testpb.TestService_Unary_FullMethodName,
		kindServerStream: testpb.TestService_ServerStream_FullMethodName,
		kindClientStream: testpb.TestService_ClientStream_FullMethodName,
		kindBidi:         testpb.TestService_Bidi_FullMethodName,
	}
	for _, kind := range allKinds {
		t.Run(string(kind), func(t *testing.T) {
			rec, err := srv.call(t.Context(), c, kind, nil)
			if err != nil || rec.Method != methods[kind] || rec.Span == nil {
				t.Errorf("call = %+v, %v; want the handler's record of %s with its span, nil", rec, err, methods[kind])
			}
			rec, err = srv.call(t.Context(), c, kind, &testpb.Request{FailCode: int32(codes.NotFound)})
			if status.Code(err) != codes.NotFound || rec.Method != methods[kind] {
				t.Errorf("failing call = %+v, %v; want the handler's record, NotFound", rec, err)
			}
		})
	}
	t.Run("never served", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		rec, err := srv.call(ctx, c, kindUnary, nil)
		if status.Code(err) != codes.Canceled || rec.Method != "" {
			t.Errorf("call under a cancelled context = %+v, %v; want no record, Canceled", rec, err)
		}
	})
}

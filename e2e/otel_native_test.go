package e2e

import (
	"cmp"
	"context"
	"io"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// newOTLPProvider returns an OpenTelemetry SDK tracer provider for service
// that samples everything and exports in batches over OTLP/gRPC, in plain
// text, to endpoint. Shut it down to flush.
func newOTLPProvider(t *testing.T, endpoint, service string) *sdktrace.TracerProvider {
	t.Helper()
	ctx := context.Background()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithAttributes(attribute.String("service.name", service)))
	if err != nil {
		t.Fatal(err)
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(100*time.Millisecond)),
	)
}

// The baggage the native test's client puts in its context, and the tag
// with which the server's handler records what it received.
const (
	nativeBaggageKey   = "e2e.user"
	nativeBaggageValue = "grace"
	nativeBaggageTag   = "e2e.baggage.user"
)

// nativeCall is one call the native test makes and how Jaeger must show
// it.
type nativeCall struct {
	method string
	fail   codes.Code // what the handler is asked to fail with; OK: succeed
	code   string     // rpc.response.status_code
	// clientErr and serverErr: whether each side's span has status Error
	// (the default classifier: the client flags every code but OK, the
	// server only the codes that blame it).
	clientErr, serverErr bool
}

var nativeCalls = []nativeCall{
	{"Unary", codes.OK, "OK", false, false},
	{"ServerStream", codes.OK, "OK", false, false},
	{"Unary", codes.NotFound, "NOT_FOUND", true, false},
	{"Unary", codes.Internal, "INTERNAL", true, true},
}

// 4. grpctrace's native OpenTelemetry path: WithTracerProvider with an SDK
// tracer provider on each side (two services), exporting over OTLP/gRPC,
// with the W3C trace context and baggage propagators, client and server
// over TCP on 127.0.0.1, under one root span.
func TestOpenTelemetryNativeOTLP(t *testing.T) {
	e := needJaeger(t)
	clientService := "grpctrace-e2e-native-client-" + runID
	serverService := "grpctrace-e2e-native-server-" + runID
	clientTP := newOTLPProvider(t, e.otlp, clientService)
	serverTP := newOTLPProvider(t, e.otlp, serverService)
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	opts := func(tp trace.TracerProvider) []grpctrace.Option {
		return []grpctrace.Option{grpctrace.WithTracerProvider(tp), grpctrace.WithPropagators(prop), grpctrace.WithMessageEvents()}
	}

	// The handler's view, after grpctrace's interceptor: the caller's
	// baggage in its context, recorded on its span.
	recordBaggage := func(ctx context.Context) {
		if v := baggage.FromContext(ctx).Member(nativeBaggageKey).Value(); v != "" {
			trace.SpanFromContext(ctx).SetAttributes(attribute.String(nativeBaggageTag, v))
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, portText, _ := net.SplitHostPort(lis.Addr().String())
	serverPort, _ := strconv.Atoi(portText)
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(grpctrace.UnaryServerInterceptor(opts(serverTP)...),
			func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				recordBaggage(ctx)
				return h(ctx, req)
			}),
		grpc.ChainStreamInterceptor(grpctrace.StreamServerInterceptor(opts(serverTP)...),
			func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				recordBaggage(ss.Context())
				return h(srv, ss)
			}),
	)
	testpb.RegisterTestServiceServer(srv, testpb.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(grpctrace.UnaryClientInterceptor(opts(clientTP)...)),
		grpc.WithChainStreamInterceptor(grpctrace.StreamClientInterceptor(opts(clientTP)...)),
	)
	if err != nil {
		t.Fatal(err)
	}

	member, err := baggage.NewMember(nativeBaggageKey, nativeBaggageValue)
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(member)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(baggage.ContextWithBaggage(context.Background(), bag), 30*time.Second)
	defer cancel()
	ctx, root := clientTP.Tracer("github.com/c2e00e20/grpctrace/e2e").Start(ctx, "native")
	client := testpb.NewTestServiceClient(conn)
	var callErr error
	for i, c := range nativeCalls {
		req := &testpb.Request{Value: "v"}
		if c.fail != codes.OK {
			req.FailCode, req.FailMessage = int32(c.fail), "asked to fail"
		}
		var err error
		switch c.method {
		case "Unary":
			_, err = client.Unary(ctx, req)
		case "ServerStream":
			req.ResponseCount = 3
			var s testpb.TestService_ServerStreamClient
			if s, err = client.ServerStream(ctx, req); err == nil {
				for err == nil {
					_, err = s.Recv()
				}
			}
		}
		if err == io.EOF {
			err = nil
		}
		if status.Code(err) != c.fail {
			callErr = err
			t.Errorf("call %d (%s): %v, want %v", i, c.method, err, c.fail)
		}
	}
	root.End()
	conn.Close()
	srv.GracefulStop()
	<-served
	shutdown, cancelShutdown := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelShutdown()
	for name, tp := range map[string]*sdktrace.TracerProvider{clientService: clientTP, serverService: serverTP} {
		if err := tp.Shutdown(shutdown); err != nil {
			t.Errorf("flushing %s: %v", name, err)
		}
	}
	if callErr != nil {
		t.FailNow()
	}
	id := root.SpanContext().TraceID().String()

	tr := waitTrace(t, e, id, 1+2*len(nativeCalls))
	checkNativeTrace(t, tr, root.SpanContext().SpanID().String(), clientService, serverService, serverPort)
	checkSearch(t, e, id, clientService, serverService)
}

// checkNativeTrace asserts the shape of the native test's trace as Jaeger
// returns it: the root span, each call's client span its child, each
// call's server span the child of its client span, named, kinded and
// tagged as grpctrace's OpenTelemetry path writes them.
func checkNativeTrace(t *testing.T, tr jTrace, rootID, clientService, serverService string, serverPort int) {
	t.Helper()
	if len(tr.Spans) != 1+2*len(nativeCalls) {
		t.Fatalf("trace %s has %d spans, want %d: %+v", tr.TraceID, len(tr.Spans), 1+2*len(nativeCalls), tr.Spans)
	}
	service := func(s jSpan) string { return tr.Processes[s.ProcessID].ServiceName }
	kind := func(s jSpan) any { v, _ := tag(s.Tags, "span.kind"); return v }
	byID := map[string]jSpan{}
	var clients, servers []jSpan
	for _, s := range tr.Spans {
		byID[s.SpanID] = s
		switch kind(s) {
		case "client":
			clients = append(clients, s)
		case "server":
			servers = append(servers, s)
		}
	}
	root, ok := byID[rootID]
	if !ok || root.OperationName != "native" || len(root.References) != 0 || service(root) != clientService {
		t.Fatalf("root span %s: %+v, want the %q span of %s with no parent", rootID, root, "native", clientService)
	}
	if len(clients) != len(nativeCalls) || len(servers) != len(nativeCalls) {
		t.Fatalf("%d client and %d server spans, want %d of each", len(clients), len(servers), len(nativeCalls))
	}
	if k := kind(root); k != "internal" && k != nil {
		t.Errorf("root span kind %v, want internal or none", k)
	}
	if v := processTag(tr, root, "telemetry.sdk.name"); v != "opentelemetry" {
		t.Errorf("process tag telemetry.sdk.name = %v, want opentelemetry (the OTel SDK)", v)
	}
	parentOf := func(s jSpan) string {
		if len(s.References) != 1 || s.References[0].RefType != "CHILD_OF" || s.References[0].TraceID != tr.TraceID {
			t.Errorf("span %s %s: references %+v, want one CHILD_OF in the trace", s.SpanID, s.OperationName, s.References)
			return ""
		}
		return s.References[0].SpanID
	}
	serverOf := map[string]jSpan{}
	for _, s := range servers {
		p := parentOf(s)
		if c, ok := byID[p]; !ok || kind(c) != "client" {
			t.Errorf("server span %s %s: parent %s is not a client span", s.SpanID, s.OperationName, p)
		}
		if _, dup := serverOf[p]; dup {
			t.Errorf("client span %s has two server children", p)
		}
		serverOf[p] = s
	}
	slices.SortFunc(clients, func(a, b jSpan) int { return cmp.Compare(a.StartTime, b.StartTime) })
	for i, c := range clients {
		w := nativeCalls[i]
		name := "grpctrace.testpb.TestService/" + w.method
		if p := parentOf(c); p != rootID {
			t.Errorf("call %d client span: parent %s, want the root %s", i, p, rootID)
		}
		s, ok := serverOf[c.SpanID]
		if !ok {
			t.Errorf("call %d (%s): client span %s has no server child", i, w.method, c.SpanID)
			continue
		}
		if c.OperationName != name || s.OperationName != name {
			t.Errorf("call %d: operations %q and %q, want %q", i, c.OperationName, s.OperationName, name)
		}
		if sc, ss := service(c), service(s); sc != clientService || ss != serverService {
			t.Errorf("call %d: services %q and %q, want %q and %q", i, sc, ss, clientService, serverService)
		}
		for _, side := range []struct {
			name    string
			span    jSpan
			isError bool
		}{{"client", c, w.clientErr}, {"server", s, w.serverErr}} {
			for key, want := range map[string]any{
				"rpc.method":               name,
				"rpc.system.name":          "grpc",
				"rpc.response.status_code": w.code,
				"server.address":           "127.0.0.1",
				"server.port":              float64(serverPort),
				"otel.scope.name":          "github.com/c2e00e20/grpctrace",
			} {
				if got, _ := tag(side.span.Tags, key); got != want {
					t.Errorf("call %d (%s) %s: tag %s = %v (%T), want %v (%T)", i, w.method, side.name, key, got, got, want, want)
				}
			}
			// Jaeger shows an OpenTelemetry status Error as
			// otel.status_code ERROR with the description, and error;
			// Unset as neither.
			code, _ := tag(side.span.Tags, "otel.status_code")
			desc, _ := tag(side.span.Tags, "otel.status_description")
			errTag, _ := tag(side.span.Tags, "error")
			if side.isError {
				if code != "ERROR" || desc != "asked to fail" || errTag != true {
					t.Errorf("call %d (%s, %s) %s: otel.status_code %v, otel.status_description %v, error %v; want ERROR, %q, true", i, w.method, w.code, side.name, code, desc, errTag, "asked to fail")
				}
			} else if code != nil || errTag != nil {
				t.Errorf("call %d (%s, %s) %s: otel.status_code %v, error %v; want neither (status Unset)", i, w.method, w.code, side.name, code, errTag)
			}
			if !hasLog(side.span, map[string]string{"event": "message"}) {
				t.Errorf("call %d (%s) %s: no message event in logs %+v", i, w.method, side.name, side.span.Logs)
			}
		}
		if got, _ := tag(s.Tags, nativeBaggageTag); got != nativeBaggageValue {
			t.Errorf("call %d (%s) server: tag %s = %v, want the client's baggage %q", i, w.method, nativeBaggageTag, got, nativeBaggageValue)
		}
	}
}

package grpctrace_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
)

// Full methods the filter tests ask about.
const (
	healthCheck   = "/grpc.health.v1.Health/Check"
	healthWatch   = "/grpc.health.v1.Health/Watch"
	healthList    = "/grpc.health.v1.Health/List"
	reflectV1     = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	reflectV1a    = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
	otherService  = "/pkg.Other/Unary"
	lookalikeHlth = "/grpc.health.v1.HealthX/Check" // another service whose name starts like Health's
)

// malformed are names no well-behaved client sends; the filters must not
// panic on them, and only MethodName (exact comparison) may match them.
var malformed = []string{
	"",
	"/",
	"//",
	"grpc.health.v1.Health/Check", // no leading slash
	"/grpc.health.v1.Health",      // no method
	"/" + service,
	service + "/Unary",
	"/" + service + "/",
	"/" + service + "/Unary/extra",
	"/grpc.reflection.v1.ServerReflection",
}

func TestFilters(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		filter  grpctrace.Filter
		matches []string // methods the filter is true for; false for all others
	}{
		{"HealthCheck", grpctrace.HealthCheck(), []string{healthCheck, healthWatch, healthList}},
		{"Reflection", grpctrace.Reflection(), []string{reflectV1, reflectV1a}},
		{"ServiceName", grpctrace.ServiceName(service), []string{unaryMethod, serverStreamMethod}},
		{"ServiceName several", grpctrace.ServiceName("grpc.health.v1.Health", "pkg.Other"),
			[]string{healthCheck, healthWatch, healthList, otherService}},
		{"ServiceName none", grpctrace.ServiceName(), nil},
		{"ServiceName empty", grpctrace.ServiceName(""), nil},
		{"MethodName", grpctrace.MethodName(unaryMethod, healthWatch), []string{unaryMethod, healthWatch}},
		{"MethodName none", grpctrace.MethodName(), nil},
		{"MethodName bare method", grpctrace.MethodName("Unary"), nil},
		{"MethodName malformed", grpctrace.MethodName("/" + service), []string{"/" + service}},
	}
	all := append([]string{healthCheck, healthWatch, healthList, reflectV1, reflectV1a,
		unaryMethod, serverStreamMethod, otherService, lookalikeHlth}, malformed...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, m := range all {
				want := slices.Contains(tt.matches, m)
				if got := tt.filter(ctx, m); got != want {
					t.Errorf("filter(%q) = %v, want %v", m, got, want)
				}
			}
		})
	}
}

func TestFilterComposition(t *testing.T) {
	ctx := context.Background()
	yes := func(context.Context, string) bool { return true }
	no := func(context.Context, string) bool { return false }
	var calls []string
	spy := func(name string, v bool) grpctrace.Filter {
		return func(context.Context, string) bool { calls = append(calls, name); return v }
	}
	tests := []struct {
		name   string
		filter grpctrace.Filter
		want   bool
	}{
		{"Not true", grpctrace.Not(yes), false},
		{"Not false", grpctrace.Not(no), true},
		{"All none", grpctrace.All(), true},
		{"All nil", grpctrace.All(nil, nil), true},
		{"All true", grpctrace.All(yes, nil, yes), true},
		{"All one false", grpctrace.All(yes, no, yes), false},
		{"Any none", grpctrace.Any(), false},
		{"Any nil", grpctrace.Any(nil, nil), false},
		{"Any false", grpctrace.Any(no, nil, no), false},
		{"Any one true", grpctrace.Any(no, yes, no), true},
		{"Not Not", grpctrace.Not(grpctrace.Not(yes)), true},
		{"All of Any", grpctrace.All(grpctrace.Any(no, yes), grpctrace.Not(no)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.filter(ctx, unaryMethod); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}

	if grpctrace.Not(nil) != nil {
		t.Error("Not(nil) is not nil")
	}

	// All and Any stop at the first filter that decides.
	calls = nil
	grpctrace.All(spy("a", true), spy("b", false), spy("c", true))(ctx, unaryMethod)
	if want := []string{"a", "b"}; !slices.Equal(calls, want) {
		t.Errorf("All called %v, want %v", calls, want)
	}
	calls = nil
	grpctrace.Any(spy("a", false), spy("b", true), spy("c", false))(ctx, unaryMethod)
	if want := []string{"a", "b"}; !slices.Equal(calls, want) {
		t.Errorf("Any called %v, want %v", calls, want)
	}

	// Changing the slice passed in does not change the combined filter.
	fs := []grpctrace.Filter{yes}
	f := grpctrace.All(fs...)
	fs[0] = no
	if !f(ctx, unaryMethod) {
		t.Error("All changed when its argument slice did")
	}

	// The usual expression: everything but health checks and reflection.
	usual := grpctrace.Not(grpctrace.Any(grpctrace.HealthCheck(), grpctrace.Reflection()))
	for _, m := range []string{healthCheck, healthWatch, healthList, reflectV1, reflectV1a} {
		if usual(ctx, m) {
			t.Errorf("usual filter traces %s", m)
		}
	}
	for _, m := range []string{unaryMethod, otherService, lookalikeHlth} {
		if !usual(ctx, m) {
			t.Errorf("usual filter does not trace %s", m)
		}
	}
}

// TestServerInterceptorsDialOptionsFilter installs grpctrace with
// ServerInterceptors and DialOptions, one set of options for both sides,
// next to the real gRPC health service: health checks, unary and
// streaming, leave no span on either side while the test service is
// traced on both.
func TestServerInterceptorsDialOptionsFilter(t *testing.T) {
	tracer := newRecorder()
	opts := []grpctrace.Option{
		grpctrace.WithTracer(tracer),
		grpctrace.WithFilter(grpctrace.Not(grpctrace.HealthCheck())),
	}

	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpctrace.ServerInterceptors(opts...)...)
	testpb.RegisterTestServiceServer(srv, testpb.NewServer())
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet", append(grpctrace.DialOptions(opts...),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		<-served
	})

	ctx := t.Context()
	hc := healthpb.NewHealthClient(conn)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	watch, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if _, err := watch.Recv(); err != nil { // the server has run its interceptors
		t.Fatalf("Watch Recv: %v", err)
	}
	cancel()

	client := testpb.NewTestServiceClient(conn)
	if _, err := client.Unary(ctx, &testpb.Request{Value: "x"}); err != nil {
		t.Fatalf("Unary: %v", err)
	}
	stream, err := client.ServerStream(ctx, &testpb.Request{Value: "x"})
	if err != nil {
		t.Fatalf("ServerStream: %v", err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			break
		}
	}

	tracer.waitSettled(t)
	var got []string
	for _, s := range tracer.FinishedSpans() {
		got = append(got, fmt.Sprintf("%s %v", s.OperationName, s.Tag("span.kind")))
	}
	sort.Strings(got)
	want := []string{
		serverStreamMethod + " client", serverStreamMethod + " server",
		unaryMethod + " client", unaryMethod + " server",
	}
	if !slices.Equal(got, want) {
		t.Errorf("finished spans %q, want %q", got, want)
	}
	tracer.mu.Lock()
	started := tracer.started
	tracer.mu.Unlock()
	if started != len(want) {
		t.Errorf("%d spans started, want %d", started, len(want))
	}
}

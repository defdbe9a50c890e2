package fleet

// grpctrace's OpenTelemetry spans next to otelgrpc v0.72.0's for the same
// RPCs, recorded by one SDK: the span grpctrace writes must be the span
// otelgrpc writes, but for the differences listed in parityAllowed.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/c2e00e20/grpctrace"
	"github.com/c2e00e20/grpctrace/testpb"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// parityFlavour is one instrumentation of both ends of an RPC.
type parityFlavour struct {
	name   string
	server func(*otelFleet) []grpc.ServerOption
	client func(*otelFleet) []grpc.DialOption
}

const (
	flavourOtelgrpc     = "otelgrpc"
	flavourInterceptors = "grpctrace interceptors"
	flavourStats        = "grpctrace stats handlers"
)

// parityFlavours: otelgrpc's stats handlers (the reference; v0.72.0 has no
// interceptors), then grpctrace's OpenTelemetry path as interceptors and
// as stats handlers.
var parityFlavours = []parityFlavour{
	{
		name: flavourOtelgrpc,
		server: func(f *otelFleet) []grpc.ServerOption {
			return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(f.otelgrpcOptions()...))}
		},
		client: func(f *otelFleet) []grpc.DialOption {
			return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(f.otelgrpcOptions()...))}
		},
	},
	{
		name:   flavourInterceptors,
		server: func(f *otelFleet) []grpc.ServerOption { return f.serverOptions(osGrpctraceOTel) },
		client: func(f *otelFleet) []grpc.DialOption { return f.clientOptions(osGrpctraceOTel) },
	},
	{
		name: flavourStats,
		server: func(f *otelFleet) []grpc.ServerOption {
			return []grpc.ServerOption{grpc.StatsHandler(grpctrace.NewServerHandler(f.grpctraceOTel()...))}
		},
		client: func(f *otelFleet) []grpc.DialOption {
			return []grpc.DialOption{grpc.WithStatsHandler(grpctrace.NewClientHandler(f.grpctraceOTel()...))}
		},
	},
}

// parityRPC is one RPC of the comparison.
type parityRPC struct {
	name   string
	method string
	invoke func(testpb.TestServiceClient) otelInvoke
	code   codes.Code // the status the caller must get, with every flavour
}

const (
	rpcUnaryOK        = "unary OK"
	rpcUnaryNotFound  = "unary NotFound"
	rpcUnaryInternal  = "unary Internal"
	rpcServerStream   = "server stream"
	rpcRejectedUpload = "rejected upload"

	rejectedChunkMessage = "chunk 2 is malformed"
)

var parityRPCs = []parityRPC{
	{rpcUnaryOK, testpb.TestService_Unary_FullMethodName, func(c testpb.TestServiceClient) otelInvoke {
		return invokeKind(c, kindUnary, &testpb.Request{Value: "v"})
	}, codes.OK},
	{rpcUnaryNotFound, testpb.TestService_Unary_FullMethodName, func(c testpb.TestServiceClient) otelInvoke {
		return invokeKind(c, kindUnary, &testpb.Request{FailCode: int32(codes.NotFound), FailMessage: "no such item"})
	}, codes.NotFound},
	{rpcUnaryInternal, testpb.TestService_Unary_FullMethodName, func(c testpb.TestServiceClient) otelInvoke {
		return invokeKind(c, kindUnary, &testpb.Request{FailCode: int32(codes.Internal), FailMessage: "storage failed"})
	}, codes.Internal},
	{rpcServerStream, testpb.TestService_ServerStream_FullMethodName, func(c testpb.TestServiceClient) otelInvoke {
		return invokeKind(c, kindServerStream, &testpb.Request{Value: "v", ResponseCount: 3})
	}, codes.OK},
	{rpcRejectedUpload, testpb.TestService_ClientStream_FullMethodName, rejectedUpload, codes.InvalidArgument},
}

// rejectedUpload is a client-streaming upload the server rejects mid-way:
// the second chunk is invalid, the server ends the RPC with
// InvalidArgument, and the client, still uploading, sees Send return io.EOF
// before it reads the status with CloseAndRecv. No sleep: the client waits
// for the server's end, then sends until gRPC has the end too, which it
// must learn (the loop's bound is a watchdog).
func rejectedUpload(c testpb.TestServiceClient) otelInvoke {
	return func(ctx context.Context, serverEnded <-chan struct{}) (metadata.MD, error) {
		st, err := c.ClientStream(ctx)
		if err != nil {
			return nil, err
		}
		if err := st.Send(&testpb.Request{Value: "chunk 1"}); err != nil {
			return st.Trailer(), fmt.Errorf("chunk 1: %w", err)
		}
		bad := &testpb.Request{Value: "chunk 2", FailCode: int32(codes.InvalidArgument), FailMessage: rejectedChunkMessage}
		if err := st.Send(bad); err != nil {
			return st.Trailer(), fmt.Errorf("chunk 2: %w", err)
		}
		timer := time.NewTimer(serverEndTimeout)
		defer timer.Stop()
		select {
		case <-serverEnded:
		case <-timer.C:
			return nil, fmt.Errorf("the server did not end the upload within %v", serverEndTimeout)
		}
		for n := 3; ; n++ {
			err := st.Send(&testpb.Request{Value: fmt.Sprintf("chunk %d", n)})
			if err == io.EOF {
				break
			}
			if err != nil {
				return st.Trailer(), fmt.Errorf("chunk %d: %v, want io.EOF once the server ended the RPC", n, err)
			}
			if n == 1<<16 {
				return st.Trailer(), errors.New("Send never returned io.EOF after the server ended the RPC")
			}
		}
		_, err = st.CloseAndRecv()
		return st.Trailer(), err
	}
}

// parityAllowance is a difference between otelgrpc's span and grpctrace's
// that the comparison accepts: for the flavour, on the RPC ("" every RPC
// of the comparison, where it must then occur each time), on the client or
// server span, the field with exactly these values. An allowance that
// applies must occur: it pins grpctrace's value too.
type parityAllowance struct {
	flavour, rpc, span, field string
	otelgrpc, grpctrace       string
	why                       string
}

// parityAllowed is the list of documented differences.
var parityAllowed = []parityAllowance{
	// 1. grpctrace's client interceptor sees the call, not its attempts:
	// it names the server from the ClientConn's canonical target
	// ("passthrough:///bufnet" gives server.address "bufnet", no port),
	// as otelgrpc itself does when a dial target is known. otelgrpc's
	// client stats handler has none here and uses the attempt's remote
	// address (bufconn's net.Addr, "bufconn"); so do grpctrace's.
	{
		flavour: flavourInterceptors, span: "client", field: "attr server.address",
		otelgrpc: `"bufconn"`, grpctrace: `"bufnet"`,
		why: "client interceptor: server.address from the target, not the attempt's remote address",
	},
	// 2-4. The rejected upload: the client gets INVALID_ARGUMENT. gRPC
	// ends the attempt when Send sees the stream's end (io.EOF), and
	// reports that attempt's stats.End with a nil error (csAttempt.finish
	// turns io.EOF into success), before CloseAndRecv returns the status.
	// otelgrpc records stats.End as it is: OK, status Unset. That is
	// otelgrpc's bug; grpctrace must record what the caller gets.
	{
		flavour: flavourInterceptors, rpc: rpcRejectedUpload, span: "client", field: "attr rpc.response.status_code",
		otelgrpc: `"OK"`, grpctrace: `"INVALID_ARGUMENT"`,
		why: "rejected upload: otelgrpc records the attempt's end as gRPC reports it (success); the client got INVALID_ARGUMENT",
	},
	{
		flavour: flavourInterceptors, rpc: rpcRejectedUpload, span: "client", field: "status code",
		otelgrpc: "Unset", grpctrace: "Error",
		why: "rejected upload: a client error, as every non-OK code on the client",
	},
	{
		flavour: flavourInterceptors, rpc: rpcRejectedUpload, span: "client", field: "status description",
		otelgrpc: "", grpctrace: rejectedChunkMessage,
		why: "rejected upload: the status message",
	},
	// The stats handlers alone see only gRPC's own report of the attempt,
	// a success, and no later event carries the status (gRPC strips
	// grpc-status from the trailer it hands them): grpctrace's client
	// stats handler records what otelgrpc's does, and the client
	// interceptor, when installed too, records what the caller gets on
	// its call span. No allowance: the two must be equal.
}

// paritySpan is a span reduced to what the comparison looks at, each field
// as the table shows it ("" when absent).
type paritySpan struct {
	fields map[string]string
	events string // not compared, shown
}

// Fields in the order of the table; the attributes follow, sorted.
var parityFixedFields = []string{"name", "kind", "parent", "status code", "status description"}

// absent is how the table shows a field a span does not have.
const absent = "—"

// showAttr shows an attribute value with its type: strings quoted, the
// rest (int64, bool, ...) as OpenTelemetry emits them.
func showAttr(v attribute.Value) string {
	if v.Type() == attribute.STRING {
		return fmt.Sprintf("%q", v.AsString())
	}
	return v.String() + " (" + strings.ToLower(v.Type().String()) + ")"
}

// reduceSpan reduces s; parent names what s's parent is, relative to the
// caller's span and the client span.
func reduceSpan(s sdktrace.ReadOnlySpan, parent string) paritySpan {
	p := paritySpan{fields: map[string]string{
		"name":               s.Name(),
		"kind":               s.SpanKind().String(),
		"parent":             parent,
		"status code":        s.Status().Code.String(),
		"status description": s.Status().Description,
	}}
	for _, kv := range s.Attributes() {
		p.fields["attr "+string(kv.Key)] = showAttr(kv.Value)
	}
	var events []string
	for _, e := range s.Events() {
		events = append(events, e.Name)
	}
	p.events = strings.Join(events, ", ")
	if p.events == "" {
		p.events = "none"
	}
	if len(s.Links()) > 0 {
		p.fields["links"] = fmt.Sprint(len(s.Links()))
	}
	return p
}

// parityRun is one flavour's spans of one RPC.
type parityRun struct {
	client, server paritySpan
}

// runParityRPC makes the RPC under a caller's span and returns the client
// span (the caller's only client child) and the server span (the client
// span's only server child), which must be the handler's.
func runParityRPC(t *testing.T, f *otelFleet, srv *otelServer, c testpb.TestServiceClient, r parityRPC) (parityRun, bool) {
	t.Helper()
	ctx, caller := f.tracer.Start(t.Context(), "fleet.caller")
	rec, err := srv.call(ctx, r.invoke(c))
	caller.End()
	if status.Code(err) != r.code {
		t.Errorf("RPC = %v, want code %s", err, r.code)
	}
	if rec.Method != r.method {
		t.Errorf("the handler of %s did not run (record %+v, RPC error %v)", r.method, rec, err)
		return parityRun{}, false
	}
	callerSC := caller.SpanContext()
	clients := f.endedChildren(callerSC, trace.SpanKindClient)
	if len(clients) != 1 {
		t.Errorf("%d ended client spans under the caller's span, want 1", len(clients))
		return parityRun{}, false
	}
	client := clients[0]
	servers := f.endedChildren(client.SpanContext(), trace.SpanKindServer)
	if len(servers) != 1 {
		t.Errorf("%d ended server spans under the client span, want 1", len(servers))
		return parityRun{}, false
	}
	server := servers[0]
	if !server.SpanContext().Equal(rec.OTel) {
		t.Errorf("the handler's span is %s/%s, the server span %s/%s", rec.OTel.TraceID(), rec.OTel.SpanID(), server.SpanContext().TraceID(), server.SpanContext().SpanID())
	}
	return parityRun{
		client: reduceSpan(client, describeParent(client, callerSC, "caller")),
		server: reduceSpan(server, describeParent(server, client.SpanContext(), "client span")),
	}, true
}

// describeParent says what s's parent is: want's name, with "(remote)"
// when it came over the wire, or what else it is.
func describeParent(s sdktrace.ReadOnlySpan, want trace.SpanContext, name string) string {
	p := s.Parent()
	where := "local"
	if p.IsRemote() {
		where = "remote"
	}
	switch {
	case !p.IsValid():
		return "none (root)"
	case p.TraceID() != want.TraceID():
		return fmt.Sprintf("span of another trace (%s)", where)
	case p.SpanID() != want.SpanID():
		return fmt.Sprintf("another span of the trace (%s)", where)
	case s.SpanContext().TraceID() != want.TraceID():
		return fmt.Sprintf("%s (%s), but in another trace", name, where)
	}
	return fmt.Sprintf("%s (%s)", name, where)
}

// TestOTelParity makes each RPC of parityRPCs with otelgrpc and with
// grpctrace's OpenTelemetry path (interceptors, stats handlers), both ends
// of each RPC instrumented alike and recording into one SDK, and compares
// grpctrace's client and server spans with otelgrpc's: name, kind, parent
// (client span under the caller's, server span under the client span,
// remote), status code and description, and the attribute set, keys and
// values. They must be equal but for parityAllowed. One table per RPC.
func TestOTelParity(t *testing.T) {
	f := newOTelFleet(t)
	clients := map[string]testpb.TestServiceClient{}
	servers := map[string]*otelServer{}
	for _, fl := range parityFlavours {
		servers[fl.name] = startOTelServer(t, fl.server(f)...)
		clients[fl.name] = servers[fl.name].dial(t, fl.client(f)...)
	}
	var tables []string
	for _, r := range parityRPCs {
		t.Run(strings.ReplaceAll(r.name, " ", "-"), func(t *testing.T) {
			runs := map[string]parityRun{}
			for _, fl := range parityFlavours {
				run, ok := runParityRPC(t, f, servers[fl.name], clients[fl.name], r)
				if !ok {
					t.Fatalf("%s: no spans to compare", fl.name)
				}
				runs[fl.name] = run
			}
			tables = append(tables, compareParity(t, r, runs))
		})
	}
	var legend strings.Builder
	legend.WriteString("parity allowlist (a difference the comparison accepts, with these exact values):")
	for i, a := range parityAllowed {
		rpc := a.rpc
		if rpc == "" {
			rpc = "every RPC"
		}
		fmt.Fprintf(&legend, "\n  [allowed %d] %s, %s, %s span, %s: otelgrpc %s, grpctrace %s — %s", i+1, a.flavour, rpc, a.span, a.field, showEmpty(a.otelgrpc), showEmpty(a.grpctrace), a.why)
	}
	t.Log(strings.Join(tables, "\n\n") + "\n\n" + legend.String())
}

func showEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

// compareParity checks grpctrace's spans of one RPC against otelgrpc's and
// returns the RPC's table: span | attribute | otelgrpc | each grpctrace
// flavour, a grpctrace cell marked [allowed N] or [DIFFERS] where it is not
// otelgrpc's.
func compareParity(t *testing.T, r parityRPC, runs map[string]parityRun) string {
	t.Helper()
	header := []string{"span", "attribute"}
	for _, fl := range parityFlavours {
		header = append(header, fl.name)
	}
	lines := [][]string{header}
	for _, spanName := range []string{"client", "server"} {
		pick := func(fl string) paritySpan {
			if spanName == "client" {
				return runs[fl].client
			}
			return runs[fl].server
		}
		var attrs []string
		for _, fl := range parityFlavours {
			for k := range pick(fl.name).fields {
				if !slices.Contains(parityFixedFields, k) && !slices.Contains(attrs, k) {
					attrs = append(attrs, k)
				}
			}
		}
		slices.Sort(attrs)
		ref := pick(flavourOtelgrpc)
		for _, field := range append(slices.Clone(parityFixedFields), attrs...) {
			line := []string{spanName, strings.TrimPrefix(field, "attr "), cellValue(ref.fields, field)}
			for _, fl := range parityFlavours[1:] {
				got := pick(fl.name)
				line = append(line, cellValue(got.fields, field)+checkParityField(t, r.name, fl.name, spanName, field, ref.fields[field], got.fields[field]))
			}
			lines = append(lines, line)
		}
		line := []string{spanName, "events (not compared)"}
		for _, fl := range parityFlavours {
			line = append(line, pick(fl.name).events)
		}
		lines = append(lines, line)
	}
	// Allowances for this RPC that did not occur are errors: they pin
	// grpctrace's value.
	for _, fl := range parityFlavours[1:] {
		for i, a := range parityAllowed {
			if a.flavour != fl.name || (a.rpc != "" && a.rpc != r.name) {
				continue
			}
			run := runs[fl.name]
			ref := runs[flavourOtelgrpc]
			got, want := run.client.fields[a.field], ref.client.fields[a.field]
			if a.span == "server" {
				got, want = run.server.fields[a.field], ref.server.fields[a.field]
			}
			if want != a.otelgrpc || got != a.grpctrace {
				t.Errorf("%s, %s span, %s: allowed difference %d did not occur: want otelgrpc %s and grpctrace %s, got otelgrpc %s and grpctrace %s",
					fl.name, a.span, strings.TrimPrefix(a.field, "attr "), i+1, showEmpty(a.otelgrpc), showEmpty(a.grpctrace), showField(want), showField(got))
			}
		}
	}
	widths := make([]int, len(header))
	for _, l := range lines {
		for i, cell := range l {
			widths[i] = max(widths[i], displayWidth(cell))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "parity: %s (%s, the caller gets %s)\n", r.name, r.method, r.code)
	for n, l := range lines {
		writeTableLine(&b, l, widths)
		if n == 0 {
			sep := make([]string, len(widths))
			for i, w := range widths {
				sep[i] = strings.Repeat("-", w)
			}
			writeTableLine(&b, sep, widths)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// checkParityField compares one field of grpctrace's span with otelgrpc's
// and returns the cell's mark: "" when equal, " [allowed N]" for a listed
// difference, " [DIFFERS]" (and an error) otherwise.
func checkParityField(t *testing.T, rpc, flavour, spanName, field, want, got string) string {
	t.Helper()
	if got == want {
		return ""
	}
	for i, a := range parityAllowed {
		if a.flavour == flavour && (a.rpc == "" || a.rpc == rpc) && a.span == spanName && a.field == field &&
			a.otelgrpc == want && a.grpctrace == got {
			return fmt.Sprintf(" [allowed %d]", i+1)
		}
	}
	t.Errorf("%s, %s span, %s: otelgrpc %s, grpctrace %s: an unlisted difference", flavour, spanName, strings.TrimPrefix(field, "attr "), showField(want), showField(got))
	return " [DIFFERS]"
}

// cellValue is the field as the table shows it.
func cellValue(fields map[string]string, field string) string {
	v, ok := fields[field]
	switch {
	case !ok:
		return absent
	case v == "":
		return `""`
	}
	return v
}

// showField is a field's value in a message.
func showField(v string) string {
	if v == "" {
		return "absent/empty"
	}
	return v
}

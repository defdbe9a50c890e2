package e2e

import (
	"cmp"
	"fmt"
	"slices"
	"testing"
)

// rpcWant is what one of the demo's calls (examples/demo.Run) must look
// like in Jaeger.
type rpcWant struct {
	method string
	code   int
	// clientErr and serverErr: whether each side's span is flagged error.
	clientErr, serverErr bool
}

// The demo's calls, in order. The failed call's NotFound is an error for
// the client only (by default a server flags only the codes that blame
// it); the panic, recovered into Internal, is an error for both.
var demoRPCs = []rpcWant{
	{"Unary", 0, false, false},
	{"ServerStream", 0, false, false},
	{"ClientStream", 0, false, false},
	{"Bidi", 0, false, false},
	{"Unary", 5, true, false},
	{"Unary", 13, true, true},
}

const (
	svcPrefix   = "/grpctrace.testpb.TestService/"
	rootOp      = "demo"
	baggageTag  = "demo.baggage.user"
	baggageWant = "ada"
)

// demoSpans are a demo trace's spans: the root, and the client and server
// span of each call, in call order.
type demoSpans struct {
	root             jSpan
	clients, servers []jSpan
}

// checkDemoTrace asserts the shape of a demo run's trace as Jaeger
// returns it: the demo span at the root, each call's client span its
// child, each call's server span the child of its client span, with the
// right services, kinds, status codes, error flags, baggage and logs.
func checkDemoTrace(t *testing.T, tr jTrace, clientService, serverService string) demoSpans {
	t.Helper()
	if len(tr.Spans) != 1+2*len(demoRPCs) {
		t.Fatalf("trace %s has %d spans, want %d", tr.TraceID, len(tr.Spans), 1+2*len(demoRPCs))
	}
	service := func(s jSpan) string { return tr.Processes[s.ProcessID].ServiceName }
	kind := func(s jSpan) string { v, _ := tag(s.Tags, "span.kind"); return fmt.Sprint(v) }

	var d demoSpans
	var roots []jSpan
	byID := map[string]jSpan{}
	for _, s := range tr.Spans {
		byID[s.SpanID] = s
		if s.TraceID != tr.TraceID {
			t.Errorf("span %s %s: trace %s, want %s", s.SpanID, s.OperationName, s.TraceID, tr.TraceID)
		}
		switch k := kind(s); {
		case len(s.References) == 0:
			roots = append(roots, s)
		case k == "client":
			d.clients = append(d.clients, s)
		case k == "server":
			d.servers = append(d.servers, s)
		default:
			t.Errorf("span %s %s: kind %q, want client or server", s.SpanID, s.OperationName, k)
		}
	}
	if len(roots) != 1 || roots[0].OperationName != rootOp {
		t.Fatalf("root spans: %+v, want one %q span", roots, rootOp)
	}
	d.root = roots[0]
	if k := kind(d.root); k != "internal" && k != "<nil>" {
		t.Errorf("root span kind %q, want internal or none", k)
	}
	if s := service(d.root); s != clientService {
		t.Errorf("root span in service %q, want %q", s, clientService)
	}
	if len(d.clients) != len(demoRPCs) || len(d.servers) != len(demoRPCs) {
		t.Fatalf("%d client and %d server spans, want %d of each", len(d.clients), len(d.servers), len(demoRPCs))
	}

	// Client spans: children of the root, in call order.
	slices.SortFunc(d.clients, func(a, b jSpan) int { return cmp.Compare(a.StartTime, b.StartTime) })
	childOf := func(s jSpan) string {
		if len(s.References) != 1 || s.References[0].RefType != "CHILD_OF" || s.References[0].TraceID != tr.TraceID {
			t.Errorf("span %s %s: references %+v, want one CHILD_OF in the trace", s.SpanID, s.OperationName, s.References)
			return ""
		}
		return s.References[0].SpanID
	}
	serverOf := map[string]jSpan{}
	for _, s := range d.servers {
		parent := childOf(s)
		if p, ok := byID[parent]; !ok || kind(p) != "client" {
			t.Errorf("server span %s %s: parent %s is not a client span", s.SpanID, s.OperationName, parent)
		}
		if _, dup := serverOf[parent]; dup {
			t.Errorf("client span %s has two server children", parent)
		}
		serverOf[parent] = s
	}
	d.servers = d.servers[:0]
	for i, c := range d.clients {
		w := demoRPCs[i]
		if p := childOf(c); p != d.root.SpanID {
			t.Errorf("call %d client span: parent %s, want the root %s", i, p, d.root.SpanID)
		}
		s := serverOf[c.SpanID]
		d.servers = append(d.servers, s)
		if c.OperationName != svcPrefix+w.method || s.OperationName != svcPrefix+w.method {
			t.Errorf("call %d: operations %q and %q, want %s%s", i, c.OperationName, s.OperationName, svcPrefix, w.method)
		}
		if sc, ss := service(c), service(s); sc != clientService || ss != serverService {
			t.Errorf("call %d: services %q and %q, want %q and %q", i, sc, ss, clientService, serverService)
		}
		for _, side := range []struct {
			name    string
			span    jSpan
			wantErr bool
		}{{"client", c, w.clientErr}, {"server", s, w.serverErr}} {
			for key, want := range map[string]any{
				"component":            "gRPC",
				"rpc.system":           "grpc",
				"rpc.service":          "grpctrace.testpb.TestService",
				"rpc.method":           w.method,
				"rpc.grpc.status_code": float64(w.code),
			} {
				if got, _ := tag(side.span.Tags, key); got != want {
					t.Errorf("call %d (%s) %s: tag %s = %v, want %v", i, w.method, side.name, key, got, want)
				}
			}
			gotErr, _ := tag(side.span.Tags, "error")
			if (gotErr == true) != side.wantErr {
				t.Errorf("call %d (%s, code %d) %s: error tag %v, want error %v", i, w.method, w.code, side.name, gotErr, side.wantErr)
			}
			if !hasLog(side.span, map[string]string{"event": "message"}) {
				t.Errorf("call %d (%s) %s: no message event", i, w.method, side.name)
			}
		}
		// Baggage set on the client's root span, read by the handler.
		if got, _ := tag(s.Tags, baggageTag); got != baggageWant {
			t.Errorf("call %d (%s) server: tag %s = %v, want the client's baggage %q", i, w.method, baggageTag, got, baggageWant)
		}
		if w.clientErr && !hasLog(c, map[string]string{"event": "error"}) {
			t.Errorf("call %d client: no error log", i)
		}
	}
	if !hasLog(d.clients[4], map[string]string{"event": "error", "error.kind": "NotFound", "message": "no such record"}) {
		t.Errorf("failed call: client logs %+v lack the NotFound error", d.clients[4].Logs)
	}
	if !hasLog(d.servers[5], map[string]string{"event": "panic recovered", "panic": "testpb: handler panic requested"}) {
		t.Errorf("panicking call: server logs %+v lack the recovered panic", d.servers[5].Logs)
	}
	for _, i := range []int{2, 3} { // client-stream, bidi: the client half-closes
		if !hasLog(d.servers[i], map[string]string{"event": "client half-close"}) {
			t.Errorf("call %d (%s) server: no client half-close event", i, demoRPCs[i].method)
		}
	}
	return d
}

// hasLog reports whether one of s's logs has all of the given fields.
func hasLog(s jSpan, want map[string]string) bool {
	for _, l := range s.Logs {
		f := fields(l)
		ok := true
		for k, v := range want {
			if f[k] != v {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

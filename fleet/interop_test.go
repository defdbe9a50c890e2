package fleet

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/c2e00e20/grpctrace/testpb"
	"github.com/google/go-cmp/cmp"
	"github.com/opentracing/opentracing-go"
	"google.golang.org/grpc/status"
)

// interopBaggage is one baggage item per column of the table: values that
// need escaping in an HTTP header in every way a tracer may get wrong
// (space, '+', '%', the W3C baggage delimiters, non-ASCII), and a key with
// capitals, which tracers deliver in different cases.
var interopBaggage = []struct{ label, key, value string }{
	{"plain", "item", "plain"},
	{"a b", "item", "a b"},
	{"a+b", "item", "a+b"},
	{"100%", "item", "100%"},
	{"x,y=z;q", "item", "x,y=z;q"},
	{"Zoë", "item", "Zoë"},
	{"日本", "item", "日本"},
	{"UserID=plain", "UserID", "plain"},
}

// packedHeader is where grpctrace packs the pairs gRPC cannot send as plain
// headers, which only grpctrace reads. The table counts the RPCs that
// carried it: with tracers that escape every baggage value for
// HTTPHeaders, none should, so peers see everything grpctrace sends.
const packedHeader = "grpctrace-bin"

// interopKinds are the RPC shapes of the table: a unary RPC, and a stream,
// whose span context grpctrace and the peers send from other code paths.
var interopKinds = []rpcKind{kindUnary, kindBidi}

// TestInterop puts each side as client against each side as server, with
// each tracer, and checks that the trace and the baggage cross intact:
// the server span is the client span's child in its trace, the handler
// reads every baggage item as set (keys as the tracer itself delivers them
// without gRPC), and the RPC succeeds. Every pair with a grpctrace side is
// asserted; peer-to-peer pairs are printed for reference only, to show what
// the fleet had before grpctrace. `make fleet` prints the tables.
func TestInterop(t *testing.T) {
	for _, tc := range fleetTracers {
		t.Run(tc.name, func(t *testing.T) {
			ft := tc.new(t)
			wants, alone := interopWants(t, ft)
			rows := []interopRow{alone}
			// One server per side, reused by every row.
			servers := map[side]*tracedServer{}
			for _, s := range allSides {
				servers[s] = startTracedServer(t, s, ft.Tracer)
			}
			for _, client := range allSides {
				for _, server := range allSides {
					c := servers[server].dial(t, client, ft.Tracer)
					for _, kind := range interopKinds {
						row := interopRow{
							pair:     fmt.Sprintf("%s → %s", client, server),
							kind:     string(kind),
							asserted: client.isGrpctrace() || server.isGrpctrace(),
						}
						t.Run(fmt.Sprintf("%s-to-%s/%s", client, server, kind), func(t *testing.T) {
							for i, b := range interopBaggage {
								cell := interopCall(t, ft, servers[server], c, kind, b.key, b.value)
								cell.want = wants[i]
								row.cells = append(row.cells, cell)
								if row.asserted && !cell.intact() {
									t.Errorf("baggage %s: %s", b.label, cell.problem())
								}
							}
						})
						rows = append(rows, row)
					}
				}
			}
			if w := ft.Warnings(); len(w) > 0 {
				t.Logf("%s warned: %q", ft.Name, w)
			}
			t.Log(formatInteropTable(ft.Name, rows))
		})
	}
}

// interopWants returns, per baggage column, what a handler should read:
// the value as set, under the key the tracer delivers through an
// HTTPHeaders round trip without gRPC (mocktracer and jaeger-client-go
// lowercase keys on extraction, W3C baggage keeps them). The round trip
// itself is the table's first row, for reference.
func interopWants(t *testing.T, ft *fleetTracer) ([]map[string]string, interopRow) {
	t.Helper()
	alone := interopRow{pair: "tracer alone, http.Header", kind: "-"}
	wants := make([]map[string]string, len(interopBaggage))
	for i, b := range interopBaggage {
		got, err := ft.RoundTrip(map[string]string{b.key: b.value})
		if err != nil {
			t.Fatalf("%s round trip of %s: %v", ft.Name, b.label, err)
		}
		key := b.key
		for k := range got {
			if strings.EqualFold(k, b.key) {
				key = k
			}
		}
		wants[i] = map[string]string{key: b.value}
		cell := interopCell{traceOK: true, got: got, want: wants[i]}
		if key != b.key {
			// The key every handler is expected to read.
			cell.note = "key " + key
		}
		alone.cells = append(alone.cells, cell)
	}
	return wants, alone
}

// interopCell is one RPC of the table.
type interopCell struct {
	err       error
	note      string // shown after "ok"
	packed    bool   // the RPC carried grpctrace's packed header
	traceOK   bool
	traceNote string            // why the trace is broken
	got, want map[string]string // baggage the handler read, and should have
}

func (c interopCell) intact() bool {
	return c.err == nil && c.traceOK && cmp.Equal(c.got, c.want)
}

// problem explains a cell that is not intact.
func (c interopCell) problem() string {
	var p []string
	if c.err != nil {
		p = append(p, fmt.Sprintf("RPC failed: %v", c.err))
	}
	if !c.traceOK {
		p = append(p, "trace broken: "+c.traceNote)
	}
	if d := cmp.Diff(c.want, c.got); d != "" {
		p = append(p, "handler's baggage (-want +got):\n"+d)
	}
	return strings.Join(p, "; ")
}

// text is the cell as the table shows it: ok, or what went wrong.
func (c interopCell) text() string {
	switch {
	case c.err != nil:
		return "rpc " + status.Code(c.err).String()
	case cmp.Equal(c.got, c.want) && c.note != "":
		return "ok (" + c.note + ")"
	case cmp.Equal(c.got, c.want):
		return "ok"
	case len(c.got) == 0:
		return "lost"
	}
	if len(c.got) == 1 && len(c.want) == 1 {
		for k := range c.want {
			if v, ok := c.got[k]; ok {
				return showValue(v)
			}
		}
	}
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(c.got)) {
		kv = append(kv, k+"="+showValue(c.got[k]))
	}
	return strings.Join(kv, " ")
}

func showValue(v string) string {
	if v == "" || strings.ContainsAny(v, " \t") {
		return fmt.Sprintf("%q", v)
	}
	return v
}

// interopCall makes one RPC under a caller's span carrying one baggage
// item and checks the trace: the RPC's client span (grpctrace's, or the
// peer's) is the only client child of the caller's span, and the span the
// handler found is a server span whose parent is that client span, in the
// same trace. Both are finished when call returns.
func interopCall(t *testing.T, ft *fleetTracer, srv *tracedServer, c testpb.TestServiceClient, kind rpcKind, key, value string) interopCell {
	t.Helper()
	caller := ft.Tracer.StartSpan("fleet.caller")
	caller.SetBaggageItem(key, value)
	ctx := opentracing.ContextWithSpan(t.Context(), caller)
	rec, err := srv.call(ctx, c, kind, &testpb.Request{Value: "v"})
	caller.Finish()
	cell := interopCell{err: err, got: rec.Baggage, packed: len(rec.Metadata.Get(packedHeader)) > 0}
	cell.traceOK, cell.traceNote = checkTrace(ft, caller.Context(), rec.Span)
	return cell
}

func checkTrace(ft *fleetTracer, caller, handler opentracing.SpanContext) (bool, string) {
	callerIDs, ok := ft.IDs(caller)
	if !ok {
		return false, "caller's span context is not the tracer's"
	}
	clients := ft.FinishedChildren(callerIDs, kindClient)
	if len(clients) != 1 {
		return false, fmt.Sprintf("%d finished client spans under the caller's span, want 1", len(clients))
	}
	client := clients[0]
	serverIDs, ok := ft.IDs(handler)
	if !ok {
		return false, "the handler's context has no span of the tracer"
	}
	server, ok := ft.FinishedSpan(serverIDs)
	switch {
	case !ok:
		return false, "the handler's span is not finished"
	case server.Kind != kindServer:
		return false, fmt.Sprintf("the handler's span has kind %q", server.Kind)
	case server.Trace != client.Trace:
		return false, fmt.Sprintf("server span in trace %s, client span in %s", server.Trace, client.Trace)
	case server.Parent != client.Span:
		return false, fmt.Sprintf("server span's parent is %q, the client span is %s", server.Parent, client.Span)
	}
	return true, ""
}

// interopRow is one line of the table.
type interopRow struct {
	pair, kind string
	asserted   bool // a grpctrace side: every cell must be intact
	cells      []interopCell
}

// formatInteropTable lays the rows out as a Markdown table, one per
// tracer, each line starting with '|' (make fleet keeps those lines).
func formatInteropTable(tracer string, rows []interopRow) string {
	header := []string{"client → server", "kind", "checked", "trace"}
	for _, b := range interopBaggage {
		header = append(header, b.label)
	}
	lines := [][]string{header}
	for _, r := range rows {
		checked, trace := "ref", "ok"
		if r.asserted {
			checked = "assert"
		}
		broken := 0
		for _, c := range r.cells {
			if !c.traceOK {
				broken++
			}
		}
		if broken > 0 {
			trace = fmt.Sprintf("broken %d/%d", broken, len(r.cells))
		}
		if r.kind == "-" {
			checked, trace = "ref", "-"
		}
		line := []string{r.pair, r.kind, checked, trace}
		for _, c := range r.cells {
			line = append(line, c.text())
		}
		lines = append(lines, line)
	}
	widths := make([]int, len(header))
	for _, l := range lines {
		for i, cell := range l {
			widths[i] = max(widths[i], displayWidth(cell))
		}
	}
	packed := 0
	for _, r := range rows {
		for _, c := range r.cells {
			if c.packed {
				packed++
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "fleet interop table, tracer %s (checked: assert = a grpctrace side, every cell must be ok; ref = reference only; RPCs that needed the %s header: %d)\n", tracer, packedHeader, packed)
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

func writeTableLine(b *strings.Builder, cells []string, widths []int) {
	b.WriteString("|")
	for i, c := range cells {
		b.WriteString(" ")
		b.WriteString(c)
		b.WriteString(strings.Repeat(" ", widths[i]-displayWidth(c)))
		b.WriteString(" |")
	}
	b.WriteString("\n")
}

// displayWidth is the number of terminal columns s takes: East Asian wide
// characters (日本) take two.
func displayWidth(s string) int {
	w := 0
	for _, r := range s {
		if unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul) {
			w += 2
		} else {
			w++
		}
	}
	return w
}

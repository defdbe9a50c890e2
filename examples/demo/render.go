package demo

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
)

// RenderOptions configure Render.
type RenderOptions struct {
	// Width is the number of columns of a waterfall's time axis; below 10
	// means 60.
	Width int
	// MaxValue cuts tag and log values to this many characters; below 8
	// means 60.
	MaxValue int
}

// Render writes every trace found in spans, the one that started first
// first: a header line, then the spans as an indented tree (operation,
// kind, duration, status, then the tags and the log events with their
// offset from the span's start), then a waterfall that draws each span on
// a common time axis.
//
// A span whose parent is not among spans (the parent is in another
// process, or was not recorded) is drawn as a root and says so.
func Render(w io.Writer, spans []sdktrace.ReadOnlySpan, o RenderOptions) error {
	if o.Width < 10 {
		o.Width = 60
	}
	if o.MaxValue < 8 {
		o.MaxValue = 60
	}
	bw := bufio.NewWriter(w)
	for i, t := range buildTrees(spans) {
		if i > 0 {
			fmt.Fprintln(bw)
		}
		plural := "s"
		if t.count == 1 {
			plural = ""
		}
		fmt.Fprintf(bw, "trace %s: %d span%s, %s\n\n", t.id, t.count, plural, fmtDur(t.end.Sub(t.start)))
		for _, r := range t.roots {
			writeTree(bw, r, "", "", o)
		}
		fmt.Fprintln(bw)
		writeWaterfall(bw, t, o)
	}
	return bw.Flush()
}

type node struct {
	span     sdktrace.ReadOnlySpan
	children []*node
	depth    int
	// remoteParent is the parent that is not among the spans rendered.
	remoteParent trace.SpanID
}

type traceTree struct {
	id         trace.TraceID
	roots      []*node
	start, end time.Time
	count      int
}

func buildTrees(spans []sdktrace.ReadOnlySpan) []*traceTree {
	byTrace := map[trace.TraceID][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		id := s.SpanContext().TraceID()
		byTrace[id] = append(byTrace[id], s)
	}
	var trees []*traceTree
	for id, ss := range byTrace {
		slices.SortFunc(ss, compareSpans)
		t := &traceTree{id: id, count: len(ss), start: ss[0].StartTime(), end: ss[0].EndTime()}
		nodes := make(map[trace.SpanID]*node, len(ss))
		for _, s := range ss {
			nodes[s.SpanContext().SpanID()] = &node{span: s}
			t.end = maxTime(t.end, s.EndTime())
			for _, e := range s.Events() {
				t.end = maxTime(t.end, e.Time)
			}
		}
		for _, s := range ss {
			n := nodes[s.SpanContext().SpanID()]
			parent := s.Parent()
			if p, ok := nodes[parent.SpanID()]; ok && parent.IsValid() && p != n {
				p.children = append(p.children, n)
				continue
			}
			if parent.IsValid() {
				n.remoteParent = parent.SpanID()
			}
			t.roots = append(t.roots, n)
		}
		var setDepth func(n *node, d int)
		setDepth = func(n *node, d int) {
			n.depth = d
			for _, c := range n.children {
				setDepth(c, d+1)
			}
		}
		for _, r := range t.roots {
			setDepth(r, 0)
		}
		trees = append(trees, t)
	}
	slices.SortFunc(trees, func(a, b *traceTree) int {
		if c := a.start.Compare(b.start); c != 0 {
			return c
		}
		return strings.Compare(a.id.String(), b.id.String())
	})
	return trees
}

func compareSpans(a, b sdktrace.ReadOnlySpan) int {
	return cmp.Or(
		a.StartTime().Compare(b.StartTime()),
		a.EndTime().Compare(b.EndTime()),
		strings.Compare(a.Name(), b.Name()),
		strings.Compare(a.SpanContext().SpanID().String(), b.SpanContext().SpanID().String()),
	)
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// writeTree writes n's title after prefix+connector, its details, then its
// children.
func writeTree(w io.Writer, n *node, prefix, connector string, o RenderOptions) {
	s := n.span
	title := fmt.Sprintf("%s (%s) %s", s.Name(), s.SpanKind(), fmtDur(s.EndTime().Sub(s.StartTime())))
	if st := statusText(s); st != "" {
		title += " " + st
	}
	if n.remoteParent.IsValid() {
		title += fmt.Sprintf("  (parent %s not recorded here)", n.remoteParent)
	}
	fmt.Fprintf(w, "%s%s%s\n", prefix, connector, title)

	childPrefix := prefix
	switch connector {
	case "├─ ":
		childPrefix += "│  "
	case "└─ ":
		childPrefix += "   "
	}
	detail := childPrefix + "  "
	if len(n.children) > 0 {
		detail = childPrefix + "│ "
	}
	for _, line := range wrap(attrsText(s.Attributes(), o.MaxValue), 96) {
		fmt.Fprintf(w, "%s%s\n", detail, line)
	}
	for _, e := range s.Events() {
		var attrs []attribute.KeyValue
		for _, a := range e.Attributes {
			if a.Key != "event" {
				attrs = append(attrs, a)
			}
		}
		line := fmt.Sprintf("+%s %s", fmtDur(e.Time.Sub(s.StartTime())), e.Name)
		if text := attrsText(attrs, o.MaxValue); len(text) > 0 {
			line += " " + strings.Join(text, " ")
		}
		fmt.Fprintf(w, "%s%s\n", detail, line)
	}
	for i, c := range n.children {
		conn := "├─ "
		if i == len(n.children)-1 {
			conn = "└─ "
		}
		writeTree(w, c, childPrefix, conn, o)
	}
}

// statusText is the gRPC status of an RPC span, if it has one, and ✗ when
// the span's status is Error.
func statusText(s sdktrace.ReadOnlySpan) string {
	var parts []string
	if st := grpcStatus(s); st != "" {
		parts = append(parts, st)
	}
	if s.Status().Code == otelcodes.Error {
		parts = append(parts, "✗")
		if d := s.Status().Description; d != "" {
			parts = append(parts, d)
		}
	}
	return strings.Join(parts, " ")
}

// attrsText renders attributes as key=value, sorted by key, values cut to
// max characters and quoted when they would not read as one word.
func attrsText(attrs []attribute.KeyValue, max int) []string {
	attrs = slices.Clone(attrs)
	slices.SortStableFunc(attrs, func(a, b attribute.KeyValue) int { return strings.Compare(string(a.Key), string(b.Key)) })
	out := make([]string, 0, len(attrs))
	for _, a := range attrs {
		v := a.Value.String()
		cut := false
		if utf8.RuneCountInString(v) > max {
			v = string([]rune(v)[:max])
			cut = true
		}
		if a.Value.Type() == attribute.STRING && needsQuote(v) {
			v = strconv.Quote(v)
		}
		if cut {
			v += "…"
		}
		out = append(out, string(a.Key)+"="+v)
	}
	return out
}

func needsQuote(v string) bool {
	if v == "" {
		return true
	}
	for _, r := range v {
		if r <= ' ' || r == '"' || r == '=' || r == '\\' || r == 0x7f || !strconv.IsPrint(r) {
			return true
		}
	}
	return false
}

// wrap joins words with spaces into lines of at most width characters (a
// longer word gets a line of its own).
func wrap(words []string, width int) []string {
	var lines []string
	var cur strings.Builder
	for _, word := range words {
		if cur.Len() > 0 && utf8.RuneCountInString(cur.String())+1+utf8.RuneCountInString(word) > width {
			lines = append(lines, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(word)
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}

// writeWaterfall draws each span of t, in tree order, as a bar on t's time
// axis: ├ where it starts, ┤ where it ends (✗ if it ended in error), • at
// its log events.
func writeWaterfall(w io.Writer, t *traceTree, o RenderOptions) {
	var rows []*node
	var walk func(n *node)
	walk = func(n *node) {
		rows = append(rows, n)
		for _, c := range n.children {
			walk(c)
		}
	}
	for _, r := range t.roots {
		walk(r)
	}

	labels := make([]string, len(rows))
	labelWidth := 0
	for i, n := range rows {
		labels[i] = strings.Repeat("  ", n.depth) + shortName(n.span)
		if l := utf8.RuneCountInString(labels[i]); l > 40 {
			labels[i] = string([]rune(labels[i])[:39]) + "…"
		}
		labelWidth = max(labelWidth, utf8.RuneCountInString(labels[i]))
	}
	labelWidth += 2

	total := t.end.Sub(t.start)
	width := o.Width
	col := func(at time.Time) int {
		if total <= 0 {
			return 0
		}
		c := int(float64(at.Sub(t.start)) / float64(total) * float64(width))
		return min(max(c, 0), width-1)
	}

	fmt.Fprintf(w, "waterfall: %s in %d columns, %s each\n", fmtDur(total), width, fmtDur(total/time.Duration(width)))
	fmt.Fprintf(w, "%s%s\n", strings.Repeat(" ", labelWidth), ruler(total, width))
	for i, n := range rows {
		s := n.span
		bar := []rune(strings.Repeat(" ", width))
		start, end := col(s.StartTime()), col(s.EndTime())
		end = max(end, start)
		failed := s.Status().Code == otelcodes.Error
		for c := start + 1; c < end; c++ {
			bar[c] = '─'
		}
		for _, e := range s.Events() {
			if c := col(e.Time); c > start && c < end {
				bar[c] = '•'
			}
		}
		switch {
		case start == end && failed:
			bar[start] = '✗'
		case start == end:
			bar[start] = '│'
		default:
			bar[start] = '├'
			bar[end] = '┤'
			if failed {
				bar[end] = '✗'
			}
		}
		line := padRight(labels[i], labelWidth) + string(bar) + " " + padLeft(fmtDur(s.EndTime().Sub(s.StartTime())), 7)
		if st := grpcStatus(s); st != "" {
			line += " " + st
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	fmt.Fprintln(w, "├─┤ span, from start to end   • log event   ✗ ended in error")
}

// padRight pads s with spaces to n characters (not bytes).
func padRight(s string, n int) string {
	return s + strings.Repeat(" ", max(n-utf8.RuneCountInString(s), 0))
}

// padLeft pads s with spaces on the left to n characters.
func padLeft(s string, n int) string {
	return strings.Repeat(" ", max(n-utf8.RuneCountInString(s), 0)) + s
}

// shortName labels an RPC span with its method and kind, any other span
// with its name. The method is the rpc.method attribute after its last
// "/": OpenTracing's conventions give the method alone ("Unary"),
// OpenTelemetry's the service too ("pkg.Service/Unary").
func shortName(s sdktrace.ReadOnlySpan) string {
	for _, a := range s.Attributes() {
		if a.Key == "rpc.method" && a.Value.AsString() != "" {
			m := a.Value.AsString()
			return m[strings.LastIndexByte(m, '/')+1:] + " " + s.SpanKind().String()
		}
	}
	return s.Name()
}

// grpcStatus is the gRPC status code of an RPC span, as codes.Code names it
// ("NotFound"), or "": the rpc.grpc.status_code number of OpenTracing's
// conventions, or the rpc.response.status_code name of OpenTelemetry's
// ("NOT_FOUND").
func grpcStatus(s sdktrace.ReadOnlySpan) string {
	for _, a := range s.Attributes() {
		switch {
		case a.Key == "rpc.grpc.status_code" && a.Value.Type() == attribute.INT64:
			return codes.Code(a.Value.AsInt64()).String()
		case a.Key == "rpc.response.status_code" && a.Value.Type() == attribute.STRING:
			var c codes.Code
			if c.UnmarshalJSON([]byte(strconv.Quote(a.Value.AsString()))) == nil {
				return c.String()
			}
			return a.Value.AsString()
		}
	}
	return ""
}

// ruler labels the time axis at round intervals, about every 10 columns.
func ruler(total time.Duration, width int) string {
	if total <= 0 {
		return "0"
	}
	step := niceStep(total / time.Duration(max(width/10, 1)))
	line := []rune(strings.Repeat(" ", width+8))
	next := 0 // first column free for a label
	for at := time.Duration(0); at <= total; at += step {
		c := int(float64(at) / float64(total) * float64(width))
		if c >= width {
			break
		}
		label := []rune(fmtDur(at))
		if c < next || c+len(label) > len(line) {
			continue
		}
		copy(line[c:], label)
		next = c + len(label) + 1
	}
	return strings.TrimRight(string(line), " ")
}

// niceStep rounds d up to 1, 2 or 5 times a power of ten.
func niceStep(d time.Duration) time.Duration {
	if d <= 0 {
		return 1
	}
	p := time.Duration(math.Pow(10, math.Floor(math.Log10(float64(d)))))
	for _, m := range []time.Duration{1, 2, 5, 10} {
		if m*p >= d {
			return m * p
		}
	}
	return 10 * p
}

// fmtDur writes d with three significant digits at most, in ns, µs, ms or
// s: 850µs, 3.4ms, 41.2ms, 1.25s.
func fmtDur(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	var v float64
	var unit string
	switch a := d.Abs(); {
	case a < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case a < time.Millisecond:
		v, unit = float64(d)/float64(time.Microsecond), "µs"
	case a < time.Second:
		v, unit = float64(d)/float64(time.Millisecond), "ms"
	default:
		v, unit = d.Seconds(), "s"
	}
	var s string
	switch a := math.Abs(v); {
	case a < 10:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	case a < 100:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	default:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s + unit
}

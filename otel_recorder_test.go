package grpctrace_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// otelTP is an in-memory trace.TracerProvider written on the OpenTelemetry
// API alone (the root module may not require the SDK). It records every
// span its tracers start, counts spans started and ended, so that tests
// wait for the spans they expect instead of sleeping, and catches a span
// ended twice or changed after it ended, as recorder does for OpenTracing.
type otelTP struct {
	embedded.TracerProvider

	mu      sync.Mutex
	changed *sync.Cond
	spans   []*otelRecSpan // in start order
	ids     uint64         // the last trace or span ID handed out
	ended   int
	twice   []string
	late    []string
}

func newOTelTP() *otelTP {
	p := &otelTP{}
	p.changed = sync.NewCond(&p.mu)
	return p
}

// Tracer returns a tracer recording into p under the scope name.
func (p *otelTP) Tracer(name string, _ ...trace.TracerOption) trace.Tracer {
	return &otelRecTracer{p: p, scope: name}
}

type otelRecTracer struct {
	embedded.Tracer
	p     *otelTP
	scope string
}

// nextID returns a fresh, non-zero number for a trace or span ID; p.mu is
// held.
func (p *otelTP) nextID() uint64 {
	p.ids++
	return p.ids
}

// Start starts a recording span, child of the span context ctx carries
// unless the options ask for a new root, and returns ctx carrying it.
func (t *otelRecTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	cfg := trace.NewSpanStartConfig(opts...)
	parent := trace.SpanContextFromContext(ctx)
	if cfg.NewRoot() {
		parent = trace.SpanContext{}
	}
	start := cfg.Timestamp()
	if start.IsZero() {
		start = time.Now()
	}
	p := t.p
	p.mu.Lock()
	defer p.mu.Unlock()
	var sid trace.SpanID
	binary.BigEndian.PutUint64(sid[:], p.nextID())
	tid := parent.TraceID()
	if !parent.IsValid() {
		binary.BigEndian.PutUint64(tid[:8], 0x07e1)
		binary.BigEndian.PutUint64(tid[8:], p.nextID())
	}
	s := &otelRecSpan{
		p:     p,
		scope: t.scope,
		name:  name,
		kind:  cfg.SpanKind(),
		sc: trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    tid,
			SpanID:     sid,
			TraceFlags: trace.FlagsSampled,
			TraceState: parent.TraceState(),
		}),
		parent: parent,
		links:  slices.Clone(cfg.Links()),
		start:  start,
	}
	s.setAttributes(cfg.Attributes())
	p.spans = append(p.spans, s)
	p.changed.Broadcast()
	return trace.ContextWithSpan(ctx, s), s
}

// otelRecSpan is one recorded span; its fields are guarded by p.mu.
type otelRecSpan struct {
	embedded.Span
	p *otelTP

	scope  string
	name   string
	kind   trace.SpanKind
	sc     trace.SpanContext
	parent trace.SpanContext // invalid: a root
	links  []trace.Link

	attrKeys []attribute.Key // in the order first set
	attrs    map[attribute.Key]attribute.Value
	events   []otelEvent
	status   otelcodes.Code
	desc     string
	errors   []error // RecordError's, which grpctrace must not call

	start, end time.Time
	ends       int
}

type otelEvent struct {
	name  string
	attrs []attribute.KeyValue
	at    time.Time
}

// setAttributes sets attributes, the last value of a key winning; p.mu is
// held.
func (s *otelRecSpan) setAttributes(kvs []attribute.KeyValue) {
	if s.attrs == nil {
		s.attrs = map[attribute.Key]attribute.Value{}
	}
	for _, kv := range kvs {
		if !kv.Valid() {
			continue
		}
		if _, ok := s.attrs[kv.Key]; !ok {
			s.attrKeys = append(s.attrKeys, kv.Key)
		}
		s.attrs[kv.Key] = kv.Value
	}
}

// change runs f on the span under the lock, recording what a change after
// End was: waitSettled fails on it. The change is kept either way, so that
// a tree shows it too.
func (s *otelRecSpan) change(what string, f func()) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if s.ends > 0 {
		s.p.late = append(s.p.late, s.name+": "+what)
	}
	f()
}

func (s *otelRecSpan) End(opts ...trace.SpanEndOption) {
	cfg := trace.NewSpanEndConfig(opts...)
	at := cfg.Timestamp()
	if at.IsZero() {
		at = time.Now()
	}
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	s.ends++
	if s.ends > 1 {
		p.twice = append(p.twice, s.name)
		return
	}
	s.end = at
	p.ended++
	p.changed.Broadcast()
}

func (s *otelRecSpan) AddEvent(name string, opts ...trace.EventOption) {
	cfg := trace.NewEventConfig(opts...)
	s.change("event "+name, func() {
		s.events = append(s.events, otelEvent{name: name, attrs: slices.Clone(cfg.Attributes()), at: cfg.Timestamp()})
	})
}

func (s *otelRecSpan) AddLink(l trace.Link) {
	s.change("link", func() { s.links = append(s.links, l) })
}

// IsRecording reports true until the span ends, as the SDK's spans do.
func (s *otelRecSpan) IsRecording() bool {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return s.ends == 0
}

func (s *otelRecSpan) RecordError(err error, _ ...trace.EventOption) {
	s.change("error", func() { s.errors = append(s.errors, err) })
}

func (s *otelRecSpan) SpanContext() trace.SpanContext { return s.sc }

// SetStatus follows the SDK: Unset never overrides, Ok is final, and the
// description is kept for Error only.
func (s *otelRecSpan) SetStatus(code otelcodes.Code, description string) {
	s.change("status", func() {
		if code == otelcodes.Unset || s.status == otelcodes.Ok {
			return
		}
		s.status, s.desc = code, ""
		if code == otelcodes.Error {
			s.desc = description
		}
	})
}

func (s *otelRecSpan) SetName(name string) {
	s.change("name "+name, func() { s.name = name })
}

func (s *otelRecSpan) SetAttributes(kvs ...attribute.KeyValue) {
	what := "attributes"
	if len(kvs) > 0 {
		what = "attribute " + string(kvs[0].Key)
	}
	s.change(what, func() { s.setAttributes(kvs) })
}

func (s *otelRecSpan) TracerProvider() trace.TracerProvider { return s.p }

// otelSpanData is a copy of a recorded span, for a test to inspect.
type otelSpanData struct {
	Scope, Name string
	Kind        trace.SpanKind
	SpanContext trace.SpanContext
	Parent      trace.SpanContext
	Links       []trace.Link
	Attrs       map[string]any
	Events      []otelEvent
	Status      otelcodes.Code
	Description string
	Errors      []error
	Start, End  time.Time
	Ended       bool
}

// snapshot returns copies of the spans started, in start order.
func (p *otelTP) snapshot() []otelSpanData {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]otelSpanData, len(p.spans))
	for i, s := range p.spans {
		attrs := make(map[string]any, len(s.attrs))
		for k, v := range s.attrs {
			attrs[string(k)] = v.AsInterface()
		}
		out[i] = otelSpanData{
			Scope: s.scope, Name: s.name, Kind: s.kind,
			SpanContext: s.sc, Parent: s.parent,
			Links:  slices.Clone(s.links),
			Attrs:  attrs,
			Events: slices.Clone(s.events),
			Status: s.status, Description: s.desc,
			Errors: slices.Clone(s.errors),
			Start:  s.start, End: s.end, Ended: s.ends > 0,
		}
	}
	return out
}

// find returns the only span with the given name and kind.
func (p *otelTP) find(t testing.TB, name string, kind trace.SpanKind) otelSpanData {
	t.Helper()
	var found []otelSpanData
	for _, s := range p.snapshot() {
		if s.Name == name && s.Kind == kind {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %v spans named %q, want 1", len(found), kind, name)
	}
	return found[0]
}

// waitSettled waits until every span started has ended, and fails the test
// if that does not happen within a generous bound, or a span ended twice
// or changed after it ended.
func (p *otelTP) waitSettled(t testing.TB) {
	t.Helper()
	p.waitOpen(t, 0)
}

// waitOpen waits until at most open of the spans started are not ended,
// with waitSettled's checks.
func (p *otelTP) waitOpen(t testing.TB, open int) {
	t.Helper()
	const bound = 10 * time.Second
	deadline := time.Now().Add(bound)
	wake := time.AfterFunc(bound, func() {
		p.mu.Lock()
		p.changed.Broadcast()
		p.mu.Unlock()
	})
	defer wake.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.spans)-p.ended > open && time.Now().Before(deadline) {
		p.changed.Wait()
	}
	if len(p.spans)-p.ended > open {
		var openNames []string
		for _, s := range p.spans {
			if s.ends == 0 {
				openNames = append(openNames, s.name)
			}
		}
		t.Fatalf("%d spans started, %d ended, want at most %d open; open: %v", len(p.spans), p.ended, open, openNames)
	}
	if len(p.twice) > 0 {
		t.Fatalf("spans ended more than once: %v", p.twice)
	}
	if len(p.late) > 0 {
		t.Fatalf("spans changed after they ended: %v", p.late)
	}
}

// waitEnded waits at most d for n spans to have ended and reports whether
// they have.
func (p *otelTP) waitEnded(n int, d time.Duration) bool {
	wake := time.AfterFunc(d, func() {
		p.mu.Lock()
		p.changed.Broadcast()
		p.mu.Unlock()
	})
	defer wake.Stop()
	deadline := time.Now().Add(d)
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.ended < n && time.Now().Before(deadline) {
		p.changed.Wait()
	}
	return p.ended >= n
}

// tree returns the ended spans as trees of node, children ordered by start
// time; a span whose parent is not among them is a root. Tags are the
// span's attributes, with "span.kind" ("client", "server", "producer",
// "consumer"; none for internal or unspecified) and, when the status is
// set, "otel.status_code" ("Error", "Ok") and "otel.status_description"
// (for Error). Logs are the events: "event" is the name, the attributes
// are there as strings.
func (p *otelTP) tree() []node {
	var spans []otelSpanData
	for _, s := range p.snapshot() {
		if s.Ended {
			spans = append(spans, s)
		}
	}
	sort.SliceStable(spans, func(i, j int) bool { return spans[i].Start.Before(spans[j].Start) })
	byID := map[trace.SpanID]bool{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = true
	}
	children := map[trace.SpanID][]otelSpanData{}
	var roots []otelSpanData
	for _, s := range spans {
		if s.Parent.IsValid() && byID[s.Parent.SpanID()] {
			children[s.Parent.SpanID()] = append(children[s.Parent.SpanID()], s)
		} else {
			roots = append(roots, s)
		}
	}
	var build func(s otelSpanData) node
	build = func(s otelSpanData) node {
		n := node{Name: s.Name, Tags: s.Attrs}
		switch s.Kind {
		case trace.SpanKindUnspecified, trace.SpanKindInternal:
		default:
			n.Tags["span.kind"] = s.Kind.String()
		}
		if s.Status != otelcodes.Unset {
			n.Tags["otel.status_code"] = s.Status.String()
			if s.Status == otelcodes.Error {
				n.Tags["otel.status_description"] = s.Description
			}
		}
		for _, err := range s.Errors {
			n.Logs = append(n.Logs, map[string]string{"event": "RecordError", "message": err.Error()})
		}
		for _, e := range s.Events {
			fields := map[string]string{"event": e.name}
			for _, kv := range e.attrs {
				fields[string(kv.Key)] = fmt.Sprint(kv.Value.AsInterface())
			}
			n.Logs = append(n.Logs, fields)
		}
		for _, c := range children[s.SpanContext.SpanID()] {
			n.Children = append(n.Children, build(c))
		}
		return n
	}
	var out []node
	for _, s := range roots {
		out = append(out, build(s))
	}
	return out
}

// checkLineage fails the test unless every ended span with a recorded
// parent is in its parent's trace, every server span's parent is remote
// (it came over the wire) and every other span's is local.
func (p *otelTP) checkLineage(t testing.TB) {
	t.Helper()
	spans := p.snapshot()
	byID := map[trace.SpanID]otelSpanData{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
	}
	for _, s := range spans {
		if !s.Parent.IsValid() {
			continue
		}
		if s.SpanContext.TraceID() != s.Parent.TraceID() {
			t.Errorf("span %q (%v) is in trace %v, its parent in %v", s.Name, s.Kind, s.SpanContext.TraceID(), s.Parent.TraceID())
		}
		if remote := s.Kind == trace.SpanKindServer; s.Parent.IsRemote() != remote {
			t.Errorf("span %q (%v) has a parent with IsRemote %v, want %v", s.Name, s.Kind, s.Parent.IsRemote(), remote)
		}
		if _, ok := byID[s.Parent.SpanID()]; !ok {
			t.Errorf("span %q (%v) has a parent %v that was never started here", s.Name, s.Kind, s.Parent.SpanID())
		}
	}
}

package grpctrace_test

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/log"
	"github.com/opentracing/opentracing-go/mocktracer"
)

// recorder is a mocktracer that also counts spans started and finished, so
// that tests wait for the spans they expect instead of sleeping, and catch
// a span finished twice.
type recorder struct {
	*mocktracer.MockTracer

	mu       sync.Mutex
	changed  *sync.Cond
	started  int
	finished int
	twice    []string
	late     []string
}

func newRecorder() *recorder {
	r := &recorder{MockTracer: mocktracer.New()}
	r.changed = sync.NewCond(&r.mu)
	return r
}

func (r *recorder) StartSpan(name string, opts ...opentracing.StartSpanOption) opentracing.Span {
	s := r.MockTracer.StartSpan(name, opts...).(*mocktracer.MockSpan)
	r.mu.Lock()
	r.started++
	r.mu.Unlock()
	return &recordedSpan{MockSpan: s, r: r}
}

type recordedSpan struct {
	*mocktracer.MockSpan
	r        *recorder
	finishes int // guarded by r.mu
}

func (s *recordedSpan) Finish() { s.FinishWithOptions(opentracing.FinishOptions{}) }

// afterFinish records a change made to the span once it finished, which a
// tracer would drop or, worse, report: waitSettled fails on it.
func (s *recordedSpan) afterFinish(what string) {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if s.finishes > 0 {
		s.r.late = append(s.r.late, s.OperationName+": "+what)
	}
}

func (s *recordedSpan) SetTag(key string, value any) opentracing.Span {
	s.afterFinish("tag " + key)
	s.MockSpan.SetTag(key, value)
	return s
}

func (s *recordedSpan) LogFields(fields ...log.Field) {
	s.afterFinish("log")
	s.MockSpan.LogFields(fields...)
}

func (s *recordedSpan) LogKV(kvs ...any) {
	s.afterFinish("log")
	s.MockSpan.LogKV(kvs...)
}

func (s *recordedSpan) FinishWithOptions(o opentracing.FinishOptions) {
	if o.FinishTime.IsZero() {
		o.FinishTime = time.Now()
	}
	s.r.mu.Lock()
	s.finishes++
	n := s.finishes
	if n > 1 {
		s.r.twice = append(s.r.twice, s.OperationName)
	}
	s.r.mu.Unlock()
	if n > 1 {
		return
	}
	s.MockSpan.FinishWithOptions(o)
	s.r.mu.Lock()
	s.r.finished++
	s.r.changed.Broadcast()
	s.r.mu.Unlock()
}

// waitSettled waits until every span started has finished, and fails the
// test if that does not happen within a generous bound or a span finished
// twice.
func (r *recorder) waitSettled(t testing.TB) {
	t.Helper()
	r.waitOpen(t, 0)
}

// waitOpen waits until at most open of the spans started are unfinished,
// and fails the test if that does not happen within a generous bound or a
// span finished twice.
func (r *recorder) waitOpen(t testing.TB, open int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	wake := time.AfterFunc(10*time.Second, func() {
		r.mu.Lock()
		r.changed.Broadcast()
		r.mu.Unlock()
	})
	defer wake.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.started-r.finished > open && time.Now().Before(deadline) {
		r.changed.Wait()
	}
	if r.started-r.finished > open {
		t.Fatalf("%d spans started, %d finished, want at most %d unfinished", r.started, r.finished, open)
	}
	if len(r.twice) > 0 {
		t.Fatalf("spans finished more than once: %v", r.twice)
	}
	if len(r.late) > 0 {
		t.Fatalf("spans changed after they finished: %v", r.late)
	}
}

// waitFinished waits at most d for n spans to have finished and reports
// whether they have.
func (r *recorder) waitFinished(n int, d time.Duration) bool {
	wake := time.AfterFunc(d, func() {
		r.mu.Lock()
		r.changed.Broadcast()
		r.mu.Unlock()
	})
	defer wake.Stop()
	deadline := time.Now().Add(d)
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.finished < n && time.Now().Before(deadline) {
		r.changed.Wait()
	}
	return r.finished >= n
}

// node is a finished span as the tests compare it: what a user of a trace
// sees, without IDs and times.
type node struct {
	Name     string
	Tags     map[string]any
	Logs     []map[string]string
	Children []node
}

// tree returns the finished spans as trees, children ordered by start time.
// A span whose parent is not among the finished spans is a root.
func (r *recorder) tree() []node {
	spans := r.FinishedSpans()
	sort.SliceStable(spans, func(i, j int) bool { return spans[i].StartTime.Before(spans[j].StartTime) })
	byID := map[int]*mocktracer.MockSpan{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID] = s
	}
	children := map[int][]*mocktracer.MockSpan{}
	var roots []*mocktracer.MockSpan
	for _, s := range spans {
		if _, ok := byID[s.ParentID]; ok && s.ParentID != 0 {
			children[s.ParentID] = append(children[s.ParentID], s)
		} else {
			roots = append(roots, s)
		}
	}
	var build func(s *mocktracer.MockSpan) node
	build = func(s *mocktracer.MockSpan) node {
		n := node{Name: s.OperationName, Tags: s.Tags()}
		for _, l := range s.Logs() {
			fields := map[string]string{}
			for _, f := range l.Fields {
				fields[f.Key] = f.ValueString
			}
			n.Logs = append(n.Logs, fields)
		}
		for _, c := range children[s.SpanContext.SpanID] {
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

// spanByName returns the only finished span with the given name and kind.
func (r *recorder) span(t testing.TB, name, kind string) *mocktracer.MockSpan {
	t.Helper()
	var found []*mocktracer.MockSpan
	for _, s := range r.FinishedSpans() {
		if s.OperationName == name && fmt.Sprint(s.Tag("span.kind")) == kind {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d finished %s spans named %q, want 1", len(found), kind, name)
	}
	return found[0]
}

func (n node) String() string {
	var b strings.Builder
	var walk func(node, int)
	walk = func(n node, depth int) {
		fmt.Fprintf(&b, "%s%s %v %v\n", strings.Repeat("  ", depth), n.Name, n.Tags, n.Logs)
		for _, c := range n.Children {
			walk(c, depth+1)
		}
	}
	walk(n, 0)
	return b.String()
}

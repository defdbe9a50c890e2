package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// The environment e2e/run.sh gives the tests once Jaeger is healthy.
const (
	// envQuery is the host:port of Jaeger's query service (HTTP API).
	envQuery = "GRPCTRACE_E2E_JAEGER"
	// envOTLP is the host:port of Jaeger's OTLP/gRPC receiver.
	envOTLP = "GRPCTRACE_E2E_OTLP"
	// envCollector is the URL of Jaeger's Thrift-over-HTTP collector
	// endpoint (http://host:14268/api/traces).
	envCollector = "GRPCTRACE_E2E_COLLECTOR"
)

type jaegerEnv struct {
	query     string
	otlp      string
	collector string
}

// needJaeger skips the test unless e2e/run.sh started Jaeger for it.
func needJaeger(t *testing.T) jaegerEnv {
	t.Helper()
	e := jaegerEnv{query: os.Getenv(envQuery), otlp: os.Getenv(envOTLP), collector: os.Getenv(envCollector)}
	if e.query == "" {
		t.Skipf("%s is not set: these tests need the Jaeger that `make e2e` starts", envQuery)
	}
	if e.otlp == "" || e.collector == "" {
		t.Fatalf("%s is set but %s or %s is not: run the tests with `make e2e`", envQuery, envOTLP, envCollector)
	}
	return e
}

// The JSON of Jaeger's query API (/api/traces...).
type (
	jTrace struct {
		TraceID   string              `json:"traceID"`
		Spans     []jSpan             `json:"spans"`
		Processes map[string]jProcess `json:"processes"`
	}
	jSpan struct {
		TraceID       string `json:"traceID"`
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		References    []jRef `json:"references"`
		StartTime     int64  `json:"startTime"` // µs since the epoch
		Duration      int64  `json:"duration"`  // µs
		Tags          []jKV  `json:"tags"`
		Logs          []jLog `json:"logs"`
		ProcessID     string `json:"processID"`
	}
	jRef struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	}
	jKV struct {
		Key   string `json:"key"`
		Type  string `json:"type"`
		Value any    `json:"value"`
	}
	jLog struct {
		Timestamp int64 `json:"timestamp"`
		Fields    []jKV `json:"fields"`
	}
	jProcess struct {
		ServiceName string `json:"serviceName"`
		Tags        []jKV  `json:"tags"`
	}
	jResponse[T any] struct {
		Data   T `json:"data"`
		Errors []struct {
			Code int    `json:"code"`
			Msg  string `json:"msg"`
		} `json:"errors"`
	}
)

// tag returns the value of a span's or process's tag, as JSON decoded it
// (string, bool, float64).
func tag(kvs []jKV, key string) (any, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// fields flattens a log's fields into strings.
func fields(l jLog) map[string]string {
	m := map[string]string{}
	for _, f := range l.Fields {
		m[f.Key] = fmt.Sprint(f.Value)
	}
	return m
}

var errNotFound = errors.New("not found")

// get fetches Jaeger's query API at path and decodes its data into out.
func get[T any](ctx context.Context, query, path string, out *T) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+query+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusNotFound {
		return errNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	var r jResponse[T]
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if len(r.Errors) > 0 {
		return fmt.Errorf("GET %s: %v", path, r.Errors)
	}
	*out = r.Data
	return nil
}

// waitTrace polls /api/traces/{id} until the trace has at least want
// spans, for at most 30 seconds: spans arrive in batches, after the
// exporters' and Jaeger's own batching.
func waitTrace(t *testing.T, e jaegerEnv, id string, want int) jTrace {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last error
	got := 0
	for {
		var traces []jTrace
		err := get(ctx, e.query, "/api/traces/"+url.PathEscape(id), &traces)
		switch {
		case err != nil:
			last = err
		case len(traces) != 1:
			last = fmt.Errorf("%d traces for one ID", len(traces))
		default:
			got = len(traces[0].Spans)
			if got >= want {
				return traces[0]
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("trace %s: %d spans in Jaeger after 30s, want %d (last error: %v)", id, got, want, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// searchService returns the IDs of the traces Jaeger finds for service,
// searching the last hour.
func searchService(t *testing.T, e jaegerEnv, service string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var traces []jTrace
	q := url.Values{"service": {service}, "lookback": {"1h"}, "limit": {"100"}}
	if err := get(ctx, e.query, "/api/traces?"+q.Encode(), &traces); err != nil {
		t.Fatalf("searching service %s: %v", service, err)
	}
	var ids []string
	for _, tr := range traces {
		ids = append(ids, tr.TraceID)
	}
	return ids
}

// services returns the services Jaeger knows.
func services(t *testing.T, e jaegerEnv) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var s []string
	if err := get(ctx, e.query, "/api/services", &s); err != nil {
		t.Fatalf("listing services: %v", err)
	}
	return s
}

// checkSearch asserts that Jaeger lists each service and that searching
// by it finds the trace, and only it (the services are named for this run).
func checkSearch(t *testing.T, e jaegerEnv, id string, svcs ...string) {
	t.Helper()
	known := strings.Join(services(t, e), " ")
	for _, s := range svcs {
		if !strings.Contains(" "+known+" ", " "+s+" ") {
			t.Errorf("/api/services lacks %s: %s", s, known)
		}
		if ids := searchService(t, e, s); len(ids) != 1 || ids[0] != id {
			t.Errorf("search by service %s found traces %v, want [%s]", s, ids, id)
		}
	}
	t.Logf("trace %s found in Jaeger, by ID and by service %s", id, strings.Join(svcs, ", "))
}

// runID makes the names of this run's services unique, so that searches
// find this run's traces only, however often the tests run against one
// Jaeger.
var runID = fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffff)

package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/c2e00e20/grpctrace/benchmarks"
)

// fakeResults measures every benchmark in two rounds: each contender adds
// its own cost above the base, the same in both rounds, but for time,
// where grpctrace-otel-stats is faster than otelgrpc in one round only.
func fakeResults() []result {
	floorAllocs := map[string]float64{benchmarks.TracerNoop: 8, benchmarks.TracerMock: 16, benchmarks.TracerBridge: 16}
	added := map[string]float64{ // allocations above base per unary RPC
		benchmarks.GRPCTrace: 3, benchmarks.GRPCTraceStats: 33,
		benchmarks.OTGRPC: 20, benchmarks.Middleware: 21, benchmarks.OTelGRPC: 62,
		benchmarks.GRPCTraceOTelStats: 40,
	}
	var rs []result
	for round := 1; round <= 2; round++ {
		for _, b := range benchmarks.All() {
			r := result{bench: b, round: round, ns: 20000, bytes: 8000, allocs: 149}
			switch {
			case b.Case == benchmarks.CaseFloor:
				r.ns, r.bytes, r.allocs = 500, 1000, floorAllocs[b.Tracer]
			case b.Impl == benchmarks.GRPCTraceOTel:
				// The noop column exactly at the floor + 8, the mock
				// column above it.
				r.allocs += floorAllocs[b.Tracer] + otelAllocsAboveFloor
				if b.Tracer == benchmarks.TracerMock {
					r.allocs++
				}
				r.bytes += 100
				r.ns += 1000
			case b.Impl != benchmarks.Base:
				r.allocs += added[b.Impl]
				r.bytes += 10 * added[b.Impl]
				r.ns += 100 * added[b.Impl]
				if b.Impl == benchmarks.GRPCTraceOTelStats && round == 2 {
					r.ns += 10000
				}
			}
			if b.Case == benchmarks.CaseBidiMessage {
				r.allocs = 36
				if b.Impl == benchmarks.GRPCTraceOTelStats || b.Impl == benchmarks.OTelGRPC || b.Impl == benchmarks.GRPCTraceStats {
					r.allocs += 4
				}
			}
			r.line = fmt.Sprintf("Benchmark%s-2 1 %.0f ns/op %.0f B/op %.0f allocs/op", b.Name(), r.ns, r.bytes, r.allocs)
			rs = append(rs, r)
		}
	}
	return rs
}

func fakeReport() string {
	cfg := &config{rounds: 2, benchtime: "1x", seed: 1, loadStart: "0.1", loadEnd: "0.2"}
	return string(newReport(cfg, []string{"cpu: test"}, fakeResults(), time.Minute, nil).markdown())
}

// section returns the report's text from the line starting with start up
// to the next line starting with end.
func section(t *testing.T, report, start, end string) string {
	t.Helper()
	i := strings.Index(report, "\n"+start)
	if i < 0 {
		t.Fatalf("report lacks %q", start)
	}
	rest := report[i+1:]
	if j := strings.Index(rest[len(start):], "\n"+end); j >= 0 {
		return rest[:len(start)+j+1]
	}
	return rest
}

func TestReportOpenTelemetryContenders(t *testing.T) {
	rep := fakeReport()
	headline := section(t, rep, "## Headline", "## Targets")
	for _, want := range []string{
		"| floor, OpenTelemetry API | 8 | 16 | 16 |",
		"| **grpctrace-otel** | **+16** | **+25** | **+24** |",
		"| **grpctrace-otel-stats** | **+40** | **+40** | **+40** |",
		"| grpctrace-otel ÷ otelgrpc |",
		"| grpctrace-otel-stats ÷ otelgrpc | 0.65 | 0.65 | 0.65 |",
		"| grpctrace ÷ best peer |",
	} {
		if !strings.Contains(headline, want) {
			t.Errorf("headline lacks %q:\n%s", want, headline)
		}
	}

	otel := section(t, rep, "`grpctrace-otel`:", "`grpctrace-otel-stats`:")
	for _, want := range []string{
		"- noop, allocations above base per unary RPC at most the OpenTelemetry floor + 8: **met** (+16; floor 8, so at most 16).",
		"- mock, allocations above base per unary RPC at most the OpenTelemetry floor + 8: **missed** (+25; floor 16, so at most 24).",
		"- bridge, bytes above base per unary RPC below otelgrpc's: **met** (+100 B; otelgrpc +620 B).",
		"- Per stream message, message events off, zero allocations above base: **met** (noop 0, mock 0, bridge 0).",
		"- Time no worse than otelgrpc's where the difference is consistent across rounds: **met**.",
	} {
		if !strings.Contains(otel, want) {
			t.Errorf("grpctrace-otel targets lack %q:\n%s", want, otel)
		}
	}
	if strings.Contains(otel, "otgrpc") || strings.Contains(otel, "middleware") {
		t.Errorf("grpctrace-otel compared with an OpenTracing peer:\n%s", otel)
	}

	stats := section(t, rep, "`grpctrace-otel-stats`:", "## Floors")
	for _, want := range []string{
		"- noop, allocations above base per unary RPC below otelgrpc's: **met** (+40; otelgrpc +62).",
		"- mock, bytes above base per unary RPC below otelgrpc's: **met** (+400 B; otelgrpc +620 B).",
		"- Time no worse than otelgrpc's where the difference is consistent across rounds: **met**. Every other time difference with otelgrpc changed sign between rounds: noise.",
	} {
		if !strings.Contains(stats, want) {
			t.Errorf("grpctrace-otel-stats targets lack %q:\n%s", want, stats)
		}
	}
	if strings.Contains(stats, "Per stream message") {
		t.Errorf("grpctrace-otel-stats held to no allocation per message, which gRPC's stats events cost:\n%s", stats)
	}

	// The OpenTracing contenders keep their targets against every peer.
	ot := section(t, rep, "`grpctrace`:", "`grpctrace-stats`:")
	if !strings.Contains(ot, "- noop, allocations above base per unary RPC below every peer's: **met** (+3; below every peer).") {
		t.Errorf("grpctrace's targets changed:\n%s", ot)
	}

	unary := section(t, rep, "## Unary round trip", "## One message")
	for _, want := range []string{
		// + allocs ÷ floor against the OpenTelemetry floor: 40 / 8.
		"| noop | **grpctrace-otel-stats** | 29.0 µs | 8400 B | 189 | +9.0 µs | +400 B | +40 | ",
		" | 5.00 |\n",
		"The same for grpctrace's OpenTelemetry path, against the peer on the same API:",
		"| tracer | peer | grpctrace-otel: allocs | bytes | time | time, round by round | grpctrace-otel-stats: allocs | bytes | time | time, round by round |",
		"| noop | otelgrpc | 0.26 | 0.16 |",
	} {
		if !strings.Contains(unary, want) {
			t.Errorf("unary section lacks %q:\n%s", want, unary)
		}
	}
}

// TestReportWording checks that the report names no commit and no issue
// outside its header's library line.
func TestReportWording(t *testing.T) {
	hexWord := regexp.MustCompile(`\b[0-9a-f]{7,40}\b`)
	issue := regexp.MustCompile(`#[0-9]+\b`)
	for _, line := range strings.Split(fakeReport(), "\n") {
		if strings.HasPrefix(line, "- library: ") {
			continue
		}
		for _, w := range hexWord.FindAllString(line, -1) {
			if strings.ContainsAny(w, "abcdef") && strings.ContainsAny(w, "0123456789") {
				t.Errorf("line names what looks like a commit (%s): %s", w, line)
			}
		}
		if m := issue.FindString(line); m != "" {
			t.Errorf("line names what looks like an issue (%s): %s", m, line)
		}
	}
}

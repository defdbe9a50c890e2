// Command benchcompare runs the benchmarks of package benchmarks in
// interleaved rounds and writes RESULTS.md.
//
// The test binary is built once (go test -c) and given with -bin. Each
// round runs every benchmark once, each in a process of its own, in an
// order shuffled per round, so that the machine's drift hits every
// contender alike. All rounds' results go to the raw file in the format go
// test prints, then through benchstat, and into the report: medians over
// the rounds, overheads above the untraced base, overheads against the
// tracer's floor, grpctrace's overhead against each peer's, and whether
// each time difference holds in every round.
//
//	go test -c -o benchmarks.test .
//	go run ./cmd/benchcompare -bin ./benchmarks.test -benchstat benchstat
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/c2e00e20/grpctrace/benchmarks"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "", "the benchmarks' test binary, built with go test -c (required)")
	flag.StringVar(&cfg.benchstat, "benchstat", "benchstat", "the benchstat command; empty: no benchstat output")
	flag.IntVar(&cfg.rounds, "rounds", 6, "rounds, each running every benchmark once")
	flag.StringVar(&cfg.benchtime, "benchtime", "1s", "-test.benchtime of each run")
	flag.StringVar(&cfg.only, "run", "", "run only the benchmarks whose name matches this regexp (for trials)")
	flag.StringVar(&cfg.out, "out", "RESULTS.md", "the report to write")
	flag.StringVar(&cfg.raw, "raw", "RESULTS.raw.txt", "where to write every round's results, as go test prints them")
	flag.StringVar(&cfg.commit, "commit", "", "the library commit measured, for the report")
	flag.Uint64Var(&cfg.seed, "seed", 0, "seed of the per-round order; 0: from the clock")
	flag.Parse()
	if cfg.bin == "" || cfg.rounds < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		os.Exit(1)
	}
}

type config struct {
	bin, benchstat, benchtime, only, out, raw, commit string
	rounds                                            int
	seed                                              uint64
	// loadStart and loadEnd are the load average when the run started and
	// ended.
	loadStart, loadEnd string
}

// result is one benchmark's measurement in one round.
type result struct {
	bench             benchmarks.Benchmark
	round             int
	ns, bytes, allocs float64
	line              string
}

func run(cfg *config) error {
	benches := benchmarks.All()
	if cfg.only != "" {
		re, err := regexp.Compile(cfg.only)
		if err != nil {
			return err
		}
		var kept []benchmarks.Benchmark
		for _, b := range benches {
			if re.MatchString(b.Name()) {
				kept = append(kept, b)
			}
		}
		benches = kept
	}
	if len(benches) == 0 {
		return fmt.Errorf("no benchmark matches %q", cfg.only)
	}
	if cfg.seed == 0 {
		cfg.seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(cfg.seed, 0))

	start := time.Now()
	cfg.loadStart = loadAverage()
	var results []result
	var header []string
	for round := 1; round <= cfg.rounds; round++ {
		for i, j := range rng.Perm(len(benches)) {
			b := benches[j]
			r, h, err := runOne(cfg, b)
			if err != nil {
				return err
			}
			if header == nil {
				header = h
			}
			r.round = round
			results = append(results, r)
			fmt.Fprintf(os.Stderr, "round %d/%d  %2d/%d  %-48s %10.0f ns/op %7.0f B/op %5.0f allocs/op\n",
				round, cfg.rounds, i+1, len(benches), b.Name(), r.ns, r.bytes, r.allocs)
		}
	}
	elapsed := time.Since(start)
	cfg.loadEnd = loadAverage()

	raw := rawText(header, results, benches, cfg.rounds, false)
	if err := os.WriteFile(cfg.raw, raw, 0o644); err != nil {
		return err
	}
	var stat []benchstatRun
	if cfg.benchstat != "" {
		var err error
		if stat, err = runBenchstat(cfg.benchstat, rawText(header, results, benches, cfg.rounds, true)); err != nil {
			return err
		}
	}
	rep := newReport(cfg, header, results, elapsed, stat)
	return os.WriteFile(cfg.out, rep.markdown(), 0o644)
}

// loadAverage is the one-minute load average, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

// runOne runs b alone in a process of its own and returns its result and
// the configuration lines go test printed before it.
func runOne(cfg *config, b benchmarks.Benchmark) (result, []string, error) {
	cmd := exec.Command(cfg.bin,
		"-test.run=^$",
		"-test.bench="+b.Pattern(),
		"-test.benchmem",
		"-test.benchtime="+cfg.benchtime,
		"-test.count=1",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, nil, fmt.Errorf("%s: %v\n%s", b.Name(), err, out)
	}
	var header []string
	var found []result
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case configLine.MatchString(line):
			header = append(header, line)
		case strings.HasPrefix(line, "Benchmark"):
			r, ok := parseLine(line)
			if !ok {
				return result{}, nil, fmt.Errorf("%s: cannot read %q", b.Name(), line)
			}
			found = append(found, r)
		}
	}
	if len(found) != 1 || found[0].bench != b {
		return result{}, nil, fmt.Errorf("%s: want exactly its own result, got:\n%s", b.Name(), out)
	}
	return found[0], header, nil
}

// configLine is a "key: value" line of the benchmark format.
var configLine = regexp.MustCompile(`^[a-z][^\s:]*: `)

// parseLine reads a result line: the name, the iterations, then value and
// unit pairs.
func parseLine(line string) (result, bool) {
	f := strings.Fields(line)
	if len(f) < 4 {
		return result{}, false
	}
	name := strings.TrimPrefix(f[0], "Benchmark")
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	parts := strings.Split(name, "/")
	if len(parts) != 3 || !strings.HasPrefix(parts[1], "impl=") || !strings.HasPrefix(parts[2], "tracer=") {
		return result{}, false
	}
	r := result{
		bench: benchmarks.Benchmark{
			Case:   parts[0],
			Impl:   strings.TrimPrefix(parts[1], "impl="),
			Tracer: strings.TrimPrefix(parts[2], "tracer="),
		},
		line: line,
	}
	units := 0
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return result{}, false
		}
		switch f[i+1] {
		case "ns/op":
			r.ns = v
			units++
		case "B/op":
			r.bytes = v
			units++
		case "allocs/op":
			r.allocs = v
			units++
		}
	}
	return r, units == 3
}

// rawText is every round's results in the format go test prints, each
// round in the canonical order. For benchstat, the base, which has no
// tracer, is repeated under each tracer's name, so that each tracer's
// table compares the contenders with it.
func rawText(header []string, results []result, benches []benchmarks.Benchmark, rounds int, forBenchstat bool) []byte {
	var buf bytes.Buffer
	for _, h := range header {
		fmt.Fprintln(&buf, h)
	}
	procs := "-" + strconv.Itoa(runtime.GOMAXPROCS(0))
	for round := 1; round <= rounds; round++ {
		for _, b := range benches {
			for _, r := range results {
				if r.round != round || r.bench != b {
					continue
				}
				if !forBenchstat || b.Tracer != benchmarks.NoTracer {
					fmt.Fprintln(&buf, r.line)
					continue
				}
				rest := strings.TrimPrefix(r.line, strings.Fields(r.line)[0])
				for _, t := range benchmarks.TracerNames {
					relabelled := benchmarks.Benchmark{Case: b.Case, Impl: b.Impl, Tracer: t}
					fmt.Fprintf(&buf, "Benchmark%s%s%s\n", relabelled.Name(), procs, rest)
				}
			}
		}
	}
	return buf.Bytes()
}

// benchstatRun is one benchstat view of the results.
type benchstatRun struct {
	title, args, output string
}

func runBenchstat(command string, input []byte) ([]benchstatRun, error) {
	f, err := os.CreateTemp("", "benchcompare-*.txt")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(input); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	impls := []string{benchmarks.Base, benchmarks.GRPCTrace}
	impls = append(impls, benchmarks.Peers()...)
	otelImpls := benchmarks.OTelPeers()
	for _, c := range benchmarks.Contenders {
		if !c.Peer && c.OTel {
			otelImpls = append(otelImpls, c.Name)
		}
	}
	views := []benchstatRun{
		{
			title: "every contender against the base",
			args:  fmt.Sprintf("-row .name,/tracer -col /impl@(%s)", strings.Join(impls, " ")),
		},
		{
			title: "every peer against grpctrace",
			args:  fmt.Sprintf("-row .name,/tracer -col /impl@(%s)", strings.Join(impls[1:], " ")),
		},
		{
			title: "grpctrace's OpenTelemetry path against otelgrpc",
			args:  fmt.Sprintf("-row .name,/tracer -col /impl@(%s)", strings.Join(otelImpls, " ")),
		},
		{
			title: "the floors",
			args:  fmt.Sprintf("-row /tracer -col /impl@(%s)", strings.Join(benchmarks.FloorNames, " ")),
		},
	}
	for i := range views {
		v := &views[i]
		args := splitArgs(v.args)
		cmd := exec.Command(command, append(args, f.Name())...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("benchstat %s: %v\n%s", v.args, err, stderr.Bytes())
		}
		v.output = strings.ReplaceAll(string(out), f.Name(), "RESULTS.raw.txt")
	}
	return views, nil
}

// splitArgs splits "-row a -col b@(x y)" into flags and values, keeping
// parenthesised words together.
func splitArgs(s string) []string {
	var args []string
	depth := 0
	cur := ""
	for _, r := range s {
		switch {
		case r == ' ' && depth == 0:
			if cur != "" {
				args = append(args, cur)
				cur = ""
			}
			continue
		case r == '(':
			depth++
		case r == ')':
			depth--
		}
		cur += string(r)
	}
	if cur != "" {
		args = append(args, cur)
	}
	return args
}

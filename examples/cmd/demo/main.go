// Command demo shows what grpctrace records. It runs a gRPC server and a
// client traced by grpctrace, makes one call of every RPC shape, one that
// fails and one whose handler panics, all under one parent span, and prints
// the trace as an indented tree and as a waterfall. The tracer is the
// OpenTelemetry SDK, recording in memory and, when asked, exporting over
// OTLP; grpctrace records through the OpenTracing bridge to it, or, with
// -api opentelemetry, natively through the OpenTelemetry API.
//
// Run it with `make demo`, or `go run ./cmd/demo -h` in examples/ for its
// flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/status"

	"github.com/c2e00e20/grpctrace/examples/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// errUsage is returned for bad flags, once the problem has been reported.
var errUsage = errors.New("usage")

// The values of -api.
const (
	apiOpenTracing   = "opentracing"
	apiOpenTelemetry = "opentelemetry"
)

const usageText = `Usage: demo [flags]

Runs a gRPC server and client traced by grpctrace (with go-grpc-middleware's
recovery interceptor), makes a unary, a server-streaming, a client-streaming
and a bidi call, one call that fails and one whose handler panics, all under
one parent span, and prints each trace as a tree and as a waterfall.

The tracer is the OpenTelemetry SDK, keeping spans in memory to print them;
with -otlp, or OTEL_EXPORTER_OTLP_ENDPOINT, it also exports them over OTLP to
a collector (Jaeger, the OpenTelemetry Collector, ...). grpctrace records
through the OpenTracing bridge to it (-api opentracing, the default), or
natively through the OpenTelemetry API (-api opentelemetry). Either way the
W3C trace context and W3C baggage travel in the metadata, so a server and a
client each run with either API join one trace.

Modes:
  -mode=all     server and client in this process, over TCP on loopback
  -mode=server  serve on -listen until SIGINT or SIGTERM, then print the
                server's spans (their parents are in the client's process)
  -mode=client  make the calls to the server at -target, print the client's
                spans

Flags:
`

const envText = `
Environment:
  OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
        where to export when -otlp is not given, as a URL (http://host:4317);
        the exporter also reads the other OTEL_EXPORTER_OTLP_* variables
        (headers, certificates, timeout, compression)
  OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
        the default of -otlp-protocol
  OTEL_SERVICE_NAME
        the default of -service
  OTEL_RESOURCE_ATTRIBUTES
        more resource attributes (key=value,...)

Examples:
  demo                                  print the trace
  demo -api opentelemetry               the same, grpctrace recording natively
                                        through OpenTelemetry
  demo -otlp 127.0.0.1:4317             print it and export it over OTLP/gRPC
  demo -print=false -otlp http://127.0.0.1:4318 -otlp-protocol http/protobuf
  demo -mode=server -listen 127.0.0.1:50051 &
  demo -mode=client -target 127.0.0.1:50051
`

type config struct {
	mode, listen, target, api  string
	otlp, protocol, service    string
	print, events, payloads    bool
	width                      int
	timeout, shutdownTimeout   time.Duration
	exportDescription, tracing string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), envText)
	}
	fs.StringVar(&c.mode, "mode", "all", "run `mode`: all, server or client (see Modes)")
	fs.StringVar(&c.api, "api", apiOpenTracing, "the tracing `API` grpctrace records through: opentracing (the OpenTelemetry SDK\nbehind the OpenTracing bridge) or opentelemetry (the same SDK, natively)")
	fs.StringVar(&c.listen, "listen", "", "`address` to serve on (default 127.0.0.1:0 with -mode=all, a free port;\n127.0.0.1:50051 with -mode=server)")
	fs.StringVar(&c.target, "target", "127.0.0.1:50051", "gRPC `target` the client calls with -mode=client")
	fs.StringVar(&c.otlp, "otlp", "", "export the spans over OTLP to this collector `endpoint`: host:port (plain text),\nhttp://host:port or https://host:port (TLS); default: OTEL_EXPORTER_OTLP_ENDPOINT,\nand no export when neither is set")
	fs.StringVar(&c.protocol, "otlp-protocol", demo.OTLPProtocolFromEnv(), "OTLP `protocol`: grpc (port 4317) or http/protobuf (port 4318)")
	fs.BoolVar(&c.print, "print", true, "print the recorded traces as trees and waterfalls")
	fs.StringVar(&c.service, "service", "", "service.name of the spans (default OTEL_SERVICE_NAME, or grpctrace-demo,\ngrpctrace-demo-server, grpctrace-demo-client by mode)")
	fs.IntVar(&c.width, "width", 64, "`columns` of the waterfall's time axis")
	fs.BoolVar(&c.events, "message-events", true, "log an event per stream message (grpctrace.WithMessageEvents)")
	fs.BoolVar(&c.payloads, "payloads", false, "log request and response messages (grpctrace.WithPayloadLogging)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline of the client's calls")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long to wait for in-flight RPCs and the span export when stopping")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, errUsage
	}
	bad := func(format string, a ...any) (config, error) {
		fmt.Fprintf(stderr, "demo: "+format+"\n", a...)
		fs.Usage()
		return c, errUsage
	}
	if fs.NArg() > 0 {
		return bad("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	defaultService := "grpctrace-demo"
	switch c.mode {
	case "all":
		if c.listen == "" {
			c.listen = "127.0.0.1:0"
		}
	case "server":
		if c.listen == "" {
			c.listen = "127.0.0.1:50051"
		}
		defaultService = "grpctrace-demo-server"
	case "client":
		defaultService = "grpctrace-demo-client"
	default:
		return bad("-mode=%q: want all, server or client", c.mode)
	}
	tracer := "OpenTelemetry SDK behind the OpenTracing bridge"
	switch c.api {
	case apiOpenTracing:
	case apiOpenTelemetry:
		tracer = "OpenTelemetry SDK, recorded natively through the OpenTelemetry API"
	default:
		return bad("-api=%q: want %s or %s", c.api, apiOpenTracing, apiOpenTelemetry)
	}
	if c.service == "" {
		c.service = os.Getenv("OTEL_SERVICE_NAME")
	}
	if c.service == "" {
		c.service = defaultService
	}
	switch {
	case c.otlp != "":
		c.exportDescription = fmt.Sprintf("exported over OTLP (%s) to %s", c.protocol, c.otlp)
	case demo.OTLPEndpointFromEnv() != "":
		c.exportDescription = fmt.Sprintf("exported over OTLP (%s) to %s", c.protocol, demo.OTLPEndpointFromEnv())
	}
	if !c.print && c.exportDescription == "" {
		return bad("-print=false and no OTLP endpoint: the spans would go nowhere")
	}
	var dest []string
	if c.print {
		dest = append(dest, "kept in memory")
	}
	if c.exportDescription != "" {
		dest = append(dest, c.exportDescription)
	}
	c.tracing = fmt.Sprintf("%s, service %s, spans %s", tracer, c.service, strings.Join(dest, " and "))
	if c.width < 10 {
		return bad("-width=%d: want 10 or more", c.width)
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}

	cfg := demo.TracingConfig{ServiceName: c.service, Record: c.print}
	if c.exportDescription != "" {
		exp, err := demo.NewOTLPExporter(ctx, c.protocol, c.otlp)
		if err != nil {
			return err
		}
		cfg.Exporter = exp
	}
	tracing, err := demo.NewTracing(ctx, cfg)
	if err != nil {
		return err
	}
	// However the run ends, flush the spans (reporting a failed export) and
	// print what was recorded.
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.shutdownTimeout)
		defer cancel()
		if ferr := tracing.Provider.ForceFlush(fctx); ferr != nil {
			err = errors.Join(err, fmt.Errorf("exporting spans: %w", ferr))
		}
		// A fresh deadline: a flush that used all of its own must not
		// leave the exporter running.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.shutdownTimeout)
		defer cancel()
		if serr := tracing.Shutdown(sctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("stopping the tracer: %w", serr))
		}
		if c.print {
			fmt.Fprintln(stdout)
			if rerr := demo.Render(stdout, tracing.Spans(), demo.RenderOptions{Width: c.width}); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()

	opts := demo.Options{Tracer: tracing.Tracer, MessageEvents: c.events, Payloads: c.payloads}
	if c.api == apiOpenTelemetry {
		opts.Tracer = nil
		opts.TracerProvider, opts.Propagators = tracing.Provider, tracing.Propagators
	}
	switch c.mode {
	case "server":
		return serve(ctx, c, opts, stdout)
	case "client":
		fmt.Fprintf(stdout, "grpctrace demo client: calling %s\ntracer: %s\n", c.target, c.tracing)
		return call(ctx, c, opts, c.target, stdout)
	default:
		lis, err := net.Listen("tcp", c.listen)
		if err != nil {
			return err
		}
		srv := demo.NewServer(opts)
		served := make(chan error, 1)
		go func() { served <- srv.Serve(lis) }()
		fmt.Fprintf(stdout, "grpctrace demo: server and client in one process, server on %s\ntracer: %s\n", lis.Addr(), c.tracing)
		err = call(ctx, c, opts, lis.Addr().String(), stdout)
		// Every handler has returned, so every server span has ended,
		// once GracefulStop returns.
		srv.GracefulStop()
		return errors.Join(err, <-served)
	}
}

// serve runs the server until ctx is done.
func serve(ctx context.Context, c config, opts demo.Options, stdout io.Writer) error {
	lis, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	srv := demo.NewServer(opts)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	fmt.Fprintf(stdout, "grpctrace demo server: listening on %s\ntracer: %s\n", lis.Addr(), c.tracing)
	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	fmt.Fprintln(stdout, "grpctrace demo server: stopping")
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(c.shutdownTimeout):
		srv.Stop()
		<-stopped
	}
	return nil
}

// call makes the demo's calls to target and reports them.
func call(ctx context.Context, c config, opts demo.Options, target string, stdout io.Writer) error {
	conn, err := demo.Dial(target, opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var res demo.Result
	if opts.TracerProvider != nil {
		res, err = demo.RunOpenTelemetry(ctx, opts.TracerProvider, conn)
	} else {
		res, err = demo.Run(ctx, opts.Tracer, conn)
	}
	fmt.Fprintf(stdout, "\ntrace id: %s\n", res.TraceID)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, call := range res.Calls {
		outcome := call.Result
		if call.Err != nil {
			outcome = status.Convert(call.Err).Message()
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", call.Name, call.Method, call.Code, outcome)
	}
	if ferr := tw.Flush(); ferr != nil {
		return errors.Join(err, ferr)
	}
	return err
}

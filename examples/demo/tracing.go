package demo

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/opentracing/opentracing-go"
	"go.opentelemetry.io/otel/attribute"
	otbridge "go.opentelemetry.io/otel/bridge/opentracing"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// InstrumentationName is the OpenTelemetry instrumentation scope of the
// demo's spans.
const InstrumentationName = "github.com/c2e00e20/grpctrace/examples/demo"

// TracingConfig configures NewTracing.
type TracingConfig struct {
	// ServiceName is the service.name resource attribute. Empty means
	// OTEL_SERVICE_NAME, or else "grpctrace-demo".
	ServiceName string
	// Record keeps every finished span in memory, for Spans.
	Record bool
	// Exporter, if not nil, receives every finished span, in batches (see
	// NewOTLPExporter). NewTracing's Tracing owns it: Shutdown flushes and
	// closes it.
	Exporter sdktrace.SpanExporter
}

// Tracing is the OpenTelemetry SDK, also behind the OpenTracing bridge:
// what grpctrace records, through Tracer (OpenTracing) or natively through
// Provider and Propagators (OpenTelemetry), are OpenTelemetry spans, kept in
// memory and/or exported.
type Tracing struct {
	// Tracer is the OpenTracing tracer to give grpctrace.
	Tracer opentracing.Tracer
	// OTel is the OpenTelemetry view of the same tracer: spans started
	// with either API nest in the other's.
	OTel trace.TracerProvider
	// Provider is the SDK's tracer provider, for grpctrace to record
	// through natively (grpctrace.WithTracerProvider).
	Provider *sdktrace.TracerProvider
	// Propagators are the W3C trace context and W3C baggage, which the
	// bridge propagates with, for the native path
	// (grpctrace.WithPropagators).
	Propagators propagation.TextMapPropagator

	recorder *tracetest.SpanRecorder
}

// NewTracing sets up an OpenTelemetry SDK tracer provider with the
// configured processors and bridges it to OpenTracing. The bridge
// propagates the W3C trace context and W3C baggage, the Propagators. Nothing
// global is set.
func NewTracing(ctx context.Context, cfg TracingConfig) (*Tracing, error) {
	name := cfg.ServiceName
	if name == "" {
		name = os.Getenv("OTEL_SERVICE_NAME")
	}
	if name == "" {
		name = "grpctrace-demo"
	}
	res, err := resource.New(ctx,
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
		resource.WithProcessExecutableName(),
		resource.WithAttributes(attribute.String("service.name", name)),
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	}
	t := &Tracing{Propagators: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	if cfg.Record {
		t.recorder = tracetest.NewSpanRecorder()
		opts = append(opts, sdktrace.WithSpanProcessor(t.recorder))
	}
	if cfg.Exporter != nil {
		opts = append(opts, sdktrace.WithBatcher(cfg.Exporter))
	}
	t.Provider = sdktrace.NewTracerProvider(opts...)
	bridge, wrapped := otbridge.NewTracerPair(t.Provider.Tracer(InstrumentationName))
	bridge.SetTextMapPropagator(t.Propagators)
	bridge.SetWarningHandler(func(msg string) {
		fmt.Fprint(os.Stderr, "opentracing bridge: ", msg)
	})
	t.Tracer, t.OTel = bridge, wrapped
	return t, nil
}

// Spans returns the spans finished so far, when recording.
func (t *Tracing) Spans() []sdktrace.ReadOnlySpan {
	if t.recorder == nil {
		return nil
	}
	return t.recorder.Ended()
}

// Shutdown flushes the exporter, if any, and stops the provider.
func (t *Tracing) Shutdown(ctx context.Context) error {
	return t.Provider.Shutdown(ctx)
}

// OTLP protocols NewOTLPExporter speaks.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// OTLPProtocolFromEnv returns the protocol the standard environment
// variables ask for (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then
// OTEL_EXPORTER_OTLP_PROTOCOL), or ProtocolGRPC.
func OTLPProtocolFromEnv() string {
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := os.Getenv(v); p != "" {
			return p
		}
	}
	return ProtocolGRPC
}

// OTLPEndpointFromEnv reports whether the standard environment variables
// name an OTLP endpoint for traces (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
// OTEL_EXPORTER_OTLP_ENDPOINT), which the exporters then read themselves.
func OTLPEndpointFromEnv() string {
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if e := os.Getenv(v); e != "" {
			return e
		}
	}
	return ""
}

// NewOTLPExporter returns an OTLP trace exporter speaking protocol
// (ProtocolGRPC or ProtocolHTTP) to endpoint.
//
// endpoint is host:port, spoken to in plain text (a local collector), or a
// URL: http://host:port in plain text, https://host:port over TLS, with, for
// ProtocolHTTP, an optional path (default /v1/traces). An empty endpoint
// leaves everything to the standard OTEL_EXPORTER_OTLP_* environment
// variables, which the exporter reads (endpoint, headers, TLS, timeout,
// compression). Either way the exporter connects lazily: a collector that
// is down shows when spans are exported.
func NewOTLPExporter(ctx context.Context, protocol, endpoint string) (sdktrace.SpanExporter, error) {
	var host, path string
	insecure := true
	if endpoint != "" {
		if strings.Contains(endpoint, "://") {
			u, err := url.Parse(endpoint)
			if err != nil {
				return nil, fmt.Errorf("OTLP endpoint %q: %w", endpoint, err)
			}
			switch u.Scheme {
			case "http":
			case "https":
				insecure = false
			default:
				return nil, fmt.Errorf("OTLP endpoint %q: scheme must be http or https", endpoint)
			}
			host, path = u.Host, strings.TrimRight(u.Path, "/")
		} else {
			host = endpoint
		}
		if host == "" {
			return nil, fmt.Errorf("OTLP endpoint %q has no host", endpoint)
		}
	}
	switch protocol {
	case ProtocolGRPC:
		var opts []otlptracegrpc.Option
		if host != "" {
			if path != "" {
				return nil, errors.New("OTLP over gRPC takes no URL path: " + endpoint)
			}
			opts = append(opts, otlptracegrpc.WithEndpoint(host))
			if insecure {
				opts = append(opts, otlptracegrpc.WithInsecure())
			}
		}
		return otlptracegrpc.New(ctx, opts...)
	case ProtocolHTTP:
		var opts []otlptracehttp.Option
		if host != "" {
			opts = append(opts, otlptracehttp.WithEndpoint(host))
			if path != "" {
				opts = append(opts, otlptracehttp.WithURLPath(path))
			}
			if insecure {
				opts = append(opts, otlptracehttp.WithInsecure())
			}
		}
		return otlptracehttp.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("OTLP protocol %q: want %s or %s", protocol, ProtocolGRPC, ProtocolHTTP)
	}
}

// TraceID returns the trace ID, in hex, of a span context made by the
// OpenTelemetry bridge (or by any tracer whose span contexts have an
// OpenTelemetry TraceID method), or "" for another tracer's.
func TraceID(sc opentracing.SpanContext) string {
	if c, ok := sc.(interface{ TraceID() trace.TraceID }); ok {
		return c.TraceID().String()
	}
	return ""
}

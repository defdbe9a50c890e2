// Module hardening proves that tracing is never the reason an RPC fails,
// hangs, leaks or leaks data: faults with real processes over real TCP, a
// load soak, hostile headers from a raw HTTP/2 client. It is a module of its
// own so that the OpenTelemetry SDK, its OpenTracing bridge and
// jaeger-client-go never enter the library's go.mod.
module github.com/c2e00e20/grpctrace/hardening

go 1.26.0

replace github.com/c2e00e20/grpctrace => ../

require (
	github.com/c2e00e20/grpctrace v0.0.0-00010101000000-000000000000
	github.com/opentracing/opentracing-go v1.2.0
	go.opentelemetry.io/otel v1.47.0
	go.opentelemetry.io/otel/bridge/opentracing v1.47.0
	go.opentelemetry.io/otel/sdk v1.47.0
	go.opentelemetry.io/otel/trace v1.47.0
	go.uber.org/goleak v1.3.0
	golang.org/x/net v0.60.0
	google.golang.org/grpc v1.85.0
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/google/uuid v1.6.0 // indirect
	go.opentelemetry.io/auto/sdk v1.2.1 // indirect
	go.opentelemetry.io/otel/log v1.47.0 // indirect
	go.opentelemetry.io/otel/metric v1.47.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260928230214-8a89bd6388cc // indirect
)

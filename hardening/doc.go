// Package hardening holds grpctrace's hardening tests, which need real
// processes, real TCP and the OpenTelemetry SDK: faults (a killed server
// or client process, a proxy that cuts or stalls the connection), the load
// soak, and hostile headers sent by a raw HTTP/2 client. The soak and the
// hostile-header tests run on both of grpctrace's paths: OpenTracing,
// through the SDK's OpenTracing bridge (WithTracer), and OpenTelemetry,
// the SDK's tracer provider itself (WithTracerProvider); the fault tests
// on the first. The fault tests build and run cmd/faultpeer; every process
// records its finished spans with internal/spanlog.
package hardening

// Package fleet holds the tests that put grpctrace on one side of an RPC
// and opentracing-contrib/go-grpc (otgrpc) or go-grpc-middleware v1's
// tracing/opentracing on the other, with mocktracer, jaeger-client-go and
// the OpenTelemetry OpenTracing bridge: traces and baggage must cross the
// boundary intact, and handler code written for the peers must keep
// working.
package fleet

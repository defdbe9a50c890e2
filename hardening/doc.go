// Package hardening holds grpctrace's hardening tests, which need real
// processes, real TCP and the OpenTelemetry bridge: faults (a killed server
// or client process, a proxy that cuts or stalls the connection), the load
// soak, and hostile headers sent by a raw HTTP/2 client. The fault tests
// build and run cmd/faultpeer; every process records its finished spans
// with internal/spanlog.
package hardening

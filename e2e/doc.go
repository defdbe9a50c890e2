// Package e2e holds grpctrace's end-to-end tests against a real Jaeger
// (Jaeger v2, the all-in-one binary, built from tools/e2e): run them with
// `make e2e`, which starts Jaeger on 127.0.0.1 with e2e/jaeger.yaml, waits
// until it is healthy, runs `go test` here with the addresses of its
// receivers and query service in the environment, and stops it. Without
// that environment the tests skip.
package e2e

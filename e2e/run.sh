#!/usr/bin/env bash
# Usage: e2e/run.sh JAEGER [go test flags...]   (what `make e2e` runs)
#
# Starts Jaeger, the all-in-one binary at JAEGER, with e2e/jaeger.yaml:
# every receiver and the query service on 127.0.0.1, traces in memory.
# Waits until it is healthy, runs the e2e tests against it, and stops it
# whatever happens: the EXIT trap stops it (SIGTERM, then SIGKILL after
# 10s) when the tests pass, when they fail and when the run is interrupted.
# Jaeger's log is left in bin/jaeger-e2e.log, the tests' in
# bin/e2e-test.log.
#
# The run fails if any test skipped, or if no test ran: the tests skip
# without Jaeger (so that `go test ./...` passes without one), and here a
# skip means a test that checked nothing against the Jaeger it was given.
set -euo pipefail
cd "$(dirname "$0")"
jaeger=${1:?usage: e2e/run.sh JAEGER_BINARY [go test flags...]}
shift
GO=${GO:-go}

host=127.0.0.1
# The ports of e2e/jaeger.yaml: OTLP gRPC and HTTP, Jaeger gRPC and Thrift
# HTTP, query gRPC and HTTP, health check gRPC and HTTP.
ports=(4317 4318 14250 14268 16685 16686 13132 13133)

# http_get PORT PATH prints the raw HTTP/1.0 response to a GET, with no
# tool but bash.
http_get() {
	(
		exec 3<>"/dev/tcp/$host/$1"
		printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$2" "$host" "$1" >&3
		timeout 5 cat <&3
	) 2>/dev/null || true
}

for p in "${ports[@]}"; do
	if (exec 3<>"/dev/tcp/$host/$p") 2>/dev/null; then
		echo "e2e: $host:$p is already in use (a Jaeger left running?): stop it first" >&2
		exit 1
	fi
done

mkdir -p ../bin
log=$(cd ../bin && pwd)/jaeger-e2e.log
"$jaeger" --config jaeger.yaml >"$log" 2>&1 &
pid=$!

stop_jaeger() {
	local status=$?
	if [ "$status" -ne 0 ]; then
		echo "e2e: FAILED; the end of Jaeger's log ($log):" >&2
		tail -n 20 "$log" >&2
	fi
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "e2e: Jaeger still running 10s after SIGTERM: killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
	echo "e2e: Jaeger (pid $pid) stopped"
	exit "$status"
}
trap stop_jaeger EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "e2e: started Jaeger (pid $pid, log $log); waiting until it is healthy"
start=$SECONDS
while :; do
	health=$(http_get 13133 /status)
	query=$(http_get 16686 /api/services)
	if [[ $health == *'"healthy":true'* && $query == "HTTP/1."?" 200 "* ]]; then
		break
	fi
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "e2e: Jaeger exited before it was healthy" >&2
		exit 1
	fi
	if ((SECONDS - start >= 60)); then
		echo "e2e: Jaeger not healthy after 60s" >&2
		exit 1
	fi
	sleep 0.2
done
echo "e2e: Jaeger healthy after $((SECONDS - start))s; query UI and API on http://$host:16686"

export GRPCTRACE_E2E_JAEGER=$host:16686
export GRPCTRACE_E2E_OTLP=$host:4317
export GRPCTRACE_E2E_COLLECTOR=http://$host:14268/api/traces
testlog=$(cd ../bin && pwd)/e2e-test.log
"$GO" test -count=1 -v "$@" ./... 2>&1 | tee "$testlog"
# go test -v reports each test, subtests indented: "--- SKIP: TestName".
if skipped=$(grep -E '^[[:space:]]*--- SKIP: ' "$testlog"); then
	echo "e2e: FAILED: tests skipped with Jaeger running:" >&2
	echo "$skipped" >&2
	exit 1
fi
if ! grep -qE '^--- PASS: ' "$testlog"; then
	echo "e2e: FAILED: no test ran" >&2
	exit 1
fi

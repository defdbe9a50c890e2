# grpctrace — build, test and lint every module of the repository.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go

# Every module but tools/, which only pins the tools below.
MODULES := $(shell find . -name go.mod -not -path './tools/*' -printf '%h\n' | sort)
BIN := $(CURDIR)/bin
STATICCHECK := $(BIN)/staticcheck

.PHONY: test-versions test-newest test-go127 all test lint fmt-check vet staticcheck race bench bench-compare proto proto-check clean demo e2e fuzz fuzz-short soak fuzz-for fleet

all: test

## test: everything CI checks: formatting, vet, staticcheck, the race-enabled tests of every module (the hardening soak's short version, 2000 RPCs, among them), and each fuzz target for FUZZ_SHORT.
test: lint race fuzz-short

## test-versions: the root module's race-enabled tests at both ends of what it supports: with the newest gRPC-Go and OpenTelemetry API (go.mod requires the oldest), and on the newer Go release.
test-versions: test-newest test-go127

## test-newest: the root module's tests with gRPC-Go GRPC_NEWEST and the OpenTelemetry API OTEL_NEWEST (latest), in a temporary copy whose go.mod is raised to them.
GRPC_NEWEST ?= latest
OTEL_NEWEST ?= latest
test-newest:
	src=$$(mktemp -d) && trap 'rm -rf "$$src"' EXIT && \
	git ls-files -z | grep -zv '^benchmarks/\|^e2e/\|^examples/\|^fleet/\|^hardening/\|^tools/' | xargs -0 cp --parents -t "$$src" && \
	cd "$$src" && $(GO) get google.golang.org/grpc@$(GRPC_NEWEST) go.opentelemetry.io/otel@$(OTEL_NEWEST) go.opentelemetry.io/otel/trace@$(OTEL_NEWEST) && $(GO) mod tidy && \
	echo "go test -race with $$($(GO) list -m google.golang.org/grpc go.opentelemetry.io/otel | tr '\n' ' ')" && $(GO) test -race -count=1 ./...

## test-go127: the root module's tests on Go GO_NEWER (go1.27.4), a toolchain the module proxy serves.
GO_NEWER ?= go1.27.4
test-go127:
	GOTOOLCHAIN=$(GO_NEWER) $(GO) version
	GOTOOLCHAIN=$(GO_NEWER) $(GO) vet . && GOTOOLCHAIN=$(GO_NEWER) $(GO) test -race -count=1 ./...

## lint: gofmt, go vet and staticcheck over every module.
lint: fmt-check vet staticcheck

fmt-check:
	@files=$$(gofmt -l $$(find . -name '*.go' -not -path './bin/*')); \
	if [ -n "$$files" ]; then echo "gofmt would change:"; echo "$$files"; exit 1; fi

vet:
	@for m in $(MODULES); do echo "go vet $$m"; (cd $$m && $(GO) vet ./...); done

$(STATICCHECK): tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(STATICCHECK) honnef.co/go/tools/cmd/staticcheck

staticcheck: $(STATICCHECK)
	@for m in $(MODULES); do echo "staticcheck $$m"; (cd $$m && $(STATICCHECK) ./...); done

race:
	@for m in $(MODULES); do echo "go test -race $$m"; (cd $$m && $(GO) test -race -count=1 ./...); done

## fuzz: each fuzz target of the root package for FUZZ_TIME (20s); new failures land in testdata/fuzz/.
## fuzz-short: the same, FUZZ_SHORT (3s) each, as make test runs it.
FUZZ_TIME ?= 20s
FUZZ_SHORT ?= 3s
fuzz:
	@$(MAKE) --no-print-directory fuzz-for FUZZ_FOR=$(FUZZ_TIME)

fuzz-short:
	@$(MAKE) --no-print-directory fuzz-for FUZZ_FOR=$(FUZZ_SHORT)

fuzz-for:
	@for f in $$($(GO) test -list '^Fuzz' . | grep '^Fuzz'); do \
		echo "go test -fuzz $$f -fuzztime $(FUZZ_FOR)"; \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZ_FOR) . 2>&1 | tail -n 3; \
		test "$${PIPESTATUS[0]}" -eq 0; \
	done

## soak: the load soak (hardening/), SOAK_RPCS RPCs (100000, split between the OpenTracing path through the OpenTelemetry bridge and the native OpenTelemetry path) at concurrency 64; SOAK_FLAGS=-race adds the race detector.
SOAK_RPCS ?= 100000
SOAK_FLAGS ?=
soak:
	cd hardening && $(GO) test -count=1 -v -run '^TestSoak$$' -timeout 60m $(SOAK_FLAGS) . -soak.rpcs=$(SOAK_RPCS) | grep -v '^=== RUN'

## demo: the demo (examples/cmd/demo): every RPC shape traced, printed as trees and a waterfall; DEMO_FLAGS='-api opentelemetry' records natively through OpenTelemetry, DEMO_FLAGS='-otlp 127.0.0.1:4317' exports over OTLP too, DEMO_FLAGS=-h lists the flags.
DEMO_FLAGS ?=
demo:
	cd examples && $(GO) run ./cmd/demo $(DEMO_FLAGS)

## e2e: build Jaeger v1.76.0 (tools/e2e; kept in the Go build cache), run it on 127.0.0.1 and the e2e/ tests against it, then stop it.
e2e:
	@echo "e2e: building Jaeger (tools/e2e): several minutes the first time, then from the Go build cache"
	jaeger=$$(cd tools/e2e && $(GO) tool -n jaeger) && GO=$(GO) bash e2e/run.sh "$$jaeger" -timeout 5m

## fleet: the interop tables (fleet/): grpctrace's interceptors and stats handlers, otgrpc and go-grpc-middleware v1 as clients and servers of one another, with mocktracer, jaeger-client-go and the OpenTelemetry bridge, and grpctrace on OpenTelemetry next to otelgrpc (interop and span parity); a cell is ok when the trace and that baggage item crossed intact.
fleet:
	@cd fleet && $(GO) test -count=1 -run '^Test(OTel)?(Interop|Parity)' -v . | sed -nE \
		-e 's/^ +[a-z_]+_test\.go:[0-9]+: ((fleet |parity:).*)/\n\1/p' \
		-e 's/^ +interop_test\.go:[0-9]+: (baggage .*)/\1/p' \
		-e 's/^ +(parity: .*)/\n\1/p' \
		-e 's/^ +(\|.*)/\1/p' \
		-e '/^(--- FAIL|FAIL|ok )/p'

## bench: the root package's benchmarks, untraced baseline next to grpctrace.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 .

## bench-compare: grpctrace next to peer libraries (benchmarks/), in interleaved rounds; writes benchmarks/RESULTS.md (about 16 minutes).
# The library is measured as committed (git archive HEAD), with the working tree's benchmarks/.
BENCHSTAT := $(BIN)/benchstat
BENCH_ROUNDS ?= 6
BENCH_TIME ?= 1s

$(BENCHSTAT): tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(BENCHSTAT) golang.org/x/perf/cmd/benchstat

bench-compare: $(BENCHSTAT)
	commit=$$(git rev-parse HEAD) && src=$$(mktemp -d) && trap 'rm -rf "$$src"' EXIT && \
	git archive "$$commit" | tar -x -C "$$src" && \
	rm -rf "$$src/benchmarks" && cp -R benchmarks "$$src/benchmarks" && \
	(cd "$$src/benchmarks" && $(GO) test -c -o $(BIN)/benchmarks.test . && $(GO) build -o $(BIN)/benchcompare ./cmd/benchcompare) && \
	cd benchmarks && $(BIN)/benchcompare -bin $(BIN)/benchmarks.test -benchstat $(BENCHSTAT) \
		-rounds $(BENCH_ROUNDS) -benchtime $(BENCH_TIME) -commit "$$commit" -out RESULTS.md -raw RESULTS.raw.txt

## proto: regenerate testpb with the pinned protoc-gen-go and protoc-gen-go-grpc (needs protoc: apt-get install protobuf-compiler).
proto:
	bash testpb/gen.sh

## proto-check: fail if the committed generated code differs from a fresh generation.
proto-check: proto
	git diff --exit-code -- testpb

clean:
	rm -rf $(BIN)

#!/usr/bin/env bash
# Regenerates testpb/*.pb.go with the protoc plugins pinned in tools/go.mod
# and Debian's protoc (apt-get install protobuf-compiler). Run from anywhere
# as `make proto`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
plugins="$(mktemp -d)"
trap 'rm -rf "$plugins"' EXIT
(cd "$root/tools" && go build -o "$plugins/" google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc)
cd "$root"
PATH="$plugins:$PATH" protoc \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	testpb/test.proto

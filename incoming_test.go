package grpctrace

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/metadata"
)

func TestIncomingKeyLearnt(t *testing.T) {
	md := metadata.Pairs("k", "v", "uber-trace-id", "x")
	ctx := metadata.NewIncomingContext(context.Background(), md)
	got := incomingMetadata(ctx)
	if diff := cmp.Diff(md, got); diff != "" {
		t.Fatalf("incoming metadata (-want +got):\n%s", diff)
	}
	// Read in place, not copied: the point of learning the key.
	got["k"][0] = "changed"
	if md["k"][0] != "changed" {
		t.Error("incoming metadata was copied; grpc may have changed how it stores metadata")
	}
	if incomingMetadata(context.Background()) != nil {
		t.Error("metadata found in a context without any")
	}
}

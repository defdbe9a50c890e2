package grpctrace

import (
	"context"

	"google.golang.org/grpc/metadata"
)

// incomingKey is the context key under which gRPC stores a server RPC's
// incoming metadata, learnt once by asking metadata.FromIncomingContext to
// read a context that records the key it is asked for.
//
// metadata.FromIncomingContext copies the whole map, one allocation per
// header, on every call: more than everything else grpctrace does per RPC.
// Extraction only reads the headers, so it reads gRPC's own map in place.
// Should a gRPC release store the metadata differently, incomingKey stays
// nil and extraction falls back to the copy (TestIncomingKeyLearnt fails
// loudly first).
var incomingKey = func() any {
	var p keyProbe
	metadata.FromIncomingContext(&p)
	return p.key
}()

type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(key any) any {
	if p.key == nil {
		p.key = key
	}
	return nil
}

// incomingMetadata returns the RPC's incoming metadata, which the caller
// must not modify.
func incomingMetadata(ctx context.Context) metadata.MD {
	if incomingKey != nil {
		if md, ok := ctx.Value(incomingKey).(metadata.MD); ok {
			return md
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	return md
}

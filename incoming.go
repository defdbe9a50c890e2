package grpctrace

import (
	"context"
	"strings"

	"google.golang.org/grpc/metadata"
)

// incomingCarrier reads a server RPC's incoming metadata, as a
// MetadataCarrier would, through the metadata package's own functions and
// their case rules. A tracer that reads every pair (ForeachKey, Keys) gets
// metadata.FromIncomingContext's copy of the map, made once; one that asks
// for the keys it knows (Get, as OpenTelemetry's propagators and the
// OpenTracing bridge do) gets metadata.ValueFromIncomingContext's copy of
// each one's values alone.
type incomingCarrier struct {
	ctx context.Context
	md  metadata.MD // the copy, once made
}

func (c *incomingCarrier) all() MetadataCarrier {
	if c.md == nil {
		c.md, _ = metadata.FromIncomingContext(c.ctx)
	}
	return MetadataCarrier(c.md)
}

// ForeachKey implements opentracing.TextMapReader.
func (c *incomingCarrier) ForeachKey(handler func(key, val string) error) error {
	return c.all().ForeachKey(handler)
}

// Get returns the first value of key, or "" when there is none.
func (c *incomingCarrier) Get(key string) string {
	if c.md != nil {
		return c.all().Get(key)
	}
	key = strings.ToLower(key)
	if key != packedKey {
		if vals := metadata.ValueFromIncomingContext(c.ctx, key); len(vals) > 0 {
			return vals[0]
		}
	}
	return packedValue(metadata.ValueFromIncomingContext(c.ctx, packedKey), key)
}

// Keys returns every key that has a value, packed pairs' keys included.
func (c *incomingCarrier) Keys() []string { return c.all().Keys() }

// Set implements the writing half of OpenTelemetry's TextMapCarrier; a
// server's incoming metadata is never written, so it does nothing.
func (c *incomingCarrier) Set(string, string) {}

// corruption reports whether the packed header holds entries that cannot
// be decoded, which the reading methods skip.
func (c *incomingCarrier) corruption() error {
	if c.md != nil {
		return c.all().corruption()
	}
	return packedCorruption(metadata.ValueFromIncomingContext(c.ctx, packedKey))
}

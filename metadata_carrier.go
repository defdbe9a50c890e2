package grpctrace

import (
	"encoding/binary"
	"errors"
	"strings"

	"google.golang.org/grpc/metadata"
)

// MetadataCarrier carries a span context in gRPC metadata. It is an
// opentracing.TextMapWriter and opentracing.TextMapReader for the TextMap
// and HTTPHeaders formats (grpctrace uses HTTPHeaders, as the other
// OpenTracing integrations of gRPC do), and its Get, Set and Keys methods
// also make it an OpenTelemetry propagation.TextMapCarrier, so OpenTelemetry
// propagators use it directly.
//
// Keys are lowercased, as gRPC requires. Tracers escape what they write for
// HTTPHeaders (mocktracer and jaeger-client-go URL-escape baggage values,
// W3C baggage percent-encodes them), so their pairs are plain headers that
// any library reads. Only a pair that gRPC still cannot carry as a plain
// header (a tracer that writes bytes outside printable ASCII, or a key with
// characters a header name cannot have) is packed, unchanged, into the
// binary header "grpctrace-bin", which gRPC transmits base64-encoded:
// grpctrace unpacks it on the other side, so such pairs round-trip
// losslessly between grpctrace services and never make an RPC fail; other
// libraries ignore that header, and the pair does not reach them.
//
// Set replaces a key's values. Reading yields every value of every key,
// binary and reserved gRPC headers included; tracers ignore what they do not
// recognise.
type MetadataCarrier metadata.MD

// packedKey is the binary header holding the pairs that cannot be plain
// headers. gRPC base64-encodes "-bin" values on the wire and decodes them
// on receipt, so the encoded entries below travel as raw bytes.
const packedKey = "grpctrace-bin"

// Set implements opentracing.TextMapWriter.
func (c MetadataCarrier) Set(key, val string) {
	key = strings.ToLower(key)
	if packed := c[packedKey]; len(packed) > 0 {
		c.dropPacked(key)
	}
	if plainHeader(key, val) {
		c[key] = []string{val}
		return
	}
	if key != packedKey {
		// The key's plain value, if any, is replaced; the packed
		// header itself holds the other packed pairs and stays.
		delete(c, key)
	}
	c[packedKey] = append(c[packedKey], packEntry(key, val))
}

// ForeachKey implements opentracing.TextMapReader. It stops at, and returns,
// the first error handler returns. Packed entries that cannot be decoded are
// skipped, and so are packed entries for a key that also has plain values
// (Set never makes both, so only a foreign writer does): the plain values
// win, whatever the order of the map, and a tracer reads the same span
// context every time.
func (c MetadataCarrier) ForeachKey(handler func(key, val string) error) error {
	for k, vals := range c {
		if k == packedKey {
			for _, v := range vals {
				if key, val, ok := c.packedPair(v); ok {
					if err := handler(key, val); err != nil {
						return err
					}
				}
			}
			continue
		}
		for _, v := range vals {
			if err := handler(k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// Get returns the first value of key, or "" when there is none.
func (c MetadataCarrier) Get(key string) string {
	key = strings.ToLower(key)
	if vals := c[key]; len(vals) > 0 && key != packedKey {
		return vals[0]
	}
	return packedValue(c[packedKey], key)
}

// packedValue returns key's value among packed entries.
func packedValue(packed []string, key string) string {
	for _, v := range packed {
		if k, val, ok := unpackEntry(v); ok && k == key {
			return val
		}
	}
	return ""
}

// Keys returns every key that has a value, packed pairs' keys included.
func (c MetadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k, vals := range c {
		if k == packedKey || len(vals) == 0 {
			continue
		}
		keys = append(keys, k)
	}
	for _, v := range c[packedKey] {
		if k, _, ok := c.packedPair(v); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// packedPair decodes a packed entry; false when it does not decode or its
// key has plain values, which win.
func (c MetadataCarrier) packedPair(e string) (key, val string, ok bool) {
	key, val, ok = unpackEntry(e)
	if ok && key != packedKey && len(c[key]) > 0 {
		return "", "", false
	}
	return key, val, ok
}

var errCorruptPacked = errors.New("grpctrace: undecodable entry in the " + packedKey + " header")

// corruption reports whether the packed header holds entries that cannot
// be decoded, which ForeachKey skips.
func (c MetadataCarrier) corruption() error { return packedCorruption(c[packedKey]) }

func packedCorruption(packed []string) error {
	for _, v := range packed {
		if _, _, ok := unpackEntry(v); !ok {
			return errCorruptPacked
		}
	}
	return nil
}

func (c MetadataCarrier) dropPacked(key string) {
	kept := c[packedKey][:0:0]
	for _, v := range c[packedKey] {
		if k, _, ok := unpackEntry(v); !ok || k != key {
			kept = append(kept, v)
		}
	}
	if len(kept) == 0 {
		delete(c, packedKey)
		return
	}
	c[packedKey] = kept
}

// packEntry encodes a pair as uvarint(len(key)) key value.
func packEntry(key, val string) string {
	var n [binary.MaxVarintLen64]byte
	l := binary.PutUvarint(n[:], uint64(len(key)))
	var b strings.Builder
	b.Grow(l + len(key) + len(val))
	b.Write(n[:l])
	b.WriteString(key)
	b.WriteString(val)
	return b.String()
}

func unpackEntry(e string) (key, val string, ok bool) {
	var n uint64
	for i := 0; i < len(e) && i < binary.MaxVarintLen64; i++ {
		b := e[i]
		n |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			rest := e[i+1:]
			if n > uint64(len(rest)) {
				return "", "", false
			}
			return rest[:n], rest[n:], true
		}
	}
	return "", "", false
}

// plainHeader reports whether gRPC can carry the pair as an ordinary
// header: a valid lowercase name that is neither binary nor reserved by
// gRPC, and a printable ASCII value.
func plainHeader(key, val string) bool {
	if key == "" || strings.HasPrefix(key, "grpc-") || strings.HasSuffix(key, "-bin") {
		return false
	}
	switch key {
	case "content-type", "user-agent", "te":
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	for i := 0; i < len(val); i++ {
		if val[i] < 0x20 || val[i] > 0x7e {
			return false
		}
	}
	return true
}

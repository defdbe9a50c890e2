package grpctrace

import (
	"errors"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/mocktracer"
	"google.golang.org/grpc/metadata"
)

// Compile-time proof of the interfaces the carrier promises. The
// OpenTelemetry propagation.TextMapCarrier is spelled out here so that the
// library does not import OpenTelemetry.
var (
	_ opentracing.TextMapWriter = MetadataCarrier(nil)
	_ opentracing.TextMapReader = MetadataCarrier(nil)
	_ interface {
		Get(string) string
		Set(string, string)
		Keys() []string
	} = MetadataCarrier(nil)
)

func readAll(t *testing.T, c MetadataCarrier) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	if err := c.ForeachKey(func(k, v string) error {
		got[k] = append(got[k], v)
		return nil
	}); err != nil {
		t.Fatalf("ForeachKey: %v", err)
	}
	return got
}

func TestMetadataCarrierRoundTrip(t *testing.T) {
	pairs := map[string]string{
		"uber-trace-id":      "abc:def:0:1",
		"Mixed-Case":         "value",
		"ot-baggage-emoji":   "héllo ✓",
		"ot-baggage-ctl":     "line\nbreak\x00nul",
		"key with spaces":    "v",
		"ключ":               "значение",
		"grpc-trace-bin":     "reserved prefix",
		"custom-bin":         "binary suffix",
		"content-type":       "reserved name",
		"":                   "empty key",
		"empty-value":        "",
		"invalid-utf8-value": "\xff\xfe",
	}
	md := metadata.MD{}
	c := MetadataCarrier(md)
	for k, v := range pairs {
		c.Set(k, v)
	}
	// Only the pairs that are ordinary gRPC headers (see
	// TestMetadataCarrierPlainOrPacked) are left plain, lowercased and
	// unchanged; everything else is packed.
	plain := map[string][]string{}
	for k, vals := range md {
		if k != packedKey {
			plain[k] = vals
		}
	}
	wantPlain := map[string][]string{
		"uber-trace-id": {"abc:def:0:1"},
		"mixed-case":    {"value"},
		"empty-value":   {""},
	}
	if diff := cmp.Diff(wantPlain, plain); diff != "" {
		t.Errorf("plain headers (-want +got):\n%s", diff)
	}
	want := map[string][]string{}
	for k, v := range pairs {
		lk := lower(k)
		want[lk] = []string{v}
	}
	if diff := cmp.Diff(want, readAll(t, c)); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for k, v := range pairs {
		if got := c.Get(k); got != v {
			t.Errorf("Get(%q) = %q, want %q", k, got, v)
		}
	}
	keys := c.Keys()
	sort.Strings(keys)
	var wantKeys []string
	for k := range want {
		wantKeys = append(wantKeys, k)
	}
	sort.Strings(wantKeys)
	if diff := cmp.Diff(wantKeys, keys); diff != "" {
		t.Errorf("Keys (-want +got):\n%s", diff)
	}
	if err := c.corruption(); err != nil {
		t.Errorf("corruption() = %v on a well-formed carrier", err)
	}
}

// TestMetadataCarrierPlainOrPacked sets pairs whose fate the gRPC spec
// (PROTOCOL-HTTP2.md, Custom-Metadata) decides, one per carrier, and checks
// that the carrier keeps the sendable ones as plain headers and packs the
// others. A header name is 1*( 0-9 / a-z / "_" / "-" / "." ), a plain
// (ASCII-Header) value 1*( %x20-%x7E ); names ending in "-bin" are binary
// headers; names starting with "grpc-" are reserved for gRPC, and
// content-type, user-agent and te are gRPC's own call-definition headers.
// Not in the table, as the spec leaves them open: empty values (the
// grammar says 1*, gRPC-Go carries them) and values with leading or
// trailing spaces (which a peer "may" strip).
func TestMetadataCarrierPlainOrPacked(t *testing.T) {
	const printable = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"
	cases := []struct {
		key, val string
		plain    bool
	}{
		{"uber-trace-id", "abc:def:0:1", true},
		{"x_0.9-z", "v", true},
		{"Upper-Case", "v", true}, // lowercased first, as gRPC requires
		{"k", "a" + printable + "z", true},

		{"", "v", false},
		{"key with spaces", "v", false},
		{"a/b", "v", false},
		{"a:b", "v", false},
		{":path", "/x", false},
		{"ключ", "v", false},
		{"k\x00", "v", false},
		{"custom-bin", "v", false},
		{"grpc-trace-bin", "v", false},
		{"grpc-foo", "v", false},
		{"grpc-timeout", "1S", false},
		{"content-type", "application/grpc", false},
		{"user-agent", "v", false},
		{"te", "trailers", false},
		{"k", "héllo", false},
		{"k", "\xff", false},
		{"k", "a\x00b", false},
		{"k", "a\tb", false},
		{"k", "a\nb", false},
		{"k", "a\x1fb", false},
		{"k", "a\x7fb", false},
	}
	for _, tc := range cases {
		md := metadata.MD{}
		MetadataCarrier(md).Set(tc.key, tc.val)
		key := lower(tc.key)
		var want metadata.MD
		if tc.plain {
			want = metadata.MD{key: {tc.val}}
		} else {
			// The packed entry: uvarint(len(key)), a single byte for
			// these short keys, then the key and the value.
			want = metadata.MD{packedKey: {string([]byte{byte(len(key))}) + key + tc.val}}
		}
		if diff := cmp.Diff(want, md); diff != "" {
			t.Errorf("Set(%q, %q), plain %v (-want +got):\n%s", tc.key, tc.val, tc.plain, diff)
		}
	}
}

func lower(s string) string {
	b := []rune(s)
	for i, r := range b {
		if 'A' <= r && r <= 'Z' {
			b[i] = r + 'a' - 'A'
		}
	}
	return string(b)
}

func TestMetadataCarrierSetReplaces(t *testing.T) {
	c := MetadataCarrier(metadata.MD{})
	c.Set("k", "non-ascii é")
	c.Set("K", "ascii")
	if diff := cmp.Diff(map[string][]string{"k": {"ascii"}}, readAll(t, c)); diff != "" {
		t.Errorf("after plain over packed (-want +got):\n%s", diff)
	}
	c.Set("k", "é again")
	if diff := cmp.Diff(map[string][]string{"k": {"é again"}}, readAll(t, c)); diff != "" {
		t.Errorf("after packed over plain (-want +got):\n%s", diff)
	}
}

func TestMetadataCarrierCorruptPacked(t *testing.T) {
	md := metadata.MD{
		"uber-trace-id": {"x"},
		packedKey:       {"\xff\xff\xff", packEntry("good", "é"), "\x05ab"},
	}
	c := MetadataCarrier(md)
	want := map[string][]string{"uber-trace-id": {"x"}, "good": {"é"}}
	if diff := cmp.Diff(want, readAll(t, c)); diff != "" {
		t.Errorf("corrupt entries must be skipped (-want +got):\n%s", diff)
	}
	if err := c.corruption(); err == nil {
		t.Error("corruption() = nil for undecodable entries")
	}
}

func TestMetadataCarrierStopsOnHandlerError(t *testing.T) {
	c := MetadataCarrier(metadata.MD{"a": {"1"}, "b": {"2"}, packedKey: {packEntry("c", "é")}})
	stop := errors.New("stop")
	calls := 0
	err := c.ForeachKey(func(string, string) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("ForeachKey = %v after %d calls, want the handler's error after 1", err, calls)
	}
}

// TestMetadataCarrierWithMockTracer checks that a real propagator's output,
// including baggage gRPC could not send as is, survives the carrier.
func TestMetadataCarrierWithMockTracer(t *testing.T) {
	tracer := mocktracer.New()
	span := tracer.StartSpan("x")
	span.SetBaggageItem("plain", "v")
	span.SetBaggageItem("emoji", "🙂 ünïcode")
	md := metadata.MD{}
	if err := tracer.Inject(span.Context(), opentracing.TextMap, MetadataCarrier(md)); err != nil {
		t.Fatal(err)
	}
	sc, err := tracer.Extract(opentracing.TextMap, MetadataCarrier(md))
	if err != nil {
		t.Fatal(err)
	}
	got := sc.(mocktracer.MockSpanContext)
	want := span.Context().(mocktracer.MockSpanContext)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("span context round trip (-want +got):\n%s", diff)
	}
}

// A foreign writer may send a key both as a plain header and packed; the
// plain values win in every read, whatever the map's order, so that the
// tracer extracts the same span context every time.
func TestMetadataCarrierPlainWinsOverPackedDuplicate(t *testing.T) {
	md := metadata.MD{
		"mockpfx-ids-spanid": {"7"},
		"mockpfx-baggage-k":  {"plain"},
	}
	for _, k := range []string{"mockpfx-ids-spanid", "mockpfx-baggage-k"} {
		md[packedKey] = append(md[packedKey], packEntry(k, "packed-"+k))
	}
	md[packedKey] = append(md[packedKey], packEntry("emoji", "héllo"))
	c := MetadataCarrier(md)
	want := map[string][]string{
		"mockpfx-ids-spanid": {"7"},
		"mockpfx-baggage-k":  {"plain"},
		"emoji":              {"héllo"},
	}
	for i := 0; i < 20; i++ { // map order changes from one range to the next
		if diff := cmp.Diff(want, readAll(t, c)); diff != "" {
			t.Fatalf("ForeachKey (-want +got):\n%s", diff)
		}
	}
	keys := c.Keys()
	sort.Strings(keys)
	if diff := cmp.Diff([]string{"emoji", "mockpfx-baggage-k", "mockpfx-ids-spanid"}, keys); diff != "" {
		t.Errorf("Keys (-want +got):\n%s", diff)
	}
	if got := c.Get("mockpfx-baggage-k"); got != "plain" {
		t.Errorf("Get = %q, want plain", got)
	}
}

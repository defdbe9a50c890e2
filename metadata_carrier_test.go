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
	// Everything left as a plain header must be valid for gRPC: a lowercase
	// name of legal characters, not binary or reserved, with a printable
	// ASCII value.
	for k, vals := range md {
		if k == packedKey {
			continue
		}
		if !plainHeader(k, vals[0]) {
			t.Errorf("header %q=%q cannot be sent by gRPC", k, vals[0])
		}
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

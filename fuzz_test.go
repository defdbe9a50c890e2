package grpctrace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/mocktracer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The fuzz targets below run as ordinary tests over their seed corpus
// (testdata/fuzz/<target>/) in `go test`; `make fuzz-short` and `make fuzz`
// fuzz each for a bounded time.

// fuzzKeys are the keys a fuzzed key can start with (see fuzzPairs), so that
// the fuzzer reaches the headers tracers and grpctrace actually read
// without having to guess them byte by byte.
var fuzzKeys = []string{
	"mockpfx-ids-traceid",
	"mockpfx-ids-spanid",
	"mockpfx-ids-sampled",
	"mockpfx-baggage-",
	packedKey,
	"Mockpfx-Ids-TraceID", // uppercase, as only an in-process caller can send
	"x-bin",
	"grpc-",
}

// fuzzPairs decodes fuzz input into metadata pairs, in order: each pair is
// a key length byte, the key, a value length byte and the value (input cut
// short ends the list). A key whose first byte is below len(fuzzKeys)
// starts with that well-known key. With huge > 0, one more pair repeats
// the last value (or "x") to huge bytes, under the last key.
func fuzzPairs(data []byte, huge uint16) (keys, vals []string) {
	take := func() (string, bool) {
		if len(data) == 0 {
			return "", false
		}
		n := int(data[0])
		data = data[1:]
		n = min(n, len(data))
		s := string(data[:n])
		data = data[n:]
		return s, true
	}
	for {
		k, ok := take()
		if !ok {
			break
		}
		if k != "" && int(k[0]) < len(fuzzKeys) {
			k = fuzzKeys[k[0]] + k[1:]
		}
		v, _ := take()
		keys, vals = append(keys, k), append(vals, v)
	}
	if huge > 0 {
		k, unit := "mockpfx-baggage-huge", "x"
		if len(keys) > 0 {
			k = keys[len(keys)-1]
			if v := vals[len(vals)-1]; v != "" {
				unit = v
			}
		}
		big := strings.Repeat(unit, int(huge)/len(unit)+1)[:huge]
		keys, vals = append(keys, k), append(vals, big)
	}
	return keys, vals
}

// FuzzServerExtract feeds arbitrary incoming metadata (any keys, values and
// multiplicity, uppercase keys, binary and packed headers with undecodable
// content, huge values) to a traced server, through the unary interceptor,
// the stream interceptor or the stats handler, and checks that tracing
// never changes the RPC: the handler runs once and its result is returned
// unchanged; one span finishes, once, with the handler's status; the
// metadata, which grpctrace reads in place, is not modified; an undecodable
// packed header is logged on the span; and a public endpoint neither joins
// the caller's trace nor lets its baggage reach the handler or the span's
// logs.
func FuzzServerExtract(f *testing.F) {
	f.Add([]byte("\x01\x00\x011\x01\x01\x012\x01\x02\x04true"), uint16(0), uint8(0), false)
	f.Add([]byte("\x01\x00\x017\x01\x01\x018\x05\x03role\x05admin"), uint16(0), uint8(1), true)
	f.Add([]byte("\x01\x04\x03\xff\xff\xff"), uint16(40000), uint8(2), false)
	f.Fuzz(func(t *testing.T, data []byte, huge uint16, front uint8, public bool) {
		keys, vals := fuzzPairs(data, huge)
		md := metadata.MD{}
		for i, k := range keys {
			md[k] = append(md[k], vals[i])
		}
		before := copyMD(md)

		tracer := mocktracer.New()
		opts := []Option{WithTracer(tracer)}
		if public {
			opts = append(opts, WithPublicEndpoint())
		}
		var handlerErr error
		if len(data)%2 == 1 {
			handlerErr = status.Error(codes.NotFound, "fuzzed")
		}
		const fullMethod = "/fuzz.Service/Method"
		ctx := metadata.NewIncomingContext(context.Background(), md)

		calls := 0
		var handlerBaggage map[string]string
		handler := func(ctx context.Context) error {
			calls++
			span := opentracing.SpanFromContext(ctx)
			if span == nil {
				t.Fatal("the handler's context carries no span")
			}
			handlerBaggage = map[string]string{}
			span.Context().ForeachBaggageItem(func(k, v string) bool { handlerBaggage[k] = v; return true })
			return handlerErr
		}
		switch front % 3 {
		case 0:
			resp, err := UnaryServerInterceptor(opts...)(ctx, "request", &grpc.UnaryServerInfo{FullMethod: fullMethod},
				func(ctx context.Context, req any) (any, error) {
					if req != "request" {
						t.Errorf("handler got request %v", req)
					}
					return "response", handler(ctx)
				})
			if resp != "response" || err != handlerErr {
				t.Fatalf("interceptor returned %v, %v; the handler returned response, %v", resp, err, handlerErr)
			}
		case 1:
			ss := &fuzzServerStream{ctx: ctx}
			err := StreamServerInterceptor(opts...)(nil, ss, &grpc.StreamServerInfo{FullMethod: fullMethod},
				func(_ any, ss grpc.ServerStream) error { return handler(ss.Context()) })
			if err != handlerErr {
				t.Fatalf("interceptor returned %v; the handler returned %v", err, handlerErr)
			}
		case 2:
			h := NewServerHandler(opts...)
			ctx = h.TagRPC(ctx, &stats.RPCTagInfo{FullMethodName: fullMethod})
			h.HandleRPC(ctx, &stats.Begin{BeginTime: time.Now()})
			err := handler(ctx)
			h.HandleRPC(ctx, &stats.End{Error: err, EndTime: time.Now()})
		}
		if calls != 1 {
			t.Fatalf("handler ran %d times", calls)
		}
		if !reflect.DeepEqual(md, before) {
			t.Fatalf("incoming metadata modified:\nbefore %q\nafter  %q", before, md)
		}

		spans := tracer.FinishedSpans()
		if len(spans) != 1 {
			t.Fatalf("%d spans finished, want 1", len(spans))
		}
		span := spans[0]
		if got, want := span.Tag(tagRPCStatusCode), uint32(status.Code(handlerErr)); got != want {
			t.Errorf("span status %v, want %v", got, want)
		}
		logged := map[string]string{}
		for _, l := range span.Logs() {
			for _, fld := range l.Fields {
				logged[fld.Key] += fld.ValueString
			}
		}
		if corruptPacked(md) && !hasEvent(span, eventExtractFailed) {
			t.Errorf("undecodable %s header not logged; logs %v", packedKey, span.Logs())
		}
		if public {
			if span.ParentID != 0 {
				t.Errorf("public endpoint joined the caller's trace (parent %d)", span.ParentID)
			}
			if len(handlerBaggage) != 0 || len(span.Context().(mocktracer.MockSpanContext).Baggage) != 0 {
				t.Errorf("caller's baggage reached the public endpoint's handler: %q", handlerBaggage)
			}
			// The trace identity is logged, never the baggage. (The
			// extraction error's message is the tracer's own text.)
			for k, v := range logged {
				if k != "message" && (strings.Contains(k, "baggage") || len(v) > 256) {
					t.Errorf("public endpoint logged %q=%.40q (%d bytes): not a trace identity", k, v, len(v))
				}
			}
		} else if span.ParentID != 0 {
			// Joined a trace: the parent is a span the metadata named.
			if !namesSpan(md, span.ParentID) {
				t.Errorf("parent span %d, not named by the metadata %q", span.ParentID, map[string][]string(md))
			}
		}
	})
}

// corruptPacked reports whether md holds a packed-header entry that does
// not decode.
func corruptPacked(md metadata.MD) bool {
	for _, e := range md[packedKey] {
		if _, _, ok := decodePacked(e); !ok {
			return true
		}
	}
	return false
}

func hasEvent(s *mocktracer.MockSpan, name string) bool {
	for _, l := range s.Logs() {
		for _, f := range l.Fields {
			if f.Key == "event" && f.ValueString == name {
				return true
			}
		}
	}
	return false
}

// namesSpan reports whether a pair of the metadata, plain or packed,
// names span id as the mock tracer reads it: key mockpfx-ids-spanid in any
// case, a decimal value.
func namesSpan(md metadata.MD, id int) bool {
	names := func(k, v string) bool {
		n, err := strconv.Atoi(v)
		return err == nil && n == id && strings.ToLower(k) == "mockpfx-ids-spanid"
	}
	for k, vs := range md {
		for _, v := range vs {
			if k == packedKey {
				if pk, pv, ok := decodePacked(v); ok && names(pk, pv) {
					return true
				}
			} else if names(k, v) {
				return true
			}
		}
	}
	return false
}

// decodePacked decodes a packed-header entry by the format's definition (a
// uvarint key length, the key, the value), independently of the library.
func decodePacked(e string) (key, val string, ok bool) {
	n, i := uint64(0), 0
	for ; i < len(e) && i < 10; i++ {
		n |= uint64(e[i]&0x7f) << (7 * i)
		if e[i] < 0x80 {
			rest := e[i+1:]
			if n > uint64(len(rest)) {
				return "", "", false
			}
			return rest[:n], rest[n:], true
		}
	}
	return "", "", false
}

func copyMD(md metadata.MD) metadata.MD {
	out := make(metadata.MD, len(md))
	for k, v := range md {
		out[k] = slices.Clone(v)
	}
	return out
}

type fuzzServerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *fuzzServerStream) Context() context.Context { return s.ctx }

// FuzzCarrierRoundTrip sets arbitrary key/value pairs (non-ASCII, invalid
// UTF-8, uppercase, reserved and binary names, empty keys and values)
// through MetadataCarrier and checks that the metadata it leaves crosses a
// real gRPC connection unchanged (headerEcho), and that reading the
// carrier back gives exactly the pairs set: keys lowercased, the last
// value set for each key, nothing lost, nothing added, by ForeachKey, Get
// and Keys alike.
func FuzzCarrierRoundTrip(f *testing.F) {
	f.Add([]byte("\x05emoji\x07h\xc3\xa9llo\x01\x00\x011"), uint16(0))
	f.Add([]byte("\x0agrpc-trace\x01x\x05X-Bin\x02\xff\xfe"), uint16(0))
	f.Add([]byte("\x08\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87\x00"), uint16(9000))
	echo := newHeaderEcho(f)
	f.Fuzz(func(t *testing.T, data []byte, huge uint16) {
		keys, vals := fuzzPairs(data, huge)
		want := map[string]string{}
		md := metadata.MD{}
		c := MetadataCarrier(md)
		for i, k := range keys {
			c.Set(k, vals[i])
			want[strings.ToLower(k)] = vals[i]
		}
		// What the carrier left must cross a real gRPC connection as it
		// is: every header, plain or the packed one, arrives with exactly
		// its values.
		arrived, err := echo.send(md)
		if err != nil {
			t.Fatalf("gRPC could not send the carrier's metadata %q: %v", map[string][]string(md), err)
		}
		for k, vs := range md {
			if !slices.Equal(arrived[k], vs) {
				t.Errorf("header %q sent as %q arrived as %q", k, vs, arrived[k])
			}
		}
		got := map[string]string{}
		err = c.ForeachKey(func(k, v string) error {
			if _, dup := got[k]; dup {
				return errors.New("key " + strconv.Quote(k) + " read twice")
			}
			got[k] = v
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, want) {
			t.Fatalf("read back %q, set %q", got, want)
		}
		for k, v := range want {
			if g := c.Get(k); g != v {
				t.Errorf("Get(%q) = %q, want %q", k, g, v)
			}
		}
		gotKeys := c.Keys()
		slices.Sort(gotKeys)
		if wantKeys := slices.Sorted(maps.Keys(want)); !slices.Equal(gotKeys, wantKeys) {
			t.Errorf("Keys() = %q, want %q", gotKeys, wantKeys)
		}
	})
}

// headerEcho is the oracle for what gRPC can send: a gRPC server over
// bufconn that reports the metadata each RPC arrived with. A pair is
// sendable when an RPC carrying it succeeds and the server receives it
// unchanged; gRPC's own validation (internal to grpc-go, not importable)
// and the HTTP/2 transport decide, not a copy of the rules.
type headerEcho struct {
	conn    *grpc.ClientConn
	arrived chan metadata.MD
}

// newHeaderEcho starts the server and connects to it; cleanup stops both.
func newHeaderEcho(tb testing.TB) *headerEcho {
	tb.Helper()
	h := &headerEcho{arrived: make(chan metadata.MD, 1)}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		h.arrived <- md
		return nil
	}))
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///headerecho",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	h.conn = conn
	tb.Cleanup(func() {
		conn.Close()
		srv.Stop()
		<-served
	})
	return h
}

// send makes an RPC with md as its outgoing metadata and returns the
// metadata the server received.
func (h *headerEcho) send(md metadata.MD) (metadata.MD, error) {
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), md), 10*time.Second)
	defer cancel()
	s, err := h.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/headerecho.Echo/Echo")
	if err != nil {
		return nil, err
	}
	if err := s.CloseSend(); err != nil {
		return nil, err
	}
	if err := s.RecvMsg(new(emptypb.Empty)); err != io.EOF {
		return nil, fmt.Errorf("RPC ended with %v, not io.EOF", err)
	}
	// The handler reported the metadata before returning, so before the
	// RPC ended.
	return <-h.arrived, nil
}

// TestCarrierSetPackedKeyKeepsOtherPairs: setting the key "grpctrace-bin"
// itself, which is not a plain header and so is packed, must keep the pairs
// packed before it. metadata_carrier.go's set used to delete c[key] before packing
// a pair, and for this one key c[key] is the packed header itself, holding
// every other packed pair: they were lost, and the carrier's documented
// lossless round trip broke. Found by FuzzCarrierRoundTrip.
func TestCarrierSetPackedKeyKeepsOtherPairs(t *testing.T) {
	c := MetadataCarrier(metadata.MD{})
	c.Set("emoji", "héllo") // not printable ASCII: packed
	c.Set(packedKey, "x")
	if got := c.Get("emoji"); got != "héllo" {
		t.Errorf(`after Set(%q, "x"), Get("emoji") = %q, want "héllo"; carrier: %q`, packedKey, got, map[string][]string(c))
	}
	if got := c.Get(packedKey); got != "x" {
		t.Errorf("Get(%q) = %q, want x", packedKey, got)
	}
}

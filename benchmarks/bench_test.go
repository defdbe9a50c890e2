package benchmarks

import (
	"context"
	"testing"

	"github.com/c2e00e20/grpctrace/testpb"
)

// forEach runs bench for the base and for every contender with every
// tracer, as impl=NAME/tracer=NAME sub-benchmarks. The base gets a nil
// tracer.
func forEach(b *testing.B, bench func(b *testing.B, c Contender, t *Tracer)) {
	for _, c := range Contenders {
		b.Run("impl="+c.Name, func(b *testing.B) {
			if c.options == nil {
				b.Run("tracer="+NoTracer, func(b *testing.B) { bench(b, c, nil) })
				return
			}
			for _, name := range TracerNames {
				b.Run("tracer="+name, func(b *testing.B) { bench(b, c, NewTracer(name)) })
			}
		})
	}
}

func connect(b *testing.B, c Contender, t *Tracer) *Conn {
	b.Helper()
	conn, err := Connect(c, t)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(conn.Close)
	return conn
}

// reset returns what resets t's memory, a no-op for the base.
func reset(t *Tracer) func() {
	if t == nil {
		return func() {}
	}
	return t.Reset
}

// BenchmarkUnary measures one unary round trip.
func BenchmarkUnary(b *testing.B) {
	forEach(b, func(b *testing.B, c Contender, t *Tracer) {
		conn := connect(b, c, t)
		ctx := context.Background()
		if err := conn.Unary(ctx); err != nil { // connect before timing
			b.Fatal(err)
		}
		reset := reset(t)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := conn.Unary(ctx); err != nil {
				b.Fatal(err)
			}
			if i%ResetEvery == 0 {
				reset()
			}
		}
	})
}

// BenchmarkBidiMessage measures one message each way on a bidi stream that
// stays open: the cost per stream message.
func BenchmarkBidiMessage(b *testing.B) {
	forEach(b, func(b *testing.B, c Contender, t *Tracer) {
		conn := connect(b, c, t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s, err := conn.Client.Bidi(ctx)
		if err != nil {
			b.Fatal(err)
		}
		resp := new(testpb.Response)
		if err := PingPong(s, resp); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := PingPong(s, resp); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if err := CloseStream(s, resp); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkBidiStream measures opening a bidi stream, one message each way,
// and closing it.
func BenchmarkBidiStream(b *testing.B) {
	forEach(b, func(b *testing.B, c Contender, t *Tracer) {
		conn := connect(b, c, t)
		ctx := context.Background()
		resp := new(testpb.Response)
		if err := conn.BidiStream(ctx, resp); err != nil {
			b.Fatal(err)
		}
		reset := reset(t)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := conn.BidiStream(ctx, resp); err != nil {
				b.Fatal(err)
			}
			if i%ResetEvery == 0 {
				reset()
			}
		}
	})
}

// BenchmarkFloor measures the tracer alone doing what one traced RPC
// needs, through each API (see Floor).
func BenchmarkFloor(b *testing.B) {
	for _, f := range FloorNames {
		b.Run("impl="+f, func(b *testing.B) {
			for _, name := range TracerNames {
				b.Run("tracer="+name, func(b *testing.B) {
					t := NewTracer(name)
					rpc := Floor(f, t)
					rpc()
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						rpc()
						if i%ResetEvery == 0 {
							t.Reset()
						}
					}
				})
			}
		})
	}
}

package hardening

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// proxy is a loopback TCP proxy that can cut every connection it carries,
// or stall them: hold whatever arrives, forwarding nothing, until unstalled.
type proxy struct {
	t        *testing.T
	lis      net.Listener
	upstream string
	done     chan struct{} // closed when the proxy closes

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	gate  chan struct{} // closed while traffic flows
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, upstream string) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, lis: lis, upstream: upstream, done: make(chan struct{}), conns: map[net.Conn]struct{}{}, gate: make(chan struct{})}
	close(p.gate)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.lis.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		down, err := p.lis.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
		if err != nil {
			down.Close()
			continue
		}
		if !p.track(down, up) {
			return
		}
		p.wg.Add(2)
		go p.pipe(down, up)
		go p.pipe(up, down)
	}
}

// track registers a connection pair, unless the proxy is closing.
func (p *proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		for _, c := range conns {
			c.Close()
		}
		return false
	default:
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies src to dst, each chunk waiting for the gate to be open, and
// closes both when either side ends.
func (p *proxy) pipe(src, dst net.Conn) {
	defer p.wg.Done()
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.gate
			p.mu.Unlock()
			select {
			case <-gate:
			case <-p.done:
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut closes every connection the proxy carries and returns when.
func (p *proxy) cut() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	at := time.Now()
	for c := range p.conns {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			p.t.Errorf("cutting: %v", err)
		}
		delete(p.conns, c)
	}
	return at
}

// stall stops forwarding: what arrives is held.
func (p *proxy) stall() {
	p.mu.Lock()
	p.gate = make(chan struct{})
	p.mu.Unlock()
}

// unstall forwards again, what was held first.
func (p *proxy) unstall() {
	p.mu.Lock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
	p.mu.Unlock()
}

func (p *proxy) close() {
	p.mu.Lock()
	close(p.done)
	p.mu.Unlock()
	p.lis.Close()
	p.cut()
	p.wg.Wait()
}

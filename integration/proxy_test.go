package integration

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxyFaults is what a chaosProxy does to the bytes it forwards. Each rate
// is a probability drawn per chunk read from either side (a chunk is what
// one Read returned: a few HTTP/2 frames), except RefuseRate, drawn per
// accepted connection. The zero value forwards everything untouched.
type proxyFaults struct {
	// RefuseRate closes an accepted connection at once, before dialing the
	// server: the client's handshake fails.
	RefuseRate float64
	// ResetRate resets both sides of the connection (RST, SO_LINGER 0)
	// instead of forwarding the chunk: every call on it fails at once.
	ResetRate float64
	// StallRate holds the chunk, and so everything behind it in that
	// direction, for a uniform time in [0, StallMax] before forwarding it.
	StallRate float64
	StallMax  time.Duration
	// SlowRate delays the chunk by a uniform time in [0, SlowMax]: a slow,
	// jittery link.
	SlowRate float64
	SlowMax  time.Duration
}

// proxyStats counts what a chaosProxy did.
type proxyStats struct {
	Conns, Refused, Resets, Stalls, Slows, Chunks int64
}

// faults returns the number of faults injected.
func (s proxyStats) faults() int64 { return s.Refused + s.Resets + s.Stalls + s.Slows }

// chaosProxy is an in-process TCP proxy between a client and a server on
// loopback that resets, stalls and slows connections at random, from a
// seeded source so that a failing run can be replayed (the interleaving of
// goroutines still varies). Faults can be changed while it runs.
//
// Close stops it and waits for every goroutine it started.
type chaosProxy struct {
	ln     net.Listener
	target string
	done   chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	rng    *rand.Rand
	faults proxyFaults
	pairs  map[*proxyPair]struct{}
	closed bool

	conns, refused, resets, stalls, slows, chunks atomic.Int64
}

// startProxy starts a proxy on a free loopback port that forwards to
// target, and closes it when t ends.
func startProxy(t testing.TB, target string, seed uint64, f proxyFaults) *chaosProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: listen: %v", err)
	}
	p := &chaosProxy{
		ln:     ln,
		target: target,
		done:   make(chan struct{}),
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		faults: f,
		pairs:  map[*proxyPair]struct{}{},
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the address clients dial.
func (p *chaosProxy) Addr() string { return p.ln.Addr().String() }

// Set replaces the faults; chunks read afterwards see the new ones.
func (p *chaosProxy) Set(f proxyFaults) {
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
}

// Stats returns what the proxy did so far.
func (p *chaosProxy) Stats() proxyStats {
	return proxyStats{
		Conns: p.conns.Load(), Refused: p.refused.Load(), Resets: p.resets.Load(),
		Stalls: p.stalls.Load(), Slows: p.slows.Load(), Chunks: p.chunks.Load(),
	}
}

// Close stops accepting, resets every open connection and waits for every
// goroutine of the proxy to end. Closing twice does nothing.
func (p *chaosProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	pairs := make([]*proxyPair, 0, len(p.pairs))
	for pp := range p.pairs {
		pairs = append(pairs, pp)
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	for _, pp := range pairs {
		pp.reset()
	}
	p.wg.Wait()
}

func (p *chaosProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.conns.Add(1)
		p.mu.Lock()
		refuse := p.rng.Float64() < p.faults.RefuseRate
		p.mu.Unlock()
		if refuse {
			p.refused.Add(1)
			abort(c)
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve dials the target for client connection c and pumps both ways.
func (p *chaosProxy) serve(c net.Conn) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: time.Second}
	s, err := d.Dial("tcp", p.target)
	if err != nil {
		// The server is down: the client sees its connection reset, as it
		// would see a refused one without the proxy.
		abort(c)
		return
	}
	pp := &proxyPair{client: c, server: s, closed: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		pp.reset()
		return
	}
	p.pairs[pp] = struct{}{}
	p.mu.Unlock()
	p.wg.Add(2)
	go p.pump(pp, s, c)
	go p.pump(pp, c, s)
	<-pp.closed
	p.mu.Lock()
	delete(p.pairs, pp)
	p.mu.Unlock()
}

// action is what the proxy does with one chunk.
type action uint8

const (
	forward action = iota
	reset
	stall
	slow
)

// decide draws the fate of one chunk.
func (p *chaosProxy) decide() (action, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.faults
	r := p.rng.Float64()
	switch {
	case r < f.ResetRate:
		return reset, 0
	case r < f.ResetRate+f.StallRate:
		return stall, randDuration(p.rng, f.StallMax)
	case r < f.ResetRate+f.StallRate+f.SlowRate:
		return slow, randDuration(p.rng, f.SlowMax)
	}
	return forward, 0
}

func randDuration(r *rand.Rand, max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return time.Duration(r.Int64N(int64(max) + 1))
}

// pump copies src to dst chunk by chunk, applying faults, until either side
// fails or the pair is reset.
func (p *chaosProxy) pump(pp *proxyPair, dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.chunks.Add(1)
			act, d := p.decide()
			switch act {
			case reset:
				p.resets.Add(1)
				pp.reset()
				return
			case stall:
				p.stalls.Add(1)
			case slow:
				p.slows.Add(1)
			}
			if d > 0 && !p.wait(pp, d) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				pp.reset()
				return
			}
		}
		if err != nil {
			// EOF or a reset from one side: end the other side too, as a
			// middlebox that lost track of the connection would.
			pp.reset()
			return
		}
	}
}

// wait waits d, and reports false if the pair or the proxy closed first.
func (p *chaosProxy) wait(pp *proxyPair, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-pp.closed:
		return false
	case <-p.done:
		return false
	}
}

// proxyPair is one proxied connection: the client's side and the server's.
type proxyPair struct {
	client, server net.Conn
	once           sync.Once
	closed         chan struct{}
}

// reset closes both sides with an RST; later calls do nothing.
func (pp *proxyPair) reset() {
	pp.once.Do(func() {
		abort(pp.client)
		abort(pp.server)
		close(pp.closed)
	})
}

// abort closes c with an RST rather than a FIN where it can.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

package breaker

import (
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is the injected clock of the tests; safe for concurrent use.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Duration      { return time.Duration(c.t.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }
func newFake(cfg Config) (*Breaker, *fakeClock) {
	c := &fakeClock{}
	return newBreaker(cfg, c.now), c
}

// events records state changes; the breaker delivers them one at a time.
type events struct{ list []StateChange }

func (e *events) listen(ev StateChange) { e.list = append(e.list, ev) }

// mustAllow returns a permit or fails the test.
func mustAllow(t *testing.T, b *Breaker) Permit {
	t.Helper()
	p, err := b.Allow()
	if err != nil {
		t.Fatalf("Allow: %v, want a permit (state %v)", err, b.State())
	}
	return p
}

// mustReject fails the test unless Allow rejects with an *OpenError.
func mustReject(t *testing.T, b *Breaker) *OpenError {
	t.Helper()
	p, err := b.Allow()
	if err == nil {
		p.Done(Ignored)
		t.Fatalf("Allow granted a permit in state %v, want a rejection", b.State())
	}
	oe, ok := err.(*OpenError)
	if !ok {
		t.Fatalf("Allow error %T %v, want *OpenError", err, err)
	}
	return oe
}

// run records n calls of outcome o.
func run(t *testing.T, b *Breaker, o Outcome, n int) {
	t.Helper()
	for range n {
		mustAllow(t, b).Done(o)
	}
}

package throttle

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

func (c *fakeClock) now() int64              { return c.t.Load() }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }
func (c *fakeClock) set(d time.Duration)     { c.t.Store(int64(d)) }

// newFake returns a throttle on a fake clock whose draws come from draw
// (nil: the real source).
func newFake(cfg Config, draw func() float64) (*Throttle, *fakeClock) {
	c := &fakeClock{}
	t := newThrottle(cfg, c.now)
	if draw != nil {
		t.rnd = draw
	}
	return t, c
}

// record records n requests with outcome o, as if the throttle had let
// them through.
func record(tb testing.TB, t *Throttle, o Outcome, n int) {
	tb.Helper()
	for range n {
		Permit{t: t, epoch: t.epoch(t.now())}.Done(o)
	}
}

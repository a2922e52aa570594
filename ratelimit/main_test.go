package ratelimit

import (
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is the injected clock of the tests: the time since the
// limiter's epoch. It is safe for concurrent use.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Duration      { return time.Duration(c.t.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }
func (c *fakeClock) set(d time.Duration)     { c.t.Store(int64(d)) }

func newFake(cfg Config) (*Limiter, *fakeClock) {
	c := &fakeClock{}
	return newLimiter(cfg, c.now), c
}

func newFakeKeyed(cfg KeyedConfig) (*Keyed, *fakeClock) {
	c := &fakeClock{}
	return newKeyed(cfg, c.now), c
}

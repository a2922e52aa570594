package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Many goroutines share one limiter over a simulated run: the clock
// advances in steps between rounds, and in each round every goroutine asks
// until it is refused. The number of permits granted is exact: the burst
// in the first round, then one step's worth per round, however the
// compare-and-swap loops interleave.
func TestConcurrentExactCount(t *testing.T) {
	const (
		goroutines = 16
		rounds     = 200
		burst      = 50
		perRound   = 7 // permits a step is worth
	)
	l, c := newFake(Config{Rate: 1000, Burst: burst})
	var granted atomic.Int64
	for r := range rounds {
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for l.Allow() {
					granted.Add(1)
				}
			})
		}
		wg.Wait()
		want := int64(burst + r*perRound)
		if got := granted.Load(); got != want {
			t.Fatalf("after round %d: %d granted, want %d", r, got, want)
		}
		c.advance(perRound * time.Millisecond)
	}
	m := l.Metrics()
	if m.Admitted != uint64(granted.Load()) || m.Limited < goroutines*rounds {
		t.Fatalf("Metrics = %+v, granted %d", m, granted.Load())
	}
}

// The same for a Keyed: goroutines share a few keys, and each key is
// granted exactly its own share.
func TestKeyedConcurrentExactCount(t *testing.T) {
	const keys, goroutines, rounds = 4, 12, 100
	k, c := newFakeKeyed(KeyedConfig{Rate: 100, Burst: 10})
	var granted [keys]atomic.Int64
	names := []string{"k0", "k1", "k2", "k3"}
	for r := range rounds {
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				key := g % keys
				for k.Allow(names[key]) {
					granted[key].Add(1)
				}
			})
		}
		wg.Wait()
		for i := range keys {
			if got, want := granted[i].Load(), int64(10+r*3); got != want {
				t.Fatalf("round %d key %d: %d granted, want %d", r, i, got, want)
			}
		}
		c.advance(30 * time.Millisecond)
	}
}

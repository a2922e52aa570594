package bulkhead

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"go.uber.org/goleak"
)

// TestStress runs hundreds of goroutines through one bulkhead on the real
// scheduler, with random cancellations, deadlines, maximum waits, double
// releases and every way in, and checks with an atomic high-water mark that
// no more than the limit ever run at once, that the counters add up, and
// that nothing is left in flight, queued or running afterwards.
func TestStress(t *testing.T) {
	const (
		limit      = 8
		goroutines = 300
		rounds     = 40
	)
	b := NewFromConfig(Config{Limit: limit, Queue: 256, MaxWait: 5 * time.Millisecond})

	var (
		cur, high, over atomic.Int64
		admitted        atomic.Uint64
		full            atomic.Uint64
		ctxErrs         atomic.Uint64
	)
	work := func() {
		n := cur.Add(1)
		for {
			h := high.Load()
			if n <= h || high.CompareAndSwap(h, n) {
				break
			}
		}
		if n > limit {
			over.Add(1)
		}
		for range 3 {
			runtime.Gosched()
		}
		cur.Add(-1)
	}
	count := func(err error) {
		switch {
		case err == nil:
			admitted.Add(1)
		case errors.Is(err, resilience.ErrBulkheadFull):
			full.Add(1)
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			ctxErrs.Add(1)
		default:
			t.Errorf("unexpected error %v", err)
		}
	}

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 42))
			for range rounds {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				switch rng.IntN(4) {
				case 0:
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(2000))*time.Microsecond)
				case 1:
					// Cancelled from another goroutine at a random moment.
					ctx, cancel = context.WithCancel(ctx)
					spins := rng.IntN(5)
					wg.Go(func() {
						for range spins {
							runtime.Gosched()
						}
						cancel()
					})
				}
				switch op := rng.IntN(10); {
				case op < 5:
					p, err := b.Acquire(ctx)
					count(err)
					if err == nil {
						work()
						p.Release()
						p.Release() // harmless
					}
				case op < 9:
					err := b.Execute(ctx, func(context.Context) error {
						work()
						return nil
					})
					count(err)
				default:
					if p, ok := b.TryAcquire(); ok {
						admitted.Add(1)
						work()
						p.ReleaseWith(OutcomeDropped)
					} else {
						full.Add(1)
					}
				}
				cancel()
			}
		})
	}
	wg.Wait()

	if n := over.Load(); n > 0 {
		t.Errorf("%d admissions ran above the limit of %d; high-water mark %d", n, limit, high.Load())
	}
	if h := high.Load(); h > limit || h == 0 {
		t.Errorf("high-water mark = %d, want within [1, %d]", h, limit)
	}
	m := b.Metrics()
	if m.InFlight != 0 || m.Waiting != 0 || m.Limit != limit {
		t.Errorf("Metrics() after the storm = %+v, want nothing in flight or waiting", m)
	}
	if m.Admitted != admitted.Load() || m.Rejected != full.Load() || m.Canceled > ctxErrs.Load() {
		t.Errorf("Metrics() = %+v, callers saw %d admitted, %d rejected, %d context errors",
			m, admitted.Load(), full.Load(), ctxErrs.Load())
	}
	t.Logf("admitted %d, rejected %d, context errors %d (%d while waiting), high-water mark %d",
		m.Admitted, m.Rejected, ctxErrs.Load(), m.Canceled, high.Load())
	goleak.VerifyNone(t)
}

// TestStressAdaptive is TestStress's little sibling with an adaptive limit:
// the limit moves, so the check is against MaxLimit, and the bulkhead must
// still drain to zero.
func TestStressAdaptive(t *testing.T) {
	const maxLimit = 6
	b := NewFromConfig(Config{Limit: 3, Queue: 16, Strategy: NewAIMD(AIMDConfig{MaxLimit: maxLimit})})
	var cur, over atomic.Int64
	var wg sync.WaitGroup
	for g := range 200 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 20 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(200))*time.Microsecond)
				p, err := b.Acquire(ctx)
				cancel()
				if err != nil {
					continue
				}
				if cur.Add(1) > maxLimit {
					over.Add(1)
				}
				runtime.Gosched()
				cur.Add(-1)
				p.ReleaseWith(Outcome(rng.IntN(3)))
			}
		})
	}
	wg.Wait()
	if n := over.Load(); n > 0 {
		t.Errorf("%d admissions above MaxLimit %d", n, maxLimit)
	}
	if m := b.Metrics(); m.InFlight != 0 || m.Waiting != 0 || m.Limit < 1 || m.Limit > maxLimit {
		t.Errorf("Metrics() = %+v, want nothing in flight or waiting and a limit in [1, %d]", m, maxLimit)
	}
	goleak.VerifyNone(t)
}

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
)

// highWater tracks how many executions run at once and the most ever seen.
type highWater struct {
	cur, high, over atomic.Int64
	limit           int64
}

func (h *highWater) enter() {
	n := h.cur.Add(1)
	for {
		m := h.high.Load()
		if n <= m || h.high.CompareAndSwap(m, n) {
			break
		}
	}
	if n > h.limit {
		h.over.Add(1)
	}
}

func (h *highWater) leave() { h.cur.Add(-1) }

// TestStressFixedLimitFastPath drives a fixed-limit bulkhead without a
// queue, whose calls take the lock-free path, from many goroutines, with
// more permits held at once than it has fast release guards so that the
// permits under the mutex mix in, and with double releases. It checks that
// the limit is never exceeded and that the counters are exact at the end.
func TestStressFixedLimitFastPath(t *testing.T) {
	for _, limit := range []int{1, 3, fastSlots + 16} {
		var rejectedSeen atomic.Uint64
		b := NewFromConfig(Config{Limit: limit, OnReject: func(r Rejection) {
			rejectedSeen.Add(1)
			if r.Reason != RejectedFull || r.Waiting != 0 || r.Limit != limit {
				t.Errorf("rejection %+v, want full with nothing waiting and the limit %d", r, limit)
			}
		}})
		h := &highWater{limit: int64(limit)}
		var admitted, rejected atomic.Uint64
		var wg sync.WaitGroup
		for g := range 4 * limit {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 11))
				for range 300 {
					var p Permit
					var ok bool
					if rng.IntN(2) == 0 {
						p, ok = b.TryAcquire()
					} else {
						var err error
						p, err = b.Acquire(context.Background())
						if ok = err == nil; !ok && !errors.Is(err, resilience.ErrBulkheadFull) {
							t.Errorf("Acquire: %v", err)
						}
					}
					if !ok {
						rejected.Add(1)
						runtime.Gosched()
						continue
					}
					admitted.Add(1)
					h.enter()
					runtime.Gosched()
					h.leave()
					p.Release()
					if rng.IntN(4) == 0 {
						p.Release() // harmless, even when another permit holds the guard now
					}
				}
			})
		}
		wg.Wait()
		if n := h.over.Load(); n > 0 {
			t.Errorf("limit %d: %d admissions ran above the limit; high-water mark %d", limit, n, h.high.Load())
		}
		m := b.Metrics()
		if m.InFlight != 0 || m.Waiting != 0 || m.Limit != limit || m.Admitted != admitted.Load() ||
			m.Rejected != rejected.Load() || m.Rejected != rejectedSeen.Load() || m.Canceled != 0 {
			t.Errorf("limit %d: Metrics() = %+v; callers saw %d admitted, %d rejected (%d reported)",
				limit, m, admitted.Load(), rejected.Load(), rejectedSeen.Load())
		}
		// Every guard and slot is free again: limit permits can be held.
		var held []Permit
		for range limit {
			p, ok := b.TryAcquire()
			if !ok {
				t.Fatalf("limit %d: only %d permits after the storm", limit, len(held))
			}
			held = append(held, p)
		}
		if _, ok := b.TryAcquire(); ok {
			t.Fatalf("limit %d: a permit beyond the limit after the storm", limit)
		}
		for _, p := range held {
			p.Release()
		}
	}
}

// TestNoLostWakeUp queues many callers on a small bulkhead with no bound on
// the wait other than a generous deadline: a release that missed a queued
// caller would leave it waiting until the deadline. Every caller must get
// in, and the counters must be exact at the end.
func TestNoLostWakeUp(t *testing.T) {
	const limit, goroutines, rounds = 2, 40, 100
	b := NewFromConfig(Config{Limit: limit, Queue: goroutines})
	h := &highWater{limit: limit}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var failed, tryRejected atomic.Int64
	for g := range goroutines {
		wg.Go(func() {
			for i := range rounds {
				var p Permit
				var err error
				if (g+i)%3 == 0 {
					var ok bool
					if p, ok = b.TryAcquire(); !ok {
						tryRejected.Add(1)
						p, err = b.Acquire(ctx)
					}
				} else {
					p, err = b.Acquire(ctx)
				}
				if err != nil {
					failed.Add(1)
					t.Errorf("Acquire: %v", err)
					return
				}
				h.enter()
				runtime.Gosched()
				h.leave()
				p.Release()
			}
		})
	}
	wg.Wait()
	if n := h.over.Load(); n > 0 {
		t.Errorf("%d admissions above the limit", n)
	}
	m := b.Metrics()
	want := uint64(goroutines*rounds) - uint64(failed.Load())
	if m.InFlight != 0 || m.Waiting != 0 || m.Admitted != want || m.Canceled != 0 || m.Rejected != uint64(tryRejected.Load()) {
		t.Errorf("Metrics() = %+v, want %d admitted, %d rejected (by TryAcquire), nothing in flight, waiting or canceled",
			m, want, tryRejected.Load())
	}
}

// TestFastPathDoesNotOvertakeWaiter holds the only slot, queues a waiter,
// and releases the slot while another goroutine keeps trying to take it
// through the lock-free path: the slot must go to the waiter, every time.
func TestFastPathDoesNotOvertakeWaiter(t *testing.T) {
	const runs = 200
	b := NewFromConfig(Config{Limit: 1, Queue: 1})
	for run := range runs {
		holder, ok := b.TryAcquire()
		if !ok {
			t.Fatalf("run %d: the slot is not free", run)
		}
		got := make(chan Permit)
		go func() {
			p, err := b.Acquire(context.Background())
			if err != nil {
				t.Errorf("run %d: waiter: %v", run, err)
			}
			got <- p
		}()
		waitFor(t, func() bool { return b.Metrics().Waiting == 1 })

		stop := make(chan struct{})
		var overtook atomic.Int64
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if p, ok := b.TryAcquire(); ok {
					overtook.Add(1)
					p.Release()
				}
				if p, err := b.Acquire(context.Background()); err == nil {
					// Queued behind the waiter, or took the slot before
					// it: either way after the waiter was served.
					p.Release()
				}
			}
		})
		runtime.Gosched()
		holder.Release()
		waiter := <-got
		// The waiter holds the slot: nobody else got in meanwhile.
		if n := overtook.Load(); n != 0 {
			t.Fatalf("run %d: TryAcquire took the slot %d times while a caller was queued for it", run, n)
		}
		close(stop)
		waiter.Release()
		wg.Wait()
	}
	if m := b.Metrics(); m.InFlight != 0 || m.Waiting != 0 {
		t.Errorf("Metrics() = %+v, want nothing in flight or waiting", m)
	}
}

// TestDoubleReleaseAcrossGuards releases every permit twice, the second
// time after its guard or slot has gone to a new permit: the new permit
// keeps its slot.
func TestDoubleReleaseAcrossGuards(t *testing.T) {
	b := New(fastSlots + 4) // the last permits use the mutex's slots
	var old []Permit
	for range fastSlots + 4 {
		p, ok := b.TryAcquire()
		if !ok {
			t.Fatal("rejected within the limit")
		}
		old = append(old, p)
	}
	if _, ok := b.TryAcquire(); ok {
		t.Fatal("admitted beyond the limit")
	}
	var fresh []Permit
	for _, p := range old {
		p.Release()
		q, ok := b.TryAcquire()
		if !ok {
			t.Fatal("a released slot was not free")
		}
		fresh = append(fresh, q)
	}
	for _, p := range old {
		p.Release() // stale: must not free the new holder's slot
	}
	if m := b.Metrics(); m.InFlight != fastSlots+4 {
		t.Fatalf("InFlight = %d after stale releases, want %d", m.InFlight, fastSlots+4)
	}
	if _, ok := b.TryAcquire(); ok {
		t.Fatal("a stale release freed a slot")
	}
	for _, p := range fresh {
		p.Release()
	}
	if m := b.Metrics(); m.InFlight != 0 || m.Admitted != 2*(fastSlots+4) {
		t.Fatalf("Metrics() = %+v, want nothing in flight and %d admitted", m, 2*(fastSlots+4))
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// bound.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		runtime.Gosched()
	}
}

// TestMutexSlotsAllocateNothing checks the permits beyond the fast guards:
// once their slots exist, taking and releasing them allocates nothing.
func TestMutexSlotsAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	b := New(fastSlots + 8)
	for range fastSlots {
		if _, ok := b.TryAcquire(); !ok {
			t.Fatal("rejected within the limit")
		}
	}
	warm, _ := b.TryAcquire()
	warm.Release()
	if n := testing.AllocsPerRun(1000, func() {
		p, _ := b.Acquire(context.Background())
		p.Release()
		p.Release()
	}); n != 0 {
		t.Errorf("Acquire+Release beyond the fast guards: %v allocations per run, want 0", n)
	}
}

// FuzzFixedLimitPermits runs a sequence of acquisitions, releases and
// stale releases on a fixed-limit bulkhead, across the fast guards and the
// mutex's slots, and checks it against a model after every step: a
// permit is granted exactly when fewer than the limit are held, a stale
// release changes nothing, and the metrics count exactly.
func FuzzFixedLimitPermits(f *testing.F) {
	f.Add(uint8(2), []byte{0, 0, 0, 1, 2, 0, 1, 1})
	f.Add(uint8(fastSlots+3), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 9, 2, 2, 0, 0, 0})
	f.Add(uint8(0), []byte{0, 3})
	f.Fuzz(func(t *testing.T, limit uint8, ops []byte) {
		b := New(int(limit))
		var held, stale []Permit
		var admitted, rejected uint64
		for i, op := range ops {
			switch op % 4 {
			case 0, 3:
				var p Permit
				var ok bool
				if op%4 == 0 {
					p, ok = b.TryAcquire()
				} else {
					var err error
					p, err = b.Acquire(context.Background())
					ok = err == nil
				}
				if want := len(held) < int(limit); ok != want {
					t.Fatalf("step %d: granted %v with %d of %d held", i, ok, len(held), limit)
				}
				if ok {
					held = append(held, p)
					admitted++
				} else {
					rejected++
				}
			case 1:
				if len(held) == 0 {
					continue
				}
				k := int(op/4) % len(held)
				held[k].Release()
				stale = append(stale, held[k])
				held = append(held[:k], held[k+1:]...)
			case 2:
				if len(stale) == 0 {
					continue
				}
				stale[int(op/4)%len(stale)].ReleaseWith(OutcomeDropped)
			}
			m := b.Metrics()
			if m.InFlight != len(held) || m.Admitted != admitted || m.Rejected != rejected || m.Waiting != 0 {
				t.Fatalf("step %d: Metrics() = %+v, want %d in flight, %d admitted, %d rejected",
					i, m, len(held), admitted, rejected)
			}
		}
	})
}

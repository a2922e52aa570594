package bulkhead

import (
	"context"
	"sync"
	"testing"
)

// queueWaiter queues w on b as acquireSlow does, without a goroutine, so
// that a test decides when the waiter takes or gives up its grant.
func queueWaiter(b *Bulkhead) *waiter {
	w := &waiter{ready: make(chan struct{})}
	b.mu.Lock()
	b.state.Add(queuedOne)
	b.waiters.pushBack(w)
	b.mu.Unlock()
	return w
}

// TestAdmittedNeverDecreases hands a slot to a waiter that then gives up
// before taking it: Admitted, a counter that only grows, must not count
// the grant and then take it back, and counts the permit once a waiter
// takes one.
func TestAdmittedNeverDecreases(t *testing.T) {
	for _, limit := range []int{1, fastSlots + 1} {
		b := New(limit)
		b.maxQueue = 1
		var held []Permit
		for range limit {
			p, ok := b.TryAcquire()
			if !ok {
				t.Fatalf("limit %d: rejected within the limit", limit)
			}
			held = append(held, p)
		}
		w := queueWaiter(b)
		last := held[len(held)-1]
		held = held[:len(held)-1]
		last.Release() // hands the slot to w
		<-w.ready
		before := b.Metrics()
		b.abandon(w) // w gave up before it took the permit
		after := b.Metrics()
		if after.Admitted < before.Admitted {
			t.Errorf("limit %d: Admitted went from %d to %d", limit, before.Admitted, after.Admitted)
		}
		if want := uint64(limit); after.Admitted != want || after.InFlight != limit-1 || after.Canceled != 1 {
			t.Errorf("limit %d: Metrics() = %+v, want %d admitted, %d in flight, 1 canceled", limit, after, want, limit-1)
		}

		// A waiter that takes its permit counts when it does.
		got := make(chan Permit)
		p, _ := b.TryAcquire()
		go func() {
			q, err := b.Acquire(context.Background())
			if err != nil {
				t.Errorf("limit %d: Acquire: %v", limit, err)
			}
			got <- q
		}()
		waitFor(t, func() bool { return b.Metrics().Waiting == 1 })
		p.Release()
		q := <-got
		if m := b.Metrics(); m.Admitted != uint64(limit)+2 {
			t.Errorf("limit %d: Admitted = %d after a waiter took its permit, want %d", limit, m.Admitted, limit+2)
		}
		q.Release()
		for _, p := range held {
			p.Release()
		}
	}
}

// TestAdmittedMonotonicUnderLoad reads Metrics while waiters are granted
// slots and give them up: Admitted must never go down from one snapshot to
// the next.
func TestAdmittedMonotonicUnderLoad(t *testing.T) {
	b := NewFromConfig(Config{Limit: 2, Queue: 64})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithCancel(context.Background())
				if (g+i)%2 == 0 {
					cancel() // may race with the grant
				}
				if p, err := b.Acquire(ctx); err == nil {
					p.Release()
				}
				cancel()
			}
		})
	}
	var last uint64
	for range 20000 {
		m := b.Metrics()
		if m.Admitted < last {
			t.Errorf("Admitted went from %d to %d", last, m.Admitted)
			break
		}
		last = m.Admitted
	}
	close(stop)
	wg.Wait()
}

// TestStaleFastSnapshotDoesNotOvertake replays the interleaving in which a
// lock-free acquirer read the state (a free slot, nobody queued), stalled,
// and tries its compare-and-swap after another caller took the slot, a
// third caller queued and the slot was given back: the swap must fail,
// since the slot belongs to the queued caller, even though the in-flight
// count is back to the value the acquirer read.
func TestStaleFastSnapshotDoesNotOvertake(t *testing.T) {
	b := NewFromConfig(Config{Limit: 1, Queue: 1})
	stale := b.state.Load() // the stalled acquirer's reading

	holder, ok := b.TryAcquire()
	if !ok {
		t.Fatal("the slot is not free")
	}
	got := make(chan Permit)
	go func() {
		p, err := b.Acquire(context.Background())
		if err != nil {
			t.Errorf("waiter: %v", err)
		}
		got <- p
	}()
	waitFor(t, func() bool { return b.Metrics().Waiting == 1 })

	// Hold the mutex so that the release lowers the count but cannot hand
	// the slot over yet.
	b.mu.Lock()
	released := make(chan struct{})
	go func() {
		holder.Release()
		close(released)
	}()
	waitFor(t, func() bool { return inFlightOf(b.state.Load()) == 0 })
	r := b.casFast(stale)
	b.mu.Unlock()
	<-released
	if r == fastAdmitted {
		t.Fatal("a stale lock-free acquisition took the slot of a queued caller")
	}
	p := <-got
	if m := b.Metrics(); m.InFlight != 1 || m.Waiting != 0 || m.Admitted != 2 {
		t.Errorf("Metrics() = %+v, want the waiter in flight and 2 admitted", m)
	}
	p.Release()
}

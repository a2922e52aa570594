package retry

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRatioBudgetSliceReplacementRace deposits, from many goroutines at
// once, in a slice of time and in the slice one TTL later, which takes over
// the same slot: a deposit for the old slice that races with the start of
// the new one must be dropped, never counted in the new slice, and no
// deposit for the new slice may be lost. At quiescence the balance is
// exactly the new slice's deposits.
func TestRatioBudgetSliceReplacementRace(t *testing.T) {
	const goroutines, calls = 8, 500
	for run := range 20 {
		for _, inside := range []bool{false, true} {
			clock := newManualNow()
			b := newRatioBudget(10*time.Second, 0, 1, inside, clock.now) // a retry per call
			start := clock.now()
			old, later := start.Add(500*time.Millisecond), start.Add(10*time.Second+500*time.Millisecond)
			var newer atomic.Int64
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					for i := range calls {
						if (g+i)%2 == 0 {
							b.RecordAt(1, Success, old)
						} else {
							b.RecordAt(1, Success, later)
							newer.Add(1)
						}
					}
				})
			}
			wg.Wait()
			clock.advance(later.Sub(start)) // the old slice has left the window
			if got, want := b.Available(), int(newer.Load()); got != want {
				t.Fatalf("run %d, floor inside %v: Available = %d, want the %d deposits of the new slice", run, inside, got, want)
			}
			if got := grants(b, int(newer.Load())+5); got != int(newer.Load()) {
				t.Fatalf("run %d, floor inside %v: %d retries granted, want %d", run, inside, got, newer.Load())
			}
		}
	}
}

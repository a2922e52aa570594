package breaker

import (
	"sync"
	"sync/atomic"
	"time"
)

// window is the sliding window of one closed period of a breaker. add
// records one counted call (ignored calls never reach it) and returns the
// window's counts including it; counts returns them without recording.
// Both are safe for concurrent use.
type window interface {
	add(failed, slow bool, now time.Duration) (calls, failures, slows int64)
	counts(now time.Duration) (calls, failures, slows int64)
}

// Bits of a count-window slot.
const (
	slotCall uint32 = 1 << iota
	slotFailure
	slotSlow
)

// countWindow holds the last len(slots) calls in a ring.
//
// Concurrency: a writer takes a ring index with one atomic add, swaps its
// call into the slot, and then moves the failure and slow counters by the
// difference between its call and the one it evicted. The counters are thus
// always the sum of the slots' contents once every writer finished; while
// writers are between their swap and their counter update, a reader can see
// them off by at most the number of such writers, which counts() clamps to
// [0, calls]. Sequential use is exact. Two writers whose indices are a full
// ring apart may swap in the opposite order, leaving the older call in the
// slot; the counters still match the slots.
type countWindow struct {
	slots    []atomic.Uint32
	next     atomic.Uint64 // number of calls recorded so far
	failures atomic.Int64
	slows    atomic.Int64
}

func newCountWindow(size int) *countWindow {
	return &countWindow{slots: make([]atomic.Uint32, size)}
}

func (w *countWindow) add(failed, slow bool, _ time.Duration) (calls, failures, slows int64) {
	v := slotCall
	if failed {
		v |= slotFailure
	}
	if slow {
		v |= slotSlow
	}
	i := w.next.Add(1) - 1
	old := w.slots[i%uint64(len(w.slots))].Swap(v)
	if d := bitDiff(v, old, slotFailure); d != 0 {
		w.failures.Add(d)
	}
	if d := bitDiff(v, old, slotSlow); d != 0 {
		w.slows.Add(d)
	}
	return w.load(i + 1)
}

func (w *countWindow) counts(time.Duration) (calls, failures, slows int64) {
	return w.load(w.next.Load())
}

func (w *countWindow) load(recorded uint64) (calls, failures, slows int64) {
	calls = int64(min(recorded, uint64(len(w.slots))))
	return calls, clamp(w.failures.Load(), calls), clamp(w.slows.Load(), calls)
}

// bitDiff is +1 when bit is set in v only, -1 when it is set in old only.
func bitDiff(v, old, bit uint32) int64 {
	return int64(v&bit)/int64(bit) - int64(old&bit)/int64(bit)
}

func clamp(v, hi int64) int64 {
	return max(0, min(v, hi))
}

// timeWindow holds the calls of the last len(buckets) bucket durations.
// Time is split into epochs of one bucket duration; epoch e lives in bucket
// e mod len(buckets), and the window holds the epochs (e-len(buckets), e]
// for the current epoch e.
//
// Concurrency: a writer whose bucket still belongs to an older epoch rolls
// it over under mu (once per bucket duration, the only lock on the closed
// path of a time window): it zeroes the counters and only then publishes
// the new epoch, so a writer that sees the new epoch adds to zeroed
// counters. Writers that see their epoch add with atomics and take no
// lock. A writer that read the epoch and then stalled for a whole period
// could add to the bucket's next epoch; that is one late call, counted as
// recent. A reader sums the buckets whose epoch is in the window; a bucket
// rolled over during the sum is read as old or new, both of which were
// true a moment ago.
//
// A reading ahead of the clock (a caller's time for Permit.DoneAt taken
// from the future) must not move a bucket into an epoch the clock has not
// reached: the bucket would hold that epoch, and lose the calls of the
// epochs that share it, until the clock got there. A rollover, rare
// enough to afford it, therefore reads the clock, and files such a call
// under the current epoch.
type timeWindow struct {
	bucketDur time.Duration
	buckets   []bucket
	clock     func() time.Duration // the breaker's clock; nil: trust every reading
	mu        sync.Mutex           // serializes rollovers
}

type bucket struct {
	epoch    atomic.Int64 // -1 until first used
	calls    atomic.Int64
	failures atomic.Int64
	slows    atomic.Int64
}

func newTimeWindow(bucketDur time.Duration, n int, clock func() time.Duration) *timeWindow {
	w := &timeWindow{bucketDur: bucketDur, buckets: make([]bucket, n), clock: clock}
	for i := range w.buckets {
		w.buckets[i].epoch.Store(-1)
	}
	return w
}

// bucketIndex returns the epoch that now falls in and its bucket's index.
// A negative now counts as 0; bucketDur and n must be positive.
func bucketIndex(now, bucketDur time.Duration, n int) (epoch int64, idx int) {
	if now < 0 {
		now = 0
	}
	epoch = int64(now / bucketDur)
	return epoch, int(epoch % int64(n))
}

// inWindow reports whether epoch belongs to the window of n buckets that
// ends with the current epoch cur.
func inWindow(epoch, cur int64, n int) bool {
	return epoch <= cur && epoch > cur-int64(n)
}

func (w *timeWindow) add(failed, slow bool, now time.Duration) (calls, failures, slows int64) {
	e, i := bucketIndex(now, w.bucketDur, len(w.buckets))
	b := &w.buckets[i]
	if b.epoch.Load() < e {
		e = w.roll(e)
		b = &w.buckets[e%int64(len(w.buckets))]
	}
	b.calls.Add(1)
	if failed {
		b.failures.Add(1)
	}
	if slow {
		b.slows.Add(1)
	}
	return w.sum(e)
}

// roll moves the bucket of epoch e to e, unless it is there already or
// e lies ahead of the clock: then it moves the bucket of the clock's epoch.
// It returns the epoch it moved a bucket to.
func (w *timeWindow) roll(e int64) int64 {
	w.mu.Lock()
	if w.clock != nil {
		if cur, _ := bucketIndex(w.clock(), w.bucketDur, len(w.buckets)); e > cur {
			e = cur
		}
	}
	b := &w.buckets[e%int64(len(w.buckets))]
	// Another writer may have rolled it while we waited; epochs only move
	// forward, so a writer with an older clock reading adds to the newer
	// epoch rather than wiping it.
	if b.epoch.Load() < e {
		b.calls.Store(0)
		b.failures.Store(0)
		b.slows.Store(0)
		b.epoch.Store(e) // published after the zeroing: see the type's comment
	}
	w.mu.Unlock()
	return e
}

func (w *timeWindow) counts(now time.Duration) (calls, failures, slows int64) {
	e, _ := bucketIndex(now, w.bucketDur, len(w.buckets))
	return w.sum(e)
}

func (w *timeWindow) sum(cur int64) (calls, failures, slows int64) {
	for i := range w.buckets {
		b := &w.buckets[i]
		if !inWindow(b.epoch.Load(), cur, len(w.buckets)) {
			continue
		}
		calls += b.calls.Load()
		failures += b.failures.Load()
		slows += b.slows.Load()
	}
	return calls, clamp(failures, calls), clamp(slows, calls)
}

// exceeds reports whether count is at least ratePercent percent of calls.
// A ratePercent of zero never exceeds.
func exceeds(count, calls int64, ratePercent float64) bool {
	return ratePercent > 0 && calls > 0 && float64(count)*100 >= ratePercent*float64(calls)
}

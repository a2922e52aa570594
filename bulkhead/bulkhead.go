package bulkhead

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/internal/stackhash"
)

// Bulkhead bounds the number of executions that run at once.
//
// It admits up to its limit of concurrent holders of a [Permit]. A caller
// that finds every slot taken waits in a FIFO queue if [Config].Queue left
// room in it, and is otherwise rejected at once with
// [resilience.ErrBulkheadFull]. With a [Config].Strategy the limit adapts.
//
// Most callers should use [Bulkhead.Execute]. [Bulkhead.Acquire] and its
// non-blocking twin [Bulkhead.TryAcquire] suit work that does not fit in one
// function call.
//
// A Bulkhead is safe for concurrent use. With a fixed limit, permits are
// taken and released without a lock while nobody is queued (see the
// package documentation). Create it with [NewFromConfig], or
// with the shorthand [New]; the zero value is a bulkhead with a limit of 0
// that rejects every call.
type Bulkhead struct {
	// Settings, fixed by NewFromConfig.
	maxQueue int
	maxWait  time.Duration
	strategy Strategy
	classify func(error) Outcome
	onReject func(Rejection)
	onLimit  func(oldLimit, newLimit int)
	now      func() time.Time // nil only in the zero Bulkhead, which has no strategy

	// The words every acquisition and release touches, on a cache line of
	// their own. With a fixed limit, acquisitions and releases are atomic
	// operations on them while nobody queues (see acquireFast); the mutex
	// is taken to queue, to hand slots to waiters, with a strategy, and
	// when more permits are held than fast has entries.
	//
	// state holds the permits held in its low 32 bits and, above them,
	// the callers queued or deciding to queue, whose presence closes the
	// fast path. One word, so that a compare-and-swap that takes a slot
	// also checks that nobody queued since it read the word, and a release
	// learns from the same atomic operation whether to hand the slot over.
	_     [64]byte
	state atomic.Uint64
	limit atomic.Int64 // written under mu
	_     [64 - 16]byte

	// fast holds the release guards of permits of a fixed limit: entry i
	// is a generation whose lowest bit says that a permit holds it. A
	// release counts only if it moves the entry from the permit's odd
	// generation to the next even one, so a second release of the same
	// permit does nothing, without a lock or an allocation. Entry i has
	// been claimed (w+1)/2 times, w its value: the guards count the
	// admissions they serve, so that admitting costs no extra shared
	// write.
	fast [fastSlots]atomic.Uint64

	rejected atomic.Uint64
	canceled atomic.Uint64

	mu      sync.Mutex
	waiters waitList
	// Admitted counts the permits handed to callers: the claims of the
	// fast guards, plus slotAdmits, less the permits granted to waiters
	// that have not taken them, or gave up before they did (unclaimed). A
	// grant and its unclaimed count change together under mu, and Metrics
	// reads them under mu, so Admitted grows only when a caller gets its
	// permit.
	slotAdmits uint64
	unclaimed  uint64
	// slots holds one entry per permit that does not use fast (with a
	// strategy, or when fast is full) and is or was held; free lists the
	// entries no permit holds. Such a permit names its slot and the slot's
	// generation, which the release bumps: that makes a second release of
	// the same permit a no-op without allocating anything per permit.
	slots []slot
	free  []int32
}

// fastSlots is the number of release guards a Bulkhead keeps for permits
// taken without the mutex: permits beyond it use the mutex.
const fastSlots = 32

// The fields of Bulkhead.state.
const (
	queuedOne   = 1 << 32                // one queued caller
	maxInFlight = 1<<32 - 1              // the most permits the low bits count
	minusOne    = ^uint64(0)             // added, takes one permit off
	minusQueued = ^uint64(queuedOne - 1) // added, takes one queued caller off
)

// inFlightOf returns the permits held in a Bulkhead.state word.
func inFlightOf(s uint64) int64 { return int64(uint32(s)) }

// slot is the bookkeeping of one held permit that does not use a fast
// guard.
type slot struct {
	gen      uint64
	start    time.Time // admission time; set only when a strategy needs it
	inFlight int       // permits held when this one was admitted, itself included
}

// Permit is the right to run one execution in a [Bulkhead], handed out by
// [Bulkhead.Acquire] and [Bulkhead.TryAcquire]. Its holder must release it
// exactly once when the execution ends; further releases are harmless no-ops.
//
// The method value p.Release is the release function: pass it wherever a
// func() is expected, as in defer p.Release(). (Storing a method value in a
// variable allocates; calling p.Release directly does not.)
//
// A Permit is a small value: copy it freely. Its methods are safe for
// concurrent use. The zero Permit holds nothing and its methods do nothing.
type Permit struct {
	b   *Bulkhead
	idx int32  // >= 0: an entry of b.fast; < 0: the entry ^idx of b.slots
	gen uint64 // the entry's generation while this permit holds it
}

// Release gives the permit back, reporting a successful execution to the
// bulkhead's [Strategy], if any: its latency is the time since admission.
// It is the same as p.ReleaseWith(OutcomeSuccess). Only the first release of
// a permit counts.
func (p Permit) Release() { p.ReleaseWith(OutcomeSuccess) }

// ReleaseWith gives the permit back and reports how the execution ended to
// the bulkhead's [Strategy], if any. Only the first release of a permit
// counts; later ones do nothing. When the release frees a slot that a waiter
// is queued for, the first waiter gets it.
func (p Permit) ReleaseWith(o Outcome) {
	if p.b != nil {
		p.b.release(p, o)
	}
}

// Outcome is how an execution ended, as reported to a [Strategy] when its
// [Permit] is released.
type Outcome uint8

const (
	// OutcomeSuccess is an execution that completed, with or without an
	// application error: its latency is a valid sample of the service's
	// speed.
	OutcomeSuccess Outcome = iota
	// OutcomeDropped is an execution that failed in a way that signals
	// overload: it timed out, or the service it called shed it. Strategies
	// lower their limit on drops.
	OutcomeDropped
	// OutcomeIgnored is an execution that tells nothing about the service,
	// such as one the caller cancelled: it frees its slot and feeds no
	// sample to the strategy.
	OutcomeIgnored
)

// String returns "success", "dropped" or "ignored".
func (o Outcome) String() string {
	switch o {
	case OutcomeSuccess:
		return "success"
	case OutcomeDropped:
		return "dropped"
	case OutcomeIgnored:
		return "ignored"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// OutcomeOf is the classification [Bulkhead.Execute] applies to its
// function's error unless [Config].Classify replaces it:
//   - nil is [OutcomeSuccess];
//   - an error matching [context.Canceled] is [OutcomeIgnored]: the caller
//     gave up, the service did nothing wrong;
//   - an error matching [context.DeadlineExceeded] (a
//     *[resilience.TimeoutError] does) or [resilience.ErrBulkheadFull] is
//     [OutcomeDropped];
//   - any other error is [OutcomeSuccess]: the service answered, and how long
//     it took is a valid sample.
//
// It is safe for concurrent use.
func OutcomeOf(err error) Outcome {
	switch {
	case err == nil:
		return OutcomeSuccess
	case errors.Is(err, context.Canceled):
		return OutcomeIgnored
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, resilience.ErrBulkheadFull):
		return OutcomeDropped
	}
	return OutcomeSuccess
}

// Acquire waits for a permit and returns it; the caller must release it.
//
// When a slot is free and nobody is queued, Acquire returns at once. When
// every slot is taken, it returns [resilience.ErrBulkheadFull] at once if
// the wait queue ([Config].Queue) is full (by default it has no room), and
// otherwise waits in FIFO order. A waiter that has waited [Config].MaxWait
// without getting a slot gets [resilience.ErrBulkheadFull].
//
// If ctx is done before the call or while it waits, Acquire returns
// ctx.Err() and leaves the bulkhead unchanged: a slot that was handed to the
// waiter at the moment it gave up goes on to the next waiter. A done ctx wins
// even over a free slot.
//
// Rejections are counted and reported to [Config].OnReject; cancellations
// are counted as canceled. Acquire allocates nothing unless it has to wait,
// and takes no lock when the limit is fixed, nobody is queued and fewer
// than 32 permits are held.
func (b *Bulkhead) Acquire(ctx context.Context) (Permit, error) {
	done := ctx.Done()
	if done != nil {
		select {
		case <-done:
			return Permit{}, ctx.Err()
		default:
		}
	}
	if b.strategy == nil {
		switch p, r := b.acquireFast(); r {
		case fastAdmitted:
			return p, nil
		case fastFull:
			if b.maxQueue == 0 {
				b.rejectFast()
				return Permit{}, resilience.ErrBulkheadFull
			}
		}
	}
	return b.acquireSlow(ctx, done)
}

// fastResult is what acquireFast found.
type fastResult uint8

const (
	fastAdmitted fastResult = iota // a permit was taken
	fastFull                       // every slot is taken and nobody queues
	fastQueued                     // somebody queues: the caller must take the mutex
	fastRetry                      // the state changed meanwhile: read it again
)

// acquireFast takes a slot of a fixed limit without the mutex while nobody
// queues: a compare-and-swap on the state word.
//
// It never overtakes a queued caller. A caller that queues (acquireSlow)
// counts itself in the state word before it looks for a free slot under
// the mutex, and it stays counted until it leaves the queue, so a swap
// from a word that showed nobody queued fails once anybody has queued. A
// releaser learns from its own atomic add whether anybody is queued, so
// that either it sees the queued caller and hands the slot over under the
// mutex, or the queued caller sees the free slot.
func (b *Bulkhead) acquireFast() (Permit, fastResult) {
	for {
		switch r := b.casFast(b.state.Load()); r {
		case fastAdmitted:
			return b.fixedPermit(), r
		case fastFull, fastQueued:
			return Permit{}, r
		}
	}
}

// casFast tries to take a slot by a compare-and-swap from s, a reading of
// the state word; fastRetry means that the word had changed since.
func (b *Bulkhead) casFast(s uint64) fastResult {
	switch {
	case s >= queuedOne:
		return fastQueued
	case int64(s) >= min(b.limit.Load(), maxInFlight):
		return fastFull
	case b.state.CompareAndSwap(s, s+1):
		return fastAdmitted
	}
	return fastRetry
}

// rejectFast counts and reports a rejection found by acquireFast, without
// the mutex: nobody was queued.
func (b *Bulkhead) rejectFast() {
	b.rejected.Add(1)
	if b.onReject != nil {
		b.onReject(Rejection{Reason: RejectedFull, Limit: int(b.limit.Load()), InFlight: int(inFlightOf(b.state.Load()))})
	}
}

// acquireSlow is Acquire under the mutex: with a strategy, or when the
// caller may have to queue.
func (b *Bulkhead) acquireSlow(ctx context.Context, done <-chan struct{}) (Permit, error) {
	b.mu.Lock()
	select {
	case <-done:
		// ctx became done before we got the lock: that happened before the
		// acquisition, so it fails even if a slot is free.
		b.mu.Unlock()
		return Permit{}, ctx.Err()
	default:
	}
	// Count ourselves as queued before reading the in-flight count, which
	// closes the fast path and makes releasers take the mutex (see
	// acquireFast).
	b.state.Add(queuedOne)
	if b.waiters.empty() && b.incLocked() {
		b.state.Add(minusQueued)
		p := b.admitLocked()
		b.mu.Unlock()
		return p, nil
	}
	if b.waiters.n >= b.maxQueue {
		b.state.Add(minusQueued)
		r := b.rejectLocked(RejectedFull, 0)
		b.mu.Unlock()
		b.notifyReject(r)
		return Permit{}, resilience.ErrBulkheadFull
	}
	w := &waiter{ready: make(chan struct{})}
	b.waiters.pushBack(w)
	b.mu.Unlock()

	var expired <-chan time.Time
	if b.maxWait > 0 {
		t := time.NewTimer(b.maxWait)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-w.ready:
		// Granted. Check that ctx is not done as well: select picks among
		// ready cases at random, and a done ctx must win.
		select {
		case <-done:
			b.abandon(w)
			return Permit{}, ctx.Err()
		default:
		}
		b.mu.Lock()
		b.unclaimed--
		b.mu.Unlock()
		return w.permit, nil
	case <-done:
		b.abandon(w)
		return Permit{}, ctx.Err()
	case <-expired:
		b.mu.Lock()
		select {
		case <-w.ready:
			// A slot came at the same moment the wait ran out: the caller
			// still wants it, so take it.
			b.unclaimed--
			b.mu.Unlock()
			return w.permit, nil
		default:
		}
		b.waiters.remove(w)
		b.state.Add(minusQueued)
		r := b.rejectLocked(RejectedMaxWait, b.maxWait)
		b.mu.Unlock()
		b.notifyReject(r)
		return Permit{}, resilience.ErrBulkheadFull
	}
}

// incLocked takes a slot if the limit allows it: a compare-and-swap on the
// state word, which acquireFast may change at the same time. b.mu must be
// held.
func (b *Bulkhead) incLocked() bool {
	for {
		s := b.state.Load()
		if inFlightOf(s) >= min(b.limit.Load(), maxInFlight) {
			return false
		}
		if b.state.CompareAndSwap(s, s+1) {
			return true
		}
	}
}

// abandon withdraws a waiter whose ctx is done. If the waiter was granted a
// slot meanwhile (its ready channel is closed), the slot goes back as though
// it had never been taken, which hands it to the next waiter.
func (b *Bulkhead) abandon(w *waiter) {
	b.canceled.Add(1)
	b.mu.Lock()
	select {
	case <-w.ready:
		// Granted but never taken: it stays out of Admitted.
		b.releaseLocked(w.permit, OutcomeIgnored)
	default:
		b.waiters.remove(w)
		b.state.Add(minusQueued)
	}
	b.mu.Unlock()
}

// TryAcquire is the non-blocking twin of [Bulkhead.Acquire]: it returns a
// permit and true when a slot is free and nobody is queued, and otherwise
// the zero Permit and false, counting and reporting the rejection as
// [RejectedFull]. It never waits and never allocates.
func (b *Bulkhead) TryAcquire() (Permit, bool) {
	if b.strategy == nil {
		switch p, r := b.acquireFast(); r {
		case fastAdmitted:
			return p, true
		case fastFull:
			b.rejectFast()
			return Permit{}, false
		}
	}
	b.mu.Lock()
	if b.waiters.empty() && b.incLocked() {
		p := b.admitLocked()
		b.mu.Unlock()
		return p, true
	}
	r := b.rejectLocked(RejectedFull, 0)
	b.mu.Unlock()
	b.notifyReject(r)
	return Permit{}, false
}

// Execute runs fn once it holds a permit and returns fn's error, or the
// error of [Bulkhead.Acquire] without running fn: [resilience.ErrBulkheadFull]
// when rejected, ctx.Err() when ctx is done first.
//
// fn gets ctx unchanged. The permit is released when fn returns, with the
// outcome the classifier ([Config].Classify, by default [OutcomeOf]) gives
// fn's error. If fn panics, the permit is released as [OutcomeIgnored] and
// the panic goes on. Execute allocates nothing unless it has to wait.
func (b *Bulkhead) Execute(ctx context.Context, fn func(ctx context.Context) error) error {
	p, err := b.Acquire(ctx)
	if err != nil {
		return err
	}
	o := OutcomeIgnored // stays so only if fn panics
	defer func() { p.ReleaseWith(o) }()
	err = fn(ctx)
	o = b.classify(err)
	return err
}

// Metrics is a snapshot of a [Bulkhead]'s state and counters. The counters
// only grow, for the life of the bulkhead.
type Metrics struct {
	// Limit is the current limit on executions at once.
	Limit int
	// InFlight is the number of permits held. It may exceed Limit for a
	// while after an adaptive strategy lowered the limit.
	InFlight int
	// Waiting is the number of callers queued for a slot.
	Waiting int
	// Admitted counts the permits handed to callers.
	Admitted uint64
	// Rejected counts the calls rejected with [resilience.ErrBulkheadFull]
	// or by [Bulkhead.TryAcquire].
	Rejected uint64
	// Canceled counts the callers whose ctx was done while they waited.
	Canceled uint64
}

// Metrics returns a snapshot of the bulkhead's state. Its fields are read
// one after another while calls may proceed without the lock, so under
// load they may be a moment apart from each other; when no call is in
// progress they are exact. It is safe for concurrent use and allocates
// nothing.
func (b *Bulkhead) Metrics() Metrics {
	b.mu.Lock()
	waiting := b.waiters.n
	admitted := b.slotAdmits - b.unclaimed
	for i := range b.fast {
		admitted += (b.fast[i].Load() + 1) / 2
	}
	b.mu.Unlock()
	return Metrics{
		Limit:    int(b.limit.Load()),
		InFlight: int(inFlightOf(b.state.Load())),
		Waiting:  waiting,
		Admitted: admitted,
		Rejected: b.rejected.Load(),
		Canceled: b.canceled.Load(),
	}
}

// idle reports, without the lock, whether nothing is in flight and nobody
// is queued or about to queue.
func (b *Bulkhead) idle() bool {
	return b.state.Load() == 0
}

// RejectReason says why a call was rejected.
type RejectReason uint8

const (
	// RejectedFull is a call that found every slot taken and no room in the
	// wait queue, or a failed [Bulkhead.TryAcquire].
	RejectedFull RejectReason = iota
	// RejectedMaxWait is a call that waited the maximum wait time without
	// getting a slot.
	RejectedMaxWait
)

// String returns "full" or "max_wait".
func (r RejectReason) String() string {
	switch r {
	case RejectedFull:
		return "full"
	case RejectedMaxWait:
		return "max_wait"
	}
	return "RejectReason(" + strconv.Itoa(int(r)) + ")"
}

// Rejection describes one rejected call to [Config].OnReject.
type Rejection struct {
	// Reason says why the call was rejected.
	Reason RejectReason
	// Limit, InFlight and Waiting are the bulkhead's state at the rejection;
	// Waiting does not count the rejected call.
	Limit, InFlight, Waiting int
	// Waited is how long the call waited: the maximum wait time for
	// RejectedMaxWait, zero otherwise.
	Waited time.Duration
}

func (b *Bulkhead) rejectLocked(reason RejectReason, waited time.Duration) Rejection {
	b.rejected.Add(1)
	return Rejection{Reason: reason, Limit: int(b.limit.Load()), InFlight: int(inFlightOf(b.state.Load())), Waiting: b.waiters.n, Waited: waited}
}

// notifyReject calls the OnReject hook; the caller must not hold b.mu.
func (b *Bulkhead) notifyReject(r Rejection) {
	if b.onReject != nil {
		b.onReject(r)
	}
}

// admitLocked hands out the permit of a slot the caller has taken in the
// in-flight count. b.mu must be held.
func (b *Bulkhead) admitLocked() Permit {
	if b.strategy == nil {
		if p, ok := b.claimFast(); ok {
			return p
		}
	}
	return b.admitSlotLocked()
}

// fixedPermit hands out the permit of a slot of a fixed limit the caller
// has taken in the in-flight count, taking the mutex only when every fast
// guard is held.
func (b *Bulkhead) fixedPermit() Permit {
	if p, ok := b.claimFast(); ok {
		return p
	}
	b.mu.Lock()
	p := b.admitSlotLocked()
	b.mu.Unlock()
	return p
}

// claimFast takes a free fast guard for a new permit. Each goroutine starts
// looking at a guard chosen by its stack, so that concurrent callers
// rarely write the same cache line, and a goroutine mostly keeps using the
// same guards, which stay in its core's cache.
func (b *Bulkhead) claimFast() (Permit, bool) {
	start := uint32(stackhash.Hash() >> 32)
	for i := range uint32(fastSlots) {
		j := (start + i) % fastSlots
		g := &b.fast[j]
		if w := g.Load(); w&1 == 0 && g.CompareAndSwap(w, w+1) {
			return Permit{b: b, idx: int32(j), gen: w + 1}, true
		}
	}
	return Permit{}, false
}

// admitSlotLocked hands out a permit named by an entry of b.slots, with
// the admission time and in-flight count a strategy needs. b.mu must be
// held.
func (b *Bulkhead) admitSlotLocked() Permit {
	var idx int32
	if n := len(b.free); n > 0 {
		idx = b.free[n-1]
		b.free = b.free[:n-1]
	} else {
		idx = int32(len(b.slots))
		b.slots = append(b.slots, slot{})
	}
	b.slotAdmits++
	s := &b.slots[idx]
	s.inFlight = int(inFlightOf(b.state.Load()))
	if b.strategy != nil {
		s.start = b.now()
	}
	return Permit{b: b, idx: ^idx, gen: s.gen}
}

func (b *Bulkhead) release(p Permit, o Outcome) {
	if p.idx >= 0 {
		if int(p.idx) >= fastSlots || !b.fast[p.idx].CompareAndSwap(p.gen, p.gen+1) {
			return // released before: nothing to do
		}
		// The add tells whether anybody is queued (see acquireFast).
		if b.state.Add(minusOne) >= queuedOne {
			b.mu.Lock()
			b.handOffLocked()
			b.mu.Unlock()
		}
		return
	}
	b.mu.Lock()
	old := int(b.limit.Load())
	b.releaseLocked(p, o)
	changed := int(b.limit.Load())
	b.mu.Unlock()
	if changed != old && b.onLimit != nil {
		b.onLimit(old, changed)
	}
}

// releaseLocked gives p back, if it still holds its slot: it frees the
// slot, feeds the strategy and hands free slots to the waiters. b.mu must
// be held.
func (b *Bulkhead) releaseLocked(p Permit, o Outcome) {
	if p.idx >= 0 {
		if int(p.idx) >= fastSlots || !b.fast[p.idx].CompareAndSwap(p.gen, p.gen+1) {
			return
		}
		b.state.Add(minusOne)
		b.handOffLocked()
		return
	}
	idx := ^p.idx
	if int(idx) >= len(b.slots) || b.slots[idx].gen != p.gen {
		return // released before: nothing to do
	}
	s := &b.slots[idx]
	s.gen++ // every permit naming the old generation is now stale
	b.free = append(b.free, idx)
	b.state.Add(minusOne)
	if b.strategy != nil && o != OutcomeIgnored {
		now := b.now()
		rtt := max(now.Sub(s.start), 0)
		l := b.strategy.Update(Sample{RTT: rtt, InFlight: s.inFlight, Dropped: o == OutcomeDropped, Now: now})
		b.limit.Store(int64(max(l, 1)))
	}
	b.handOffLocked()
}

// handOffLocked hands free slots to the waiters in FIFO order. A waiter
// that gets a slot here is admitted even if its ctx is done meanwhile; it
// then gives the slot back through abandon, which hands it on. A grant
// counts in Admitted once its waiter takes it. b.mu must be held.
func (b *Bulkhead) handOffLocked() {
	for !b.waiters.empty() && b.incLocked() {
		w := b.waiters.popFront()
		b.state.Add(minusQueued)
		w.permit = b.admitLocked()
		b.unclaimed++
		close(w.ready)
	}
}

// waiter is one caller queued for a slot.
type waiter struct {
	prev, next *waiter
	queued     bool
	ready      chan struct{} // closed when permit is set
	permit     Permit
}

// waitList is an intrusive FIFO list of waiters.
type waitList struct {
	head, tail *waiter
	n          int
}

func (l *waitList) empty() bool { return l.head == nil }

func (l *waitList) pushBack(w *waiter) {
	w.prev, w.next, w.queued = l.tail, nil, true
	if l.tail == nil {
		l.head = w
	} else {
		l.tail.next = w
	}
	l.tail = w
	l.n++
}

func (l *waitList) popFront() *waiter {
	w := l.head
	l.remove(w)
	return w
}

func (l *waitList) remove(w *waiter) {
	if !w.queued {
		return
	}
	if w.prev == nil {
		l.head = w.next
	} else {
		w.prev.next = w.next
	}
	if w.next == nil {
		l.tail = w.prev
	} else {
		w.next.prev = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	l.n--
}

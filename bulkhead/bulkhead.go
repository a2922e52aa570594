package bulkhead

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
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
// A Bulkhead is safe for concurrent use. Create it with [NewFromConfig], or
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

	mu       sync.Mutex
	limit    int
	inFlight int
	waiters  waitList
	// slots holds one entry per permit that is or was held; free lists the
	// entries no permit holds. A permit names its slot and the slot's
	// generation, which the release bumps: that makes a second release of
	// the same permit a no-op without allocating anything per permit.
	slots    []slot
	free     []int32
	admitted uint64
	rejected uint64
	canceled uint64
}

// slot is the bookkeeping of one held permit.
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
	idx int32
	gen uint64
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
// are counted as canceled. Acquire allocates nothing unless it has to wait.
func (b *Bulkhead) Acquire(ctx context.Context) (Permit, error) {
	done := ctx.Done()
	b.mu.Lock()
	select {
	case <-done:
		// ctx became done before we got the lock: that happened before the
		// acquisition, so it fails even if a slot is free.
		b.mu.Unlock()
		return Permit{}, ctx.Err()
	default:
	}
	if b.inFlight < b.limit && b.waiters.empty() {
		p := b.admitLocked()
		b.admitted++
		b.mu.Unlock()
		return p, nil
	}
	if b.waiters.n >= b.maxQueue {
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
		b.admitted++
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
			b.admitted++
			b.mu.Unlock()
			return w.permit, nil
		default:
		}
		b.waiters.remove(w)
		r := b.rejectLocked(RejectedMaxWait, b.maxWait)
		b.mu.Unlock()
		b.notifyReject(r)
		return Permit{}, resilience.ErrBulkheadFull
	}
}

// abandon withdraws a waiter whose ctx is done. If the waiter was granted a
// slot meanwhile (its ready channel is closed), the slot goes back as though
// it had never been taken, which hands it to the next waiter.
func (b *Bulkhead) abandon(w *waiter) {
	b.mu.Lock()
	b.canceled++
	select {
	case <-w.ready:
		b.freeLocked(w.permit.idx, OutcomeIgnored)
	default:
		b.waiters.remove(w)
	}
	b.mu.Unlock()
}

// TryAcquire is the non-blocking twin of [Bulkhead.Acquire]: it returns a
// permit and true when a slot is free and nobody is queued, and otherwise
// the zero Permit and false, counting and reporting the rejection as
// [RejectedFull]. It never waits and never allocates.
func (b *Bulkhead) TryAcquire() (Permit, bool) {
	b.mu.Lock()
	if b.inFlight < b.limit && b.waiters.empty() {
		p := b.admitLocked()
		b.admitted++
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

// Metrics returns a consistent snapshot of the bulkhead's state. It is safe
// for concurrent use and allocates nothing.
func (b *Bulkhead) Metrics() Metrics {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Metrics{
		Limit:    b.limit,
		InFlight: b.inFlight,
		Waiting:  b.waiters.n,
		Admitted: b.admitted,
		Rejected: b.rejected,
		Canceled: b.canceled,
	}
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
	b.rejected++
	return Rejection{Reason: reason, Limit: b.limit, InFlight: b.inFlight, Waiting: b.waiters.n, Waited: waited}
}

// notifyReject calls the OnReject hook; the caller must not hold b.mu.
func (b *Bulkhead) notifyReject(r Rejection) {
	if b.onReject != nil {
		b.onReject(r)
	}
}

// admitLocked hands out a slot; the caller holds b.mu and has checked that
// the limit allows it.
func (b *Bulkhead) admitLocked() Permit {
	b.inFlight++
	var idx int32
	if n := len(b.free); n > 0 {
		idx = b.free[n-1]
		b.free = b.free[:n-1]
	} else {
		idx = int32(len(b.slots))
		b.slots = append(b.slots, slot{})
	}
	s := &b.slots[idx]
	s.inFlight = b.inFlight
	if b.strategy != nil {
		s.start = b.now()
	}
	return Permit{b: b, idx: idx, gen: s.gen}
}

func (b *Bulkhead) release(p Permit, o Outcome) {
	b.mu.Lock()
	if int(p.idx) >= len(b.slots) || p.idx < 0 || b.slots[p.idx].gen != p.gen {
		b.mu.Unlock() // released before: nothing to do
		return
	}
	old := b.limit
	b.freeLocked(p.idx, o)
	changed := b.limit
	b.mu.Unlock()
	if changed != old && b.onLimit != nil {
		b.onLimit(old, changed)
	}
}

// freeLocked frees slot idx, feeds the strategy and hands free slots to the
// waiters. The caller holds b.mu and has checked that the slot is held.
func (b *Bulkhead) freeLocked(idx int32, o Outcome) {
	s := &b.slots[idx]
	s.gen++ // every permit naming the old generation is now stale
	b.free = append(b.free, idx)
	b.inFlight--
	if b.strategy != nil && o != OutcomeIgnored {
		now := b.now()
		rtt := max(now.Sub(s.start), 0)
		l := b.strategy.Update(Sample{RTT: rtt, InFlight: s.inFlight, Dropped: o == OutcomeDropped, Now: now})
		b.limit = max(l, 1)
	}
	// Hand slots to the waiters in FIFO order. A waiter that gets a slot
	// here is admitted even if its ctx is done meanwhile; it then gives the
	// slot back through abandon, which hands it on.
	for b.inFlight < b.limit && !b.waiters.empty() {
		w := b.waiters.popFront()
		w.permit = b.admitLocked()
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

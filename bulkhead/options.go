package bulkhead

import "time"

// Option configures a [Bulkhead] built by [New].
type Option func(*Bulkhead)

// WithQueue lets up to n callers wait for a slot when every slot is taken;
// they get slots in FIFO order. The default, and any n below 0, is 0: a call
// that finds every slot taken is rejected at once.
func WithQueue(n int) Option {
	return func(b *Bulkhead) { b.maxQueue = max(n, 0) }
}

// WithMaxWait bounds how long a queued caller waits for a slot: after d it is
// rejected with [resilience.ErrBulkheadFull] and reported as
// [RejectedMaxWait]. The default, and any d of zero or less, is no bound but
// the caller's ctx. It matters only together with [WithQueue].
func WithMaxWait(d time.Duration) Option {
	return func(b *Bulkhead) { b.maxWait = max(d, 0) }
}

// WithAdaptive makes the bulkhead's limit follow s: every released [Permit]
// feeds s a [Sample] and the bulkhead takes the limit s returns (at least 1).
// The limit given to [New] is passed to s's Init and the bulkhead starts
// with the limit Init returns.
//
// s belongs to this bulkhead alone: the bulkhead serialises its calls, so s
// needs no locking of its own, but two bulkheads must not share one. A nil s
// leaves the limit fixed, which is the default.
func WithAdaptive(s Strategy) Option {
	return func(b *Bulkhead) { b.strategy = s }
}

// WithClassifier sets how [Bulkhead.Execute] turns its function's error into
// the [Outcome] reported to the strategy. The default, and what a nil
// classify selects, is [OutcomeOf]. classify must be safe for concurrent use.
func WithClassifier(classify func(err error) Outcome) Option {
	return func(b *Bulkhead) { b.classify = classify }
}

// WithRejectListener makes the bulkhead call fn for every rejected call, in
// the goroutine of that call, after the bulkhead's lock is released. fn must
// be safe for concurrent use and fast: the rejected caller waits for it. The
// default, and what a nil fn selects, is no listener.
func WithRejectListener(fn func(Rejection)) Option {
	return func(b *Bulkhead) { b.onReject = fn }
}

// WithLimitListener makes the bulkhead call fn whenever its adaptive strategy
// changes the limit, in the goroutine whose release caused the change, after
// the bulkhead's lock is released. When changes race, calls may arrive out
// of order; [Bulkhead.Metrics] has the current limit. fn must be safe for
// concurrent use and fast. The default, and what a nil fn selects, is no
// listener.
func WithLimitListener(fn func(oldLimit, newLimit int)) Option {
	return func(b *Bulkhead) { b.onLimit = fn }
}

// withClock replaces the clock that timestamps admissions and releases for
// the strategy; tests use it to drive adaptive limits with simulated time.
func withClock(now func() time.Time) Option {
	return func(b *Bulkhead) { b.now = now }
}

// Package bulkhead isolates work by bounding how much of it runs at once.
//
// A [Bulkhead] admits at most its limit of concurrent executions. By default
// the next one is rejected at once with [resilience.ErrBulkheadFull]; with
// [WithQueue] a bounded number of callers may wait, in FIFO order, for at
// most [WithMaxWait] or until their context is done:
//
//	bh := bulkhead.New(10)
//	err := bh.Execute(ctx, func(ctx context.Context) error { return work(ctx) })
//	if errors.Is(err, resilience.ErrBulkheadFull) { /* shed the call */ }
//
// [Bulkhead.Execute] is what most callers want. [Bulkhead.Acquire] and
// [Bulkhead.TryAcquire] hand out a [Permit] for work that does not fit in one
// function call, such as a stream; its Release method is idempotent and
// allocation-free.
//
// [Partitioned] keeps one bulkhead per key (a method, a tenant, a caller)
// with a cap on the number of keys: keys beyond the cap share one overflow
// partition, so untrusted keys cannot grow memory without bound.
//
// With [WithAdaptive] the limit follows a [Strategy] fed with the latency and
// outcome of every execution. The package provides [AIMD] (additive
// increase, multiplicative decrease on drops and timeouts) and [Gradient]
// (after Netflix concurrency-limits' Gradient2: the limit follows the ratio of
// a long-term to a short-term average latency, with headroom for a small
// queue and smoothing).
//
// [Bulkhead.Metrics] returns a snapshot of the counters, and
// [WithRejectListener] and [WithLimitListener] report rejections and limit
// changes; listeners are never called while a lock is held.
//
// The package knows nothing of gRPC; the interceptors package builds server
// and client bulkheads on it.
package bulkhead

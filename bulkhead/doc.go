// Package bulkhead isolates work by bounding how much of it runs at once.
//
// A [Bulkhead] admits at most its limit of concurrent executions. By default
// the next one is rejected at once with [resilience.ErrBulkheadFull]:
//
//	bh := bulkhead.New(10)
//	err := bh.Execute(ctx, func(ctx context.Context) error { return work(ctx) })
//	if errors.Is(err, resilience.ErrBulkheadFull) { /* shed the call */ }
//
// # Configuration
//
// [New] is the shorthand for a fixed limit; a [Config] holds every other
// setting as plain data, each zero field with a documented default, and
// [Config.Validate] reports every invalid value at once. With a Queue, a
// bounded number of callers may wait, in FIFO order, for at most MaxWait or
// until their context is done:
//
//	bh := bulkhead.NewFromConfig(bulkhead.Config{
//		Limit:   10,
//		Queue:   20,
//		MaxWait: 50 * time.Millisecond,
//	})
//
// [Bulkhead.Execute] is what most callers want. [Bulkhead.Acquire] and
// [Bulkhead.TryAcquire] hand out a [Permit] for work that does not fit in one
// function call, such as a stream; its Release method is idempotent and
// allocation-free.
//
// With a fixed limit, a permit is taken and released without a lock while
// nobody waits: a compare-and-swap on the in-flight count. The lock is
// taken to queue, to hand a freed slot to the first waiter, with an
// adaptive strategy, and when more than 32 permits are held at once. A
// caller never overtakes a queued one.
//
// [Partitioned] keeps one bulkhead per key (a method, a tenant, a caller),
// configured by a [PartitionedConfig]. Its state is bounded: at most
// MaxKeys keyed partitions; an idle partition (nothing in flight, nobody
// waiting, unused since the clock hand last passed it) makes room for a new
// key, and keys that find no room share one overflow partition, so
// untrusted keys cannot grow memory without bound. The optional hooks
// OnEvict and OnOverflow report both.
//
// # Adaptive limits
//
// With a [Config].Strategy the limit follows the latency and outcome of
// every execution. The package provides [AIMD] (additive increase,
// multiplicative decrease on drops and timeouts), [Gradient] (after
// Netflix concurrency-limits' Gradient2: the limit follows the ratio of a
// long-term to a short-term average latency, with headroom for a small
// queue and smoothing, and probes the no-load latency now and then so
// that long overload does not raise it) and [CPU] (load shedding on CPU
// usage with the BBR rule of go-zero and go-kratos/aegis: while the CPUs
// the process may use are busier than a threshold, the limit is the best
// throughput times the best latency of the last few seconds).
//
// # Events
//
// [Bulkhead.Metrics] returns a snapshot of the counters. The optional
// fields OnReject and OnLimitChange of [Config] report rejections and limit
// changes; they run on the goroutine that caused the event, never while a
// lock is held, and a nil hook costs one comparison.
//
// The package knows nothing of gRPC; the interceptors package builds server
// and client bulkheads on it.
package bulkhead

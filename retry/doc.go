// Package retry runs a function again when it fails with a transient error,
// waiting between attempts, within limits of attempts, time and budget.
//
// It is the retry engine of grpc-resilience and knows nothing of gRPC: it
// serves database calls or HTTP requests as well. The interceptors package
// builds gRPC retries on it, mapping status codes to its conditions and
// server pushback to its [Pushback] interface.
//
// # Configuration
//
// A [Config] holds every setting as plain data; each zero field has a
// documented default, so a Config only states what differs, and
// [Config.Validate] reports every invalid value at once:
//
//	p := retry.NewFromConfig(retry.Config{
//		MaxAttempts: 5,
//		Backoff:     retry.Exponential(100*time.Millisecond, 10*time.Second, 2.0),
//		Jitter:      retry.FullJitter,
//	})
//	err := p.Do(ctx, func(ctx context.Context) error { return flakyOperation(ctx) })
//
// [New] is the shorthand for the common case, the attempt limit and a few
// options, each of which sets one field of the Config:
//
//	p := retry.New(3) // at most 3 attempts in all
//	p = retry.New(5, retry.WithBackoff(retry.Exponential(100*time.Millisecond, 10*time.Second, 2.0)))
//
// [DoValue] does what [Policy.Do] does for functions that return a value,
// and [Policy.DoAttempt] tells the function which attempt it runs. A
// [Policy] is immutable and safe for concurrent use; build one per kind of
// call, and derive variants with [Policy.With].
//
// # Backoff and jitter
//
// [Constant], [Linear], [Exponential], [Fibonacci], and two decorrelated
// jitter strategies, [DecorrelatedJitter] (AWS) and [DecorrelatedJitterV2]
// (Polly), compute the waits; [Config].Jitter adds [FullJitter],
// [EqualJitter] or [ProportionalJitter] against the thundering herd. Every strategy
// saturates at its cap, so no parameter or attempt number yields a
// negative, NaN or overflowed delay.
//
// # Conditions
//
// By default every error is retried, except that nothing is retried once
// the caller's context is done. [Config].RetryIf and AbortIf narrow that,
// [Permanent] marks a single error as final, and an error implementing
// [Pushback] can set the next delay or forbid retrying, as a server does
// with gRPC pushback.
//
// # Limits and results
//
// [Config].MaxAttempts, MaxDuration and the context's deadline
// bound a call; the engine never sleeps past the deadline: when the next
// wait cannot end before it, Do returns the last error at once. When the
// attempts run out, Do returns a *resilience.RetriesExhaustedError that
// unwraps to the last error; otherwise it returns the deciding error as
// [Policy.Do] lists.
//
// # Budgets
//
// A [Budget] shared between policies keeps retries from multiplying the load
// on a failing server: [RatioBudget] (a fraction of recent calls plus a floor
// per second, as in Finagle and Linkerd, or with
// [RatioBudgetConfig].FloorInsideRatio the larger of the two) and
// [TokenBucket] (gRPC's retryThrottling). A denied retry ends the call with
// the last error. The [Budget] interface states the contract between a
// policy and its budget: the budget is asked once per retry about to run,
// and only then.
//
// # Events
//
// The optional fields OnRetry, OnExhausted, OnBudgetDenied and OnDeadline of
// [Config] are told of every retry, exhaustion, budget denial and deadline
// stop, for logs, metrics and spans; they run on the caller's goroutine,
// never under a lock, and a nil hook costs one comparison.
//
// # Cost
//
// A call whose first attempt succeeds allocates nothing (a [RatioBudget]
// allocates once per tenth of its TTL, whatever the number of calls, to
// start a new slice of time). Streams and other
// callers that cannot wrap a call in one function drive the same logic step
// by step with [Policy.Start] and [Call]. A caller that reads the clock
// after each attempt anyway (to measure its latency) passes that reading to
// [Call.NextAt], which then reads no clock: the budget ([TimedBudget]), the
// deadline and the maximum duration all use it. [RatioBudget] records
// without a lock, so calls on many cores do not queue for it.
package retry

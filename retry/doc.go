// Package retry runs a function again when it fails with a transient error,
// waiting between attempts, within limits of attempts, time and budget.
//
// It is the retry engine of grpc-resilience and knows nothing of gRPC: it
// serves database calls or HTTP requests as well. The interceptors package
// builds gRPC retries on it, mapping status codes to its conditions and
// server pushback to its [Pushback] interface.
//
// # Basic use
//
//	p := retry.New(3) // at most 3 attempts in all
//	err := p.Do(ctx, func(ctx context.Context) error { return apiCall(ctx) })
//
// With exponential backoff, as the seed's ExponentialBackoff::new(100ms,
// 10s, 2.0):
//
//	p := retry.New(5, retry.WithBackoff(retry.Exponential(100*time.Millisecond, 10*time.Second, 2.0)))
//	err := p.Do(ctx, func(ctx context.Context) error { return flakyOperation(ctx) })
//
// [DoValue] does the same for functions that return a value, and
// [Policy.DoAttempt] tells the function which attempt it runs. A [Policy] is
// immutable and safe for concurrent use; build one per kind of call.
//
// # Backoff and jitter
//
// [Constant], [Linear], [Exponential], [Fibonacci], and two decorrelated
// jitter strategies, [DecorrelatedJitter] (AWS) and [DecorrelatedJitterV2]
// (Polly), compute the waits; [WithJitter] adds [FullJitter], [EqualJitter]
// or [ProportionalJitter] against the thundering herd. Every strategy
// saturates at its cap, so no parameter or attempt number yields a
// negative, NaN or overflowed delay.
//
// # Conditions
//
// By default every error is retried, except that nothing is retried once
// the caller's context is done. [WithRetryIf] and [WithAbortIf] narrow that,
// [Permanent] marks a single error as final, and an error implementing
// [Pushback] can set the next delay or forbid retrying, as a server does
// with gRPC pushback.
//
// # Limits and results
//
// The attempt limit of [New], [WithMaxDuration] and the context's deadline
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
// per second, as in Finagle and Linkerd) and [TokenBucket] (gRPC's
// retryThrottling). A denied retry ends the call with the last error.
//
// # Events
//
// A [Listener] is told of every retry, exhaustion, budget denial and
// deadline stop, for logs, metrics and spans; unset, it costs nothing.
//
// # Cost
//
// A call whose first attempt succeeds allocates nothing. Streams and other
// callers that cannot wrap a call in one function drive the same logic step
// by step with [Policy.Start] and [Call].
package retry

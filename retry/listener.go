package retry

import (
	"context"
	"time"
)

// Listener receives a [Policy]'s events, for logs, metrics and spans. Every
// field is optional: a nil field costs one comparison, and the zero Listener
// (the default) observes nothing.
//
// The functions run synchronously in the goroutine that calls Do (or
// [Call.Next]), never while the engine holds a lock; they receive the
// call's ctx so they can find its span or logger. They are called
// concurrently when the policy is used concurrently, and should be quick.
// Attempt numbers count from 1 (the first attempt).
type Listener struct {
	// OnRetry is called when a retry has been decided, before the wait:
	// attempt is the number of the attempt that failed with err, delay the
	// wait before attempt+1 (a Pushback's delay or the jittered backoff).
	OnRetry func(ctx context.Context, attempt int, err error, delay time.Duration)
	// OnExhausted is called when the last allowed attempt failed with a
	// retryable err; Do then returns a *resilience.RetriesExhaustedError.
	OnExhausted func(ctx context.Context, attempts int, err error)
	// OnBudgetDenied is called when the policy's Budget refused the retry
	// that would have followed attempt; Do then returns err as is.
	OnBudgetDenied func(ctx context.Context, attempt int, err error)
	// OnDeadline is called when the retry that would have followed attempt
	// is given up because its wait, delay, would end at or after the
	// context's deadline or the policy's maximum duration; Do then returns
	// err as is.
	OnDeadline func(ctx context.Context, attempt int, err error, delay time.Duration)
}

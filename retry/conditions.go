package retry

import (
	"errors"
	"time"
)

// PermanentError marks an error that must not be retried: a [Policy] stops
// at once when an attempt's error is, or wraps, a *PermanentError, whatever
// its other conditions say. Create it with [Permanent].
type PermanentError struct {
	// Err is the error that must not be retried.
	Err error
}

// Error returns Err's message.
func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns Err, so errors.Is and errors.As see through the marker.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as not retryable: return Permanent(err) from the
// function a [Policy] runs to stop at once. When the attempt's error is the
// *[PermanentError] itself, Do returns err unmarked; when the marker is
// wrapped deeper, Do returns the attempt's error as is. Permanent(nil)
// returns nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err is, or wraps, a *[PermanentError].
func IsPermanent(err error) bool {
	_, ok := errors.AsType[*PermanentError](err)
	return ok
}

// Pushback is implemented by errors that carry the server's verdict on
// retrying: the gRPC layer implements it for the grpc-retry-pushback-ms
// trailer and google.rpc.RetryInfo, an HTTP client could for Retry-After.
// A [Policy] finds the first one in an attempt's error tree, as errors.As
// would.
//
// Pushback decides when, and may veto, but never makes an error retryable
// that the policy's conditions reject:
//   - retry == false stops at once: Do returns the attempt's error as is (not
//     a *resilience.RetriesExhaustedError, since attempts did not run out);
//   - retry == true makes the next wait exactly delay (a negative delay
//     counts as zero), instead of the backoff's delay and without jitter;
//     the backoff sequence then restarts from its first retry, as gRPC does
//     after pushback. The wait is still subject to the context deadline, the
//     maximum duration, the attempt limit and the budget.
type Pushback interface {
	// RetryDelay returns the server's verdict: whether to retry at all, and
	// if so after how long. It must be safe for concurrent use.
	RetryDelay() (delay time.Duration, retry bool)
}

// pushbackErr is an error that implements Pushback, the type the engine
// looks for in an attempt's error tree.
type pushbackErr interface {
	error
	Pushback
}

// pushbackOf returns the first Pushback in err's tree, if any. Unlike
// errors.As with a pointer target, errors.AsType does not allocate.
func pushbackOf(err error) (Pushback, bool) {
	return errors.AsType[pushbackErr](err)
}

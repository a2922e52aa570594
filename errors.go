package resilience

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrCircuitOpen is returned, possibly wrapped, when a circuit breaker rejects
// a call without running it because the circuit is open (or half-open with
// every probe slot taken). Callers usually fail fast or serve cached data.
var ErrCircuitOpen = errors.New("resilience: circuit open")

// ErrBulkheadFull is returned, possibly wrapped, when a bulkhead rejects a call
// because every slot is taken and no place in its wait queue is free, or the
// maximum wait time ran out.
var ErrBulkheadFull = errors.New("resilience: bulkhead full")

// ErrThrottled is returned, possibly wrapped, when a client-side adaptive
// throttle (package throttle) rejects a call without sending it, because
// the backend has lately refused too many of the calls it was sent. The
// throttle lets more calls through as the backend accepts them again;
// callers usually fail fast or serve cached data, and do not retry at once.
var ErrThrottled = errors.New("resilience: throttled")

// ErrRateLimited is matched, with [errors.Is], by every error a rate
// limiter returns when it refuses a call: the error itself is a
// *[RateLimitedError] that says how long until a permit.
var ErrRateLimited = errors.New("resilience: rate limited")

// RateLimitedError reports that a rate limiter refused a call, and when the
// caller may try again. It matches [ErrRateLimited] with [errors.Is].
type RateLimitedError struct {
	// RetryAfter is how long until the limiter would grant the permit the
	// refused call asked for; zero when it cannot say (the request can
	// never be granted, for example a burst larger than the limiter's).
	RetryAfter time.Duration
}

// Error implements the error interface.
func (e *RateLimitedError) Error() string {
	if e.RetryAfter <= 0 {
		return "resilience: rate limited"
	}
	return fmt.Sprintf("resilience: rate limited, retry after %v", e.RetryAfter)
}

// Is reports whether target is [ErrRateLimited].
func (e *RateLimitedError) Is(target error) bool { return target == ErrRateLimited }

// TimeoutError reports that an operation ran out of its time budget.
//
// It matches context.DeadlineExceeded with [errors.Is], so code that only
// knows the standard library still recognises a timeout.
type TimeoutError struct {
	// After is the budget that ran out.
	After time.Duration
}

// Error implements the error interface.
func (e *TimeoutError) Error() string {
	return fmt.Sprintf("resilience: timed out after %v", e.After)
}

// Is reports whether target is context.DeadlineExceeded.
func (e *TimeoutError) Is(target error) bool {
	return target == context.DeadlineExceeded
}

// Timeout reports true; it lets code that checks for net.Error-style
// timeouts recognise the error.
func (e *TimeoutError) Timeout() bool { return true }

// RetriesExhaustedError reports that every attempt a retry policy allowed
// failed. It unwraps to the last attempt's error.
type RetriesExhaustedError struct {
	// Attempts is how many attempts ran, the first one included.
	Attempts int
	// Err is the error of the last attempt.
	Err error
}

// Error implements the error interface.
func (e *RetriesExhaustedError) Error() string {
	return fmt.Sprintf("resilience: %d attempts failed, last error: %v", e.Attempts, e.Err)
}

// Unwrap returns the last attempt's error.
func (e *RetriesExhaustedError) Unwrap() error { return e.Err }

// FieldError reports one invalid setting of a configuration: the field's
// path, its value and why it is invalid. Every Validate method in this
// module reports its problems as FieldErrors joined with [errors.Join], all
// at once; callers that present them in their own terms (a config file's
// key names, say) take them apart with [errors.As] or by unwrapping the
// joined error, never by reading the message.
type FieldError struct {
	// Field is the path of the setting in Go terms, dot-separated from the
	// type's root, with indexes and keys in brackets: "MaxAttempts",
	// "Retry.Backoff.Max", "Methods[/pkg.Svc/Get].Hedging.Delay".
	Field string
	// Value is the invalid value as it was set.
	Value any
	// Reason says what a valid value is, for example "must not be
	// negative".
	Reason string
}

// Error returns "Field: Value: Reason". Strings are quoted and long values
// cut, so that a hostile value cannot flood a log.
func (e *FieldError) Error() string {
	var v string
	switch x := e.Value.(type) {
	case string:
		v = fmt.Sprintf("%q", truncate(x))
	case fmt.Stringer:
		v = truncate(x.String())
	default:
		v = truncate(fmt.Sprint(x))
	}
	return e.Field + ": " + v + ": " + e.Reason
}

// Prefix returns a copy of e whose Field is prefix.Field, or e itself when
// prefix is empty; it nests a part's problems under the field that holds
// the part.
func (e *FieldError) Prefix(prefix string) *FieldError {
	if prefix == "" {
		return e
	}
	c := *e
	switch {
	case c.Field == "":
		c.Field = prefix
	case c.Field[0] == '[':
		c.Field = prefix + c.Field
	default:
		c.Field = prefix + "." + c.Field
	}
	return &c
}

// FieldErrors returns the FieldErrors in err's tree: err itself, the
// errors it wraps and those it joins, at any depth, in order. Errors of
// other types are not included.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *FieldError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}

// maxValueLen bounds how much of a value FieldError.Error quotes.
const maxValueLen = 100

func truncate(s string) string {
	if len(s) <= maxValueLen {
		return s
	}
	return s[:maxValueLen] + "..."
}

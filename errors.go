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

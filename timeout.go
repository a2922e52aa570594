package resilience

import (
	"context"
	"sync/atomic"
	"time"
)

// WithTimeout runs fn with a context that is cancelled after d and returns
// fn's error, or a *[TimeoutError] once d has passed, whichever comes first.
//
// It returns by the timeout even when fn ignores its context: fn then keeps
// running in its own goroutine until it returns by itself, and its result is
// discarded. Such a function holds on to whatever it uses until then, so fn
// should honour ctx; WithTimeout only guarantees that the caller is not held
// up.
//
// The error it returns is, in order of precedence:
//   - the parent's ctx.Err() when ctx was already done before the call, or is
//     cancelled or reaches its own deadline while fn runs: a parent that gives
//     up is reported as context.Canceled (or context.DeadlineExceeded for
//     the parent's own deadline), never as this timeout;
//   - a *TimeoutError{After: d} when the timeout fires before fn returns,
//     or fn returns an error after it fired (typically ctx.Err() of the
//     context it was given); it matches context.DeadlineExceeded with
//     [errors.Is];
//   - otherwise fn's own error, unchanged; a nil from fn is returned as
//     nil, since fn finished its work, even when the parent was cancelled
//     meanwhile, unless WithTimeout had already returned the parent's
//     error (fn cancelling the parent and returning nil races with that).
//
// A d of zero or less times out at once without running fn. A panic in fn is
// raised again in the caller's goroutine while the caller still waits for
// fn; after the caller has returned, it crashes the program as any unhandled
// panic in a goroutine does.
//
// WithTimeout is safe for concurrent use.
func WithTimeout(ctx context.Context, d time.Duration, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	timeoutErr := &TimeoutError{After: d}
	if d <= 0 {
		return timeoutErr
	}
	tctx, cancel := context.WithTimeoutCause(ctx, d, timeoutErr)
	defer cancel()

	// Exactly one of fn's goroutine and the caller wins the state: either
	// fn finishes first and hands its outcome over (the caller then waits for
	// it), or the caller abandons fn first and fn's goroutine, if it panics,
	// re-raises the panic itself since nobody is left to receive it.
	var state atomic.Int32
	done := make(chan outcome, 1) // buffered: the hand-over never blocks
	go func() {
		var o outcome
		defer func() {
			if r := recover(); r != nil {
				o.panicked, o.panicValue = true, r
			}
			if state.CompareAndSwap(running, finished) {
				done <- o
			} else if o.panicked {
				panic(o.panicValue)
			}
		}()
		o.err = fn(tctx)
	}()

	var o outcome
	select {
	case o = <-done:
	case <-tctx.Done():
		if state.CompareAndSwap(running, abandoned) {
			if err := ctx.Err(); err != nil {
				return err
			}
			return timeoutErr
		}
		// fn finished at the same moment; its outcome is on its way.
		o = <-done
	}
	if o.panicked {
		panic(o.panicValue)
	}
	if o.err == nil {
		return nil
	}
	// fn may have failed because its context ended; report that as the
	// parent's error or as the timeout, as documented, not as whatever fn
	// made of it.
	if err := ctx.Err(); err != nil {
		return err
	}
	if tctx.Err() != nil {
		return timeoutErr
	}
	return o.err
}

// States of the race between fn's goroutine and WithTimeout's caller.
const (
	running int32 = iota
	finished
	abandoned
)

// outcome carries fn's result from its goroutine to the caller.
type outcome struct {
	err        error
	panicked   bool
	panicValue any
}

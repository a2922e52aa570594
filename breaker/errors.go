package breaker

import (
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// OpenError is the error a [Breaker] returns when it rejects a call without
// running it. It unwraps to [resilience.ErrCircuitOpen], so
// errors.Is(err, resilience.ErrCircuitOpen) holds; use [errors.As] to reach
// the details.
//
// Rejections allocate nothing: each breaker returns one of three
// preallocated *OpenError values (open, forced open, half-open with every
// probe slot taken), so compare with errors.Is or errors.As, never with
// ==. Its methods are safe for concurrent use. The zero OpenError, which
// no breaker returns, reads "breaker: circuit open" and has no name and no
// remaining time.
type OpenError struct {
	b      *Breaker
	state  State
	forced bool
}

// Error returns, for example, `breaker "users": circuit open`.
func (e *OpenError) Error() string {
	prefix := "breaker"
	if name := e.Name(); name != "" {
		prefix = `breaker "` + name + `"`
	}
	switch {
	case e.forced:
		return prefix + ": circuit forced open"
	case e.state == HalfOpen:
		return prefix + ": circuit half-open, every probe slot taken"
	}
	return prefix + ": circuit open"
}

// Unwrap returns [resilience.ErrCircuitOpen].
func (e *OpenError) Unwrap() error { return resilience.ErrCircuitOpen }

// Name returns the Config.Name of the breaker that rejected the call.
func (e *OpenError) Name() string {
	if e.b == nil {
		return ""
	}
	return e.b.s.name
}

// State returns the state the breaker rejected the call in: [Open], or
// [HalfOpen] when every probe slot was taken.
func (e *OpenError) State() State { return e.state }

// Forced reports whether the breaker was forced open ([Breaker.ForceOpen]).
func (e *OpenError) Forced() bool { return e.forced }

// Remaining returns how long, from now, the breaker that rejected the call
// stays open before it half-opens, for example to tell a client when to
// come back. It is computed when called, from the breaker's current state:
// it returns 0 when the breaker is no longer open, is half-open, or is
// forced open (which has no end).
func (e *OpenError) Remaining() time.Duration {
	if e.b == nil {
		return 0
	}
	return e.b.openRemaining()
}

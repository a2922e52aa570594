package server

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
)

// DeadlineConfig configures deadline enforcement. The zero value rejects
// only calls whose deadline has already passed and gives no default
// deadline.
type DeadlineConfig struct {
	// MinRemaining rejects a call that arrives with less than this much time
	// left before its deadline: the work could not finish in time, so
	// starting it only wastes capacity. The default, zero, rejects only calls
	// whose deadline has passed. Calls without a deadline are never
	// rejected. Must not be negative.
	MinRemaining time.Duration
	// Default is the deadline given to a call that carries none. The
	// default, zero, gives none. Must not be negative.
	Default time.Duration
}

// Validate reports every field that is out of range, each as a
// *[resilience.FieldError] ("MinRemaining", "Default") joined with
// [errors.Join]. The zero value is valid.
func (c DeadlineConfig) Validate() error {
	var p problems
	if c.MinRemaining < 0 {
		p.add("MinRemaining", c.MinRemaining, "must not be negative")
	}
	if c.Default < 0 {
		p.add("Default", c.Default, "must not be negative")
	}
	return p.err()
}

// deadline is the deadline stage of a [Server]: it rejects, without
// running the handler, a call whose deadline has passed or leaves less
// than the configured minimum, and gives a default deadline to calls
// without one.
//
// The rejection is DEADLINE_EXCEEDED, the code the client would have got
// anyway had the server run the call, so that client retry and breaker
// logic treat it as the timeout it is; on the server the error also matches
// *[resilience.TimeoutError] (whose After is the time the call had left, at
// least 0) and [context.DeadlineExceeded].
//
// A deadline is immutable and safe for concurrent use.
type deadline struct {
	cfg DeadlineConfig
	obs Observer
	now func() time.Time
}

func newDeadline(cfg DeadlineConfig, obs Observer) *deadline {
	return &deadline{cfg: cfg, obs: obs, now: time.Now}
}

// admit rejects the call or returns the context to run it with. When the
// call gets the default deadline, cancel is the function that releases the
// new context; otherwise ctx is unchanged and cancel is nil.
func (d *deadline) admit(ctx context.Context, fullMethod string) (context.Context, context.CancelFunc, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		if d.cfg.Default <= 0 {
			return ctx, nil, nil
		}
		d.obs.emit(ctx, Event{Kind: EventDefaultDeadline, FullMethod: fullMethod, Delay: d.cfg.Default})
		ctx, cancel := context.WithTimeout(ctx, d.cfg.Default)
		return ctx, cancel, nil
	}
	remaining := dl.Sub(d.now())
	if !tooLate(remaining, d.cfg.MinRemaining) {
		return ctx, nil, nil
	}
	d.obs.emit(ctx, Event{Kind: EventDeadlineRejected, FullMethod: fullMethod, Code: codes.DeadlineExceeded, Remaining: remaining})
	return nil, nil, deadlineError(remaining, d.cfg.MinRemaining)
}

// tooLate reports whether a call with remaining time left must be
// rejected: its deadline passed, or less than minRemaining is left.
func tooLate(remaining, minRemaining time.Duration) bool {
	return remaining <= 0 || remaining < minRemaining
}

// deadlineError is the rejection of a call that had remaining time left.
func deadlineError(remaining, minRemaining time.Duration) error {
	var msg string
	if remaining <= 0 {
		msg = "server: deadline exceeded before the call started"
	} else {
		msg = fmt.Sprintf("server: %v left before the deadline, below the minimum of %v", remaining, minRemaining)
	}
	return interceptors.NewStatusError(status.New(codes.DeadlineExceeded, msg), &resilience.TimeoutError{After: max(remaining, 0)})
}

// contextStream is a grpc.ServerStream whose Context is replaced.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the replaced context.
func (s *contextStream) Context() context.Context { return s.ctx }

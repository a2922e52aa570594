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

// Validate reports the first field that is out of range, naming the field
// and the bad value. The zero value is valid.
func (c DeadlineConfig) Validate() error {
	switch {
	case c.MinRemaining < 0:
		return fmt.Errorf("server: DeadlineConfig.MinRemaining: %v, must be at least 0", c.MinRemaining)
	case c.Default < 0:
		return fmt.Errorf("server: DeadlineConfig.Default: %v, must be at least 0", c.Default)
	}
	return nil
}

// Deadline enforces deadlines on the server: it rejects, without running
// the handler, a call whose deadline has passed or leaves less than the
// configured minimum, and gives a default deadline to calls without one.
//
// The rejection is DEADLINE_EXCEEDED, the code the client would have got
// anyway had the server run the call, so that client retry and breaker
// logic treat it as the timeout it is; on the server the error also matches
// *[resilience.TimeoutError] (whose After is the time the call had left, at
// least 0) and [context.DeadlineExceeded].
//
// A Deadline is immutable and safe for concurrent use. Create it with
// [NewDeadline]; the zero value is not usable.
type Deadline struct {
	cfg    DeadlineConfig
	exempt *exemptions
	obs    Observer
	now    func() time.Time
}

// NewDeadline returns a Deadline configured by cfg and opts, or an error
// naming the bad field when cfg or an option is invalid.
func NewDeadline(cfg DeadlineConfig, opts ...Option) (*Deadline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o, ex, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	return &Deadline{cfg: cfg, exempt: ex, obs: o.observer, now: time.Now}, nil
}

// UnaryServerInterceptor returns the unary interceptor. A rejected call's
// handler never runs.
func (d *Deadline) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if d.exempt.match(info.FullMethod) {
			return handler(ctx, req)
		}
		ctx, cancel, err := d.admit(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		if cancel != nil {
			defer cancel()
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor returns the stream interceptor. A rejected
// stream's handler never runs; a stream that gets the default deadline sees
// it in its Context.
func (d *Deadline) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if d.exempt.match(info.FullMethod) {
			return handler(srv, ss)
		}
		ctx, cancel, err := d.admit(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		if cancel != nil {
			defer cancel()
			ss = &contextStream{ServerStream: ss, ctx: ctx}
		}
		return handler(srv, ss)
	}
}

// admit rejects the call or returns the context to run it with. When the
// call gets the default deadline, cancel is the function that releases the
// new context; otherwise ctx is unchanged and cancel is nil.
func (d *Deadline) admit(ctx context.Context, fullMethod string) (context.Context, context.CancelFunc, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		if d.cfg.Default <= 0 {
			return ctx, nil, nil
		}
		d.obs.Observe(ctx, Event{Kind: EventDefaultDeadline, FullMethod: fullMethod, Delay: d.cfg.Default})
		ctx, cancel := context.WithTimeout(ctx, d.cfg.Default)
		return ctx, cancel, nil
	}
	remaining := dl.Sub(d.now())
	if !tooLate(remaining, d.cfg.MinRemaining) {
		return ctx, nil, nil
	}
	d.obs.Observe(ctx, Event{Kind: EventDeadlineRejected, FullMethod: fullMethod, Code: codes.DeadlineExceeded, Remaining: remaining})
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

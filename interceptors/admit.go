package interceptors

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/throttle"
)

// admission is what the circuit breaker and the bulkhead granted one
// attempt. Its zero value holds nothing; both permits are no-ops when zero.
type admission struct {
	// permit is the breaker's permit, to be told the attempt's outcome;
	// zero without a breaker.
	permit breaker.Permit
	// tpermit is the throttle's permit, likewise; zero without a
	// throttle.
	tpermit throttle.Permit
	// slot is the bulkhead slot the attempt took, to be released when the
	// call is done with it; zero when admit took none.
	slot bulkhead.Permit
}

// admit lets one attempt through the patterns that run before it reaches
// the server, in the pipeline's order. It refuses to start once ctx is
// done. For a retry, a hedge, or any attempt that may wait here (for its
// rate limit or in its bulkhead's queue) it also compares the clock with
// ctx's deadline, since the timer that ends ctx may run late on a loaded
// machine; a first attempt that cannot wait goes to gRPC at once, whose
// transport refuses a call whose deadline has passed. It then asks the
// method's circuit breaker, then its adaptive throttle, then takes a
// permit of the rate limit (waiting for it when the policy says so), then
// takes a slot from bh, waiting as the bulkhead's queue allows. bh is
// ms.bulkheadFor() for a unary attempt and for the first attempt of a stream;
// nil for a stream's later attempts, which run in the slot of its first.
//
// On success it fills info's Breaker, BreakerState and BulkheadWait (the
// latter only with an observer). On refusal it returns what it took back
// (the breaker's permit, ignored: the server was not asked) and an error
// that is always a *StatusError: UNAVAILABLE with the breaker's
// *breaker.OpenError for an open circuit, UNAVAILABLE with
// resilience.ErrThrottled for a throttled attempt, RESOURCE_EXHAUSTED with a
// *resilience.RateLimitedError over the rate or resilience.ErrBulkheadFull
// for a full bulkhead, CANCELLED or
// DEADLINE_EXCEEDED for a context that ended. Rejections are reported to
// the observer as EventBreakerRejected, EventThrottled, EventRateLimited and
// EventBulkheadRejected on ctx, on the caller's goroutine, with no lock
// held.
// obs is the observers the call started with (nil: nobody listens).
func (ms *methodState) admit(ctx context.Context, obs *Observer, info *AttemptInfo, bh *bulkhead.Bulkhead) (admission, error) {
	if err := ctx.Err(); err != nil {
		return admission{}, finalError(err)
	}
	if info.Attempt > 1 || ms.admitMayWait {
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			return admission{}, finalError(context.DeadlineExceeded)
		}
	}
	var adm admission
	if b := ms.guard(); b != nil {
		p, err := b.Allow()
		if err != nil {
			if obs != nil {
				state := breaker.Open
				if oe, ok := errors.AsType[*breaker.OpenError](err); ok {
					state = oe.State()
				}
				obs.event(ctx, Event{Kind: EventBreakerRejected, Method: ms.method, Target: ms.target, Attempt: info.Attempt, Err: err, BreakerState: state})
			}
			return admission{}, newCodeError(codes.Unavailable, err)
		}
		adm.permit = p
		info.Breaker, info.BreakerState = true, p.State()
	}
	if t := ms.throttleFor(); t != nil {
		p, err := t.Allow()
		if err != nil {
			adm.permit.Done(breaker.Ignored) // the server was not asked
			if obs != nil {
				var p float64
				if re, ok := errors.AsType[*throttle.RejectedError](err); ok {
					p = re.Probability
				}
				obs.event(ctx, Event{Kind: EventThrottled, Method: ms.method, Target: ms.target, Attempt: info.Attempt, Err: err, Probability: p})
			}
			return admission{}, newCodeError(codes.Unavailable, err)
		}
		adm.tpermit = p
	}
	if err := ms.takeRate(ctx, obs, info); err != nil {
		adm.permit.Done(breaker.Ignored) // the server was not asked
		adm.tpermit.Done(throttle.Ignored)
		return admission{}, err
	}
	if bh != nil {
		var start time.Time
		if obs != nil {
			start = time.Now()
		}
		slot, err := bh.Acquire(ctx)
		if err != nil {
			adm.permit.Done(breaker.Ignored) // the server was not asked
			adm.tpermit.Done(throttle.Ignored)
			if errors.Is(err, resilience.ErrBulkheadFull) {
				if obs != nil {
					obs.event(ctx, Event{Kind: EventBulkheadRejected, Method: ms.method, Target: ms.target, Attempt: info.Attempt, Err: err})
				}
				return admission{}, newCodeError(codes.ResourceExhausted, err)
			}
			return admission{}, finalError(err)
		}
		adm.slot = slot
		if obs != nil {
			info.BulkheadWait = time.Since(start)
		}
	}
	return adm, nil
}

// takeRate takes one permit of the method's rate limit, if it has one. It
// returns nil, or a *StatusError: RESOURCE_EXHAUSTED with the limiter's
// *resilience.RateLimitedError, or the context's error when the caller's
// context ended while the attempt waited for its permit.
func (ms *methodState) takeRate(ctx context.Context, obs *Observer, info *AttemptInfo) error {
	l := ms.limiter
	if l == nil {
		return nil
	}
	var err error
	if ms.c.p.RateLimit.Wait {
		err = l.Wait(ctx, ms.limiterKey)
	} else if d, _ := l.Take(ctx, ms.limiterKey, 1); !d.Allowed {
		err = d.Err()
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, resilience.ErrRateLimited):
		ms.limited.Add(1)
		if obs != nil {
			obs.event(ctx, Event{Kind: EventRateLimited, Method: ms.method, Target: ms.target, Attempt: info.Attempt, Err: err})
		}
		return newCodeError(codes.ResourceExhausted, err)
	}
	return finalError(err)
}

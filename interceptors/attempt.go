package interceptors

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	"github.com/engineeringlabs/grpc-resilience/throttle"
)

// PreviousAttemptsHeader is the request header that tells the server how
// many attempts of the call came before this one (gRFC A6). The pipeline
// sets it on every attempt after the first, retries and hedges alike.
const PreviousAttemptsHeader = "grpc-previous-rpc-attempts"

// attemptResult is what one attempt amounted to.
type attemptResult struct {
	// err is the attempt's error as the retry engine should see it: the
	// invoker's status error, wrapped when the attempt's own timeout fired
	// (a *StatusError with a *resilience.TimeoutError) or the server sent
	// pushback (a pushbackError); a rejection's *StatusError; nil on
	// success.
	err error
	// retryable is the classification table's verdict.
	retryable bool
	// invoked reports whether the attempt reached the invoker.
	invoked bool
	// pushback is what the server said about retrying.
	pushback classify.Pushback
	// code is the attempt's status code.
	code codes.Code
	// end is the clock reading taken when the invoker returned, shared by
	// the breaker, the budget and the hedging histogram; zero when the
	// attempt was refused before the invoker or when nothing needs the
	// time (see methodState.clockAtEnd).
	end time.Time
}

// capture holds what one attempt needs to read the server's trailer
// without allocating beyond gRPC's own copy of it: the call options with
// grpc.Trailer appended, and the metadata it fills. Pushback is a trailer
// (gRFC A6); a trailers-only response, the usual form of an error, carries
// its metadata there too. The invoker writes the metadata before it
// returns and keeps no reference to the options after, so a capture is
// reused once the attempt is over.
type capture struct {
	trailer metadata.MD
	opts    []grpc.CallOption
}

var capturePool = sync.Pool{New: func() any { return new(capture) }}

// attempt runs one attempt through the inner patterns: circuit breaker,
// throttle, rate limit, bulkhead, per-attempt timeout, then the invoker, with reply
// as the message to decode into. capt asks for the server's trailer, to
// read pushback. It never blocks beyond the rate limit's wait,
// the bulkhead's queue and the invoker.
func (ms *methodState) attempt(ctx context.Context, r *rpc, reply any, info AttemptInfo, timeout time.Duration, idempotent, capt bool) attemptResult {
	obs := r.obs
	adm, err := ms.admit(ctx, obs, &info, ms.bulkheadFor())
	if err != nil {
		return attemptResult{err: err, code: status.Code(err)}
	}
	permit, tpermit, slot := adm.permit, adm.tpermit, adm.slot

	actx := ctx
	if info.Attempt > 1 {
		actx = metadata.AppendToOutgoingContext(actx, PreviousAttemptsHeader, strconv.Itoa(info.Attempt-1))
	}
	info.Timeout = timeout
	if obs != nil {
		info.Method, info.Target = ms.method, ms.target
		actx = obs.attemptStart(actx, info)
	}
	obsCtx := actx
	var cancel context.CancelFunc
	if timeout > 0 {
		actx, cancel = context.WithTimeoutCause(actx, timeout, errAttemptTimeout)
	}

	var trailer metadata.MD
	if capt {
		c := capturePool.Get().(*capture)
		c.opts = append(append(c.opts[:0], r.opts...), grpc.Trailer(&c.trailer))
		err = r.invoker(actx, r.method, r.req, reply, r.cc, c.opts...)
		trailer = c.trailer
		clear(c.opts)
		c.opts, c.trailer = c.opts[:0], nil
		capturePool.Put(c)
	} else {
		err = r.invoker(actx, r.method, r.req, reply, r.cc, r.opts...)
	}
	res := attemptResult{invoked: true}
	if ms.clockAtEnd {
		res.end = time.Now()
	}
	timedOut := err != nil && cancel != nil && ownTimeout(ctx, actx, errAttemptTimeout)
	if cancel != nil {
		cancel()
	}

	if err == nil {
		res.done(permit, breaker.Success)
		tpermit.Done(throttle.Accepted)
		slot.Release()
		if obs != nil {
			obs.attemptEnd(obsCtx, info, nil)
		}
		return res
	}

	st := statusOf(err)
	res.code = st.Code()
	inner := isRejection(err) // by an interceptor further in: no server was asked
	if capt && !inner {
		res.pushback = classify.PushbackOf(st, trailer)
	}
	attemptTimedOut := timedOut && res.code == codes.DeadlineExceeded && ctx.Err() == nil

	switch {
	case inner:
		res.done(permit, breaker.Ignored)
	default:
		res.done(permit, breakerOutcome(ms.c.breakerTable.Breaker(res.code)))
	}
	tpermit.Done(ms.c.throttleOutcome(res.code, inner || errors.Is(ctx.Err(), context.Canceled)))
	switch res.code {
	case codes.DeadlineExceeded:
		slot.ReleaseWith(bulkhead.OutcomeDropped)
	case codes.Canceled:
		slot.ReleaseWith(bulkhead.OutcomeIgnored)
	default:
		slot.Release()
	}

	res.err = err
	if attemptTimedOut {
		res.err = &StatusError{st: st, cause: &resilience.TimeoutError{After: timeout}}
	}
	if res.pushback.Present {
		res.err = &pushbackError{err: res.err, st: st, pb: res.pushback}
	}
	res.retryable = !inner && ms.c.retryTable.Retryable(classify.Attempt{
		Code:            res.code,
		Idempotent:      idempotent,
		Pushback:        res.pushback,
		AttemptTimedOut: attemptTimedOut,
	})
	if obs != nil {
		info.Pushback = res.pushback
		obs.attemptEnd(obsCtx, info, res.err)
	}
	return res
}

// done records the attempt's outcome o with the breaker's permit, at the
// attempt's end when the clock was read then, so that the breaker needs no
// reading of its own.
func (res *attemptResult) done(p breaker.Permit, o breaker.Outcome) {
	if res.end.IsZero() {
		p.Done(o)
		return
	}
	p.DoneAt(o, res.end)
}

// breakerOutcome maps the table's verdict to the breaker's outcome.
func breakerOutcome(o classify.BreakerOutcome) breaker.Outcome {
	switch o {
	case classify.BreakerSuccess:
		return breaker.Success
	case classify.BreakerIgnore:
		return breaker.Ignored
	default:
		return breaker.Failure
	}
}

// throttleOutcome says how an attempt that ended with code counts for
// the throttle: not at all when no server answer is behind it (gone is
// set: a rejection further in, or the caller gave up) or when the
// throttle's table ignores the code, refused when the table counts it as
// a failure, accepted otherwise.
func (cp *compiled) throttleOutcome(code codes.Code, gone bool) throttle.Outcome {
	if gone {
		return throttle.Ignored
	}
	switch cp.throttleTable.Breaker(code) {
	case classify.BreakerFailure:
		return throttle.Rejected
	case classify.BreakerIgnore:
		return throttle.Ignored
	}
	return throttle.Accepted
}

// ownTimeout reports whether actx, made from ctx with a timeout whose
// cause is cause (the attempt's or the default timeout), has run out of its
// own time rather than ctx's. Only actx's own timer sets cause (ctx's
// deadline reaches actx with ctx's cause), but gRPC may report DEADLINE_EXCEEDED a moment before the timer
// fires, when the server's reset arrives after the deadline: then the
// attempt's deadline has passed while it was earlier than the caller's.
func ownTimeout(ctx, actx context.Context, cause error) bool {
	if context.Cause(actx) == cause {
		return true
	}
	own, _ := actx.Deadline()
	if caller, ok := ctx.Deadline(); ok && !own.Before(caller) {
		return false
	}
	return !time.Now().Before(own)
}

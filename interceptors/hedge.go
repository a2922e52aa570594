package interceptors

import (
	"context"
	"reflect"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/retry"
)

// hedgeResult is the outcome of one hedged attempt.
type hedgeResult struct {
	n       int // attempt number, from 1
	res     attemptResult
	latency time.Duration
}

// hedgeCall runs a hedged call (gRFC A6): attempt 1 at once, then one more
// after each hedging delay while no answer has come, up to maxAttempts.
// The first success wins; a fatal error ends the call with that error; a
// non-fatal one lets the next attempt start at once (or after the server's
// pushback; a pushback veto stops hedging). Extra attempts draw on the
// budget. When the call is decided, the other attempts are cancelled and
// hedgeCall waits for them to return, so that no attempt outlives the call
// and the winner's reply can be copied into the caller's without a race.
//
// Attempt 1 decodes into the caller's reply, every other attempt into a
// message of its own; a winner other than attempt 1 is copied into the
// caller's reply once every attempt has returned.
func (ms *methodState) hedgeCall(ctx context.Context, r *rpc, maxAttempts int, timeout time.Duration, attempts *int) error {
	obs := r.obs
	hr := new(rpc) // the attempts' goroutines share this copy, not the caller's
	*hr = *r
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()

	results := make(chan hedgeResult, maxAttempts) // buffered: attempts never block
	replies := make([]any, maxAttempts)
	// The type of the hedges' replies is read now, before attempt 1 starts
	// decoding into the caller's reply: reading it from that message later
	// would race with the decoding.
	newHedgeReply := replyMaker(hr.reply) // canClone was checked by call
	launched, outstanding := 0, 0
	lastLaunch := time.Now()
	launch := func() {
		launched++
		outstanding++
		n := launched
		reply := hr.reply
		if n > 1 {
			reply = newHedgeReply()
		}
		replies[n-1] = reply
		now := time.Now()
		info := AttemptInfo{Attempt: n, Hedge: n > 1}
		if n > 1 {
			info.Delay = now.Sub(lastLaunch)
			if obs != nil {
				obs.event(ctx, Event{Kind: EventHedge, Method: ms.method, Target: ms.target, Attempt: n, Delay: info.Delay})
			}
		}
		lastLaunch = now
		go func() {
			res := ms.attempt(hctx, hr, reply, info, timeout, true, true)
			end := res.end
			if end.IsZero() {
				end = time.Now()
			}
			results <- hedgeResult{n: n, res: res, latency: end.Sub(now)}
		}()
	}
	stopped := false // no further hedges: vetoed, rejected or denied
	tryLaunch := func() bool {
		if stopped || launched >= maxAttempts || ctx.Err() != nil {
			return false
		}
		if ms.budget != nil && !ms.budget.AllowRetry() {
			stopped = true
			if obs != nil {
				obs.event(ctx, Event{Kind: EventBudgetDenied, Method: ms.method, Target: ms.target, Attempt: launched})
			}
			return false
		}
		launch()
		return true
	}

	delay := ms.hedgeDelay()
	var timer *time.Timer
	var timerC <-chan time.Time
	arm := func(d time.Duration) {
		if stopped || launched >= maxAttempts {
			timerC = nil
			return
		}
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		timerC = timer.C
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()

	launch()
	arm(delay)
	winner := 0
	var final, lastErr error
	nonFatalLast := false
	done := ctx.Done()
loop:
	for outstanding > 0 || timerC != nil {
		select {
		case hres := <-results:
			outstanding--
			ms.recordHedge(hres, false)
			*attempts += b2i(hres.res.invoked)
			err := hres.res.err
			if err == nil {
				winner = hres.n
				if ms.hist != nil {
					ms.hist.record(hres.latency)
				}
				break loop
			}
			lastErr, nonFatalLast = err, false
			switch code := hres.res.code; {
			case isRejection(err):
				// A breaker or bulkhead said no: send no more, but let the
				// attempts in flight finish.
				stopped = true
				timerC = nil
			case code > maxCode || !ms.c.nonFatal[code]:
				final = err
				break loop
			case hres.res.pushback.Present && !hres.res.pushback.Retry:
				nonFatalLast = true
				stopped = true
				timerC = nil
			case hres.res.pushback.Present:
				nonFatalLast = true
				arm(hres.res.pushback.Delay)
			default:
				nonFatalLast = true
				if tryLaunch() {
					arm(delay)
				}
			}
		case <-timerC:
			timerC = nil
			if tryLaunch() {
				arm(delay)
			}
		case <-done:
			// The attempts see it too and return soon; start no more.
			done = nil
			stopped = true
			timerC = nil
		}
		if stopped && outstanding == 0 {
			break
		}
	}
	cancel()
	for ; outstanding > 0; outstanding-- {
		hres := <-results
		ms.recordHedge(hres, hres.n != winner)
		*attempts += b2i(hres.res.invoked)
	}

	if winner > 0 {
		if winner > 1 {
			copyReply(r.reply, replies[winner-1])
		}
		return nil
	}
	end := hedgeEnd{final: final, last: lastErr, exhausted: nonFatalLast && launched >= maxAttempts && ctx.Err() == nil}
	err := end.err(launched)
	if end.exhausted && obs != nil && lastErr != nil {
		obs.event(ctx, Event{Kind: EventRetriesExhausted, Method: ms.method, Target: ms.target, Attempt: launched, Err: lastErr})
	}
	return err
}

// hedgeEnd is how a hedged call without a winner ended.
type hedgeEnd struct {
	final     error // a fatal error that ended the call
	last      error // the error of the last attempt that reported
	exhausted bool  // every attempt allowed ran and the last failure was non-fatal
}

// err returns the error a hedged call without a winner ends with, after
// launched attempts. A call without a winner always has an error: should no
// attempt have reported one, it fails with INTERNAL rather than report
// success with an empty reply.
func (h hedgeEnd) err(launched int) error {
	switch {
	case h.final != nil:
		return finalError(h.final)
	case h.last == nil:
		return status.Error(codes.Internal, "interceptors: hedged call ended without an attempt result")
	case h.exhausted:
		return finalError(&resilience.RetriesExhaustedError{Attempts: launched, Err: h.last})
	default:
		return finalError(h.last)
	}
}

// recordHedge tells the budget how a hedged attempt ended; an attempt
// cancelled because another one decided the call counts as a final
// failure, which changes no token bucket but still counts the call.
func (ms *methodState) recordHedge(h hedgeResult, cancelled bool) {
	b := ms.budget
	if b == nil {
		return
	}
	o := retry.FinalFailure
	switch {
	case h.res.err == nil:
		o = retry.Success
	case !cancelled && h.res.code <= maxCode && ms.c.nonFatal[h.res.code]:
		o = retry.RetryableFailure
	}
	if tb := ms.timedBudget; tb != nil && !h.res.end.IsZero() {
		tb.RecordAt(h.n, o, h.res.end)
		return
	}
	b.Record(h.n, o)
}

// hedgeDelay returns the wait before each extra attempt: the observed
// latency percentile once enough samples are known, otherwise Delay.
func (ms *methodState) hedgeDelay() time.Duration {
	h := ms.c.p.Hedging
	if ms.hist != nil {
		minSamples := h.MinSamples
		if minSamples == 0 {
			minSamples = defaultMinSamples
		}
		if d, ok := ms.hist.quantile(h.Percentile/100, minSamples); ok {
			return d
		}
	}
	return h.Delay
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// canClone reports whether a reply message of this kind can be duplicated
// for a hedged attempt: a proto message or any other non-nil pointer.
func canClone(reply any) bool {
	if _, ok := reply.(proto.Message); ok {
		return true
	}
	v := reflect.ValueOf(reply)
	return v.Kind() == reflect.Pointer && !v.IsNil()
}

// replyMaker returns a function that makes empty messages of reply's type,
// which canClone accepted.
func replyMaker(reply any) func() any {
	if m, ok := reply.(proto.Message); ok {
		mt := m.ProtoReflect().Type()
		return func() any { return mt.New().Interface() }
	}
	t := reflect.TypeOf(reply).Elem()
	return func() any { return reflect.New(t).Interface() }
}

// copyReply makes dst a copy of src, a message replyMaker made for dst:
// proto.Reset and proto.Merge for proto messages, a shallow copy of the
// pointed-to value otherwise.
func copyReply(dst, src any) {
	if d, ok := dst.(proto.Message); ok {
		proto.Reset(d)
		proto.Merge(d, src.(proto.Message))
		return
	}
	reflect.ValueOf(dst).Elem().Set(reflect.ValueOf(src).Elem())
}

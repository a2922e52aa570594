package console

import (
	"context"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
)

// clientObserver returns the hooks the console subscribes to a client
// with: OnEvent, which runs only off the happy path, and OnCallEnd, which
// returns after one comparison for a call of one attempt.
func (p *pipeline) clientObserver() interceptors.Observer {
	return interceptors.Observer{OnEvent: p.clientEvent, OnCallEnd: p.clientCallEnd}
}

func (p *pipeline) clientEvent(ctx context.Context, e interceptors.Event) {
	p.count(int(e.Kind))
	switch e.Kind {
	case interceptors.EventBreakerStateChange:
		p.breakerChanged(e.StateChange)
		return
	case interceptors.EventRetry, interceptors.EventHedge:
		r := p.row(keyOf(e.Target, e.Method))
		r.retries.Add(1)
		if e.PushbackHonoured {
			r.pushbacks.Add(1)
			r.pushbackWaitUS.Add(uint64(max(e.Delay.Microseconds(), 0)))
		}
	case interceptors.EventBudgetDenied:
		p.row(keyOf(e.Target, e.Method)).denied.Add(1)
	case interceptors.EventRetriesExhausted:
		p.row(keyOf(e.Target, e.Method)).exhausted.Add(1)
	case interceptors.EventFallback:
		p.row(keyOf(e.Target, e.Method)).fallback.Add(1)
	}
	switch e.Kind {
	case interceptors.EventRetry, interceptors.EventHedge, interceptors.EventBudgetDenied,
		interceptors.EventRetriesExhausted, interceptors.EventDeadline:
		if k, ok := callKeyOf(ctx); ok {
			opens := e.Kind == interceptors.EventRetry || e.Kind == interceptors.EventHedge
			p.addStep(k, Step{
				Attempt: e.Attempt,
				Code:    codeOf(e.Err),
				WaitMS:  float64(e.Delay.Microseconds()) / 1000,
				Kind:    e.Kind.String(),
			}, p.c.now(), opens)
		}
	}
	if p.wants(int(e.Kind)) {
		p.remember(int(e.Kind), Event{
			Pipeline: p.name,
			Kind:     e.Kind.String(),
			Target:   clip(e.Target),
			Method:   clip(e.Method),
			Key:      clip(e.Key),
			Text:     clientEventText(e),
			Trouble:  clientEventTrouble(e.Kind),
		})
	}
}

// codeOf returns the name of err's status code, "" for nil.
func codeOf(err error) string {
	if err == nil {
		return ""
	}
	return status.Code(err).String()
}

func clientEventTrouble(k interceptors.EventKind) int {
	switch k {
	case interceptors.EventBreakerRejected:
		return TroubleOpen
	case interceptors.EventBulkheadRejected, interceptors.EventRateLimited, interceptors.EventThrottled, interceptors.EventBudgetDenied, interceptors.EventOverflow:
		return TroubleLimited
	case interceptors.EventEvicted, interceptors.EventHedge:
		return TroubleNone
	}
	return TroubleFailing
}

func clientEventText(e interceptors.Event) string {
	code := codeOf(e.Err)
	switch e.Kind {
	case interceptors.EventRetry:
		return "attempt " + strconv.Itoa(e.Attempt) + " failed with " + code + "; retry after " + e.Delay.String()
	case interceptors.EventHedge:
		return "hedge " + strconv.Itoa(e.Attempt) + " after " + e.Delay.String()
	case interceptors.EventRetriesExhausted:
		return "every attempt failed, the last (" + strconv.Itoa(e.Attempt) + ") with " + code
	case interceptors.EventDeadline:
		return "no retry after attempt " + strconv.Itoa(e.Attempt) + ": the wait would pass the deadline"
	case interceptors.EventBudgetDenied:
		return "the retry budget refused a retry after attempt " + strconv.Itoa(e.Attempt)
	case interceptors.EventBreakerRejected:
		return "the " + e.BreakerState.String() + " breaker refused attempt " + strconv.Itoa(e.Attempt)
	case interceptors.EventBulkheadRejected:
		return "the bulkhead refused attempt " + strconv.Itoa(e.Attempt)
	case interceptors.EventRateLimited:
		return "the rate limit refused attempt " + strconv.Itoa(e.Attempt)
	case interceptors.EventThrottled:
		return "the adaptive throttle refused attempt " + strconv.Itoa(e.Attempt) + " (probability " + strconv.FormatFloat(e.Probability, 'f', 2, 64) + ")"
	case interceptors.EventFallback:
		return "the fallback was asked to answer a call that failed with " + code
	case interceptors.EventEvicted:
		return "the " + e.Cache + " cache dropped an idle entry"
	case interceptors.EventOverflow:
		return "the " + e.Cache + " cache is full of busy entries: a new key shares the overflow entry"
	}
	return e.Kind.String()
}

// breakerChanged records a breaker transition and asks for an early
// sample, so that the page shows it at once.
func (p *pipeline) breakerChanged(sc breaker.StateChange) {
	now := p.c.now()
	key := clip(sc.Name)
	p.transition(key, sc.To.String(), sc.Mode.String(), now)
	text := sc.From.String() + " → " + sc.To.String()
	if sc.Mode != breaker.Auto {
		text += " (" + sc.Mode.String() + ")"
	}
	if r := sc.Reason.String(); r != "" {
		text += ", " + r
	}
	if sc.OpenFor > 0 {
		text += ", open for " + sc.OpenFor.String()
	}
	t := TroubleNone
	switch sc.To {
	case breaker.Open:
		t = TroubleOpen
	case breaker.HalfOpen:
		t = TroubleHalfOpen
	}
	p.c.addEvent(Event{Time: now, Pipeline: p.name, Kind: interceptors.EventBreakerStateChange.String(), Text: text, Key: key, Count: 1, Trouble: t})
	p.c.poke()
}

func (p *pipeline) clientCallEnd(ctx context.Context, info interceptors.CallInfo, err error) {
	if info.Attempts <= 1 {
		// The happy path ends here. A call whose retry never reached the
		// server may have left steps behind: they age out (see addStep).
		return
	}
	sc := trace.SpanContextFromContext(ctx)
	var id string
	if sc.HasTraceID() {
		id = sc.TraceID().String()
	}
	r := RetriedCall{
		Time:     p.c.now(),
		Pipeline: p.name,
		Target:   clip(info.Target),
		Method:   clip(info.Method),
		Attempts: info.Attempts,
		Code:     status.Code(err).String(),
		Fallback: info.Fallback,
		TraceID:  id,
		TraceURL: p.c.cfg.traceURL(id),
	}
	if k, ok := callKeyOf(ctx); ok {
		r.Steps = p.takeSteps(k)
	}
	p.c.addRetried(r)
}

// clientRows reads the client's snapshot into rows, one per (target,
// method), and the pipeline's budgets.
func (p *pipeline) clientRows(out *Pipeline, now time.Time, elapsed time.Duration, regular bool) []Row {
	snap := p.client.Snapshot()
	for _, b := range snap.Budgets {
		if len(out.Budgets) >= p.c.cfg.MaxRows {
			break
		}
		out.Budgets = append(out.Budgets, Budget{Target: clip(b.Target), Type: b.Type, Available: b.Available})
	}
	keep := make(map[string]bool)
	keepRows := make(map[rowKey]bool, len(snap.Methods))
	rows := make([]Row, 0, len(snap.Methods))
	for _, m := range snap.Methods {
		r := Row{Kind: RowMethod, Target: clip(m.Target), Method: clip(m.Method)}
		r.ID = "m " + r.Target + " " + r.Method
		var cur countSet
		k := keyOf(m.Target, m.Method)
		keepRows[k] = true
		if rc := p.rowCountsOf(k); rc != nil {
			cur = rc.load()
		}
		if m.Breaker != nil {
			cur.breakerRejected = m.Breaker.Metrics.Rejections
		}
		if m.Bulkhead != nil {
			cur.bulkheadRejected = m.Bulkhead.Metrics.Rejected
		}
		if m.RateLimit != nil {
			cur.limited = m.RateLimit.Limited
		}
		if m.Throttle != nil {
			cur.throttled = m.Throttle.Metrics.Rejected
		}
		st := p.rowState(r.ID, now)
		prev := st.step(cur, regular)
		perSec := func(a, b uint64) float64 { return rate(a, b, elapsed) }

		if b := m.Breaker; b != nil {
			mt := b.Metrics
			key := clip(b.Key)
			keep[key] = true
			inState, atLeast := p.inState(key, mt.State.String(), now)
			r.Breaker = &Breaker{
				Key:                   key,
				Scope:                 b.Scope.String(),
				State:                 mt.State.String(),
				Mode:                  mt.Mode.String(),
				InStateMS:             inState.Milliseconds(),
				InStateAtLeast:        atLeast,
				Transitions:           mt.Transitions,
				WindowCalls:           mt.WindowCalls,
				FailureRate:           finite(mt.FailureRate),
				SlowCallRate:          finite(mt.SlowCallRate),
				FailureRateThreshold:  finite(b.FailureRateThreshold),
				SlowCallRateThreshold: finite(b.SlowCallRateThreshold),
				RejectedPerSec:        perSec(prev.breakerRejected, cur.breakerRejected),
			}
		}
		if b := m.Bulkhead; b != nil {
			r.Bulkhead = &Bulkhead{
				InFlight:        b.Metrics.InFlight,
				Waiting:         b.Metrics.Waiting,
				Limit:           b.Metrics.Limit,
				ConfiguredLimit: b.Limit,
				Adaptive:        b.Metrics.Limit != b.Limit,
				RejectedPerSec:  perSec(prev.bulkheadRejected, cur.bulkheadRejected),
			}
		}
		if th := m.Throttle; th != nil {
			r.Throttle = &Throttle{
				Probability:    finite(th.Metrics.Probability),
				RejectedPerSec: perSec(prev.throttled, cur.throttled),
				Requests:       th.Metrics.Requests,
				Accepts:        th.Metrics.Accepts,
				K:              finite(th.Metrics.K),
			}
		}
		if l := m.RateLimit; l != nil {
			r.RateLimit = &RateLimit{
				Rate:           finite(l.Rate),
				Burst:          l.Burst,
				Tokens:         finite(l.Tokens),
				AdmittedPerSec: -1,
				LimitedPerSec:  perSec(prev.limited, cur.limited),
			}
		}
		if m.Pattern != interceptors.PatternSingle || cur.fallback > 0 {
			r.Retry = &Retry{
				Pattern:         m.Pattern.String(),
				MaxAttempts:     m.MaxAttempts,
				RetriesPerSec:   perSec(prev.retries, cur.retries),
				DeniedPerSec:    perSec(prev.denied, cur.denied),
				ExhaustedPerSec: perSec(prev.exhausted, cur.exhausted),
				FallbackPerSec:  perSec(prev.fallback, cur.fallback),
				BudgetLeft:      -1,
			}
			r.Retry.pushback(prev, cur, elapsed)
			if m.Budget != nil {
				r.Retry.BudgetLeft = m.Budget.Available
			}
		}
		r.Trouble = trouble(r.Breaker, r.Bulkhead, r.RateLimit, r.Throttle, r.Retry, nil)
		r.Last = Sample{TimeMS: now.UnixMilli()}
		if r.Breaker != nil {
			r.Last.Failing = r.Breaker.FailureRate
			r.Last.Refused += r.Breaker.RejectedPerSec
		}
		if r.Bulkhead != nil {
			r.Last.InFlight = float64(r.Bulkhead.InFlight)
			r.Last.Refused += r.Bulkhead.RejectedPerSec
		}
		if r.RateLimit != nil {
			r.Last.Refused += r.RateLimit.LimitedPerSec
		}
		if r.Throttle != nil {
			r.Last.Refused += r.Throttle.RejectedPerSec
		}
		if r.Retry != nil {
			r.Last.Retries = r.Retry.RetriesPerSec
		}
		rows = append(rows, r)
	}
	p.pruneBreakers(keep)
	p.forgetRows(keepRows)
	return rows
}

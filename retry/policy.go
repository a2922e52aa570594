package retry

import (
	"context"
	"math/rand/v2"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// defaultBackoff is the backoff of the zero Config: Exponential(100ms, 10s, 2).
var defaultBackoff = Exponential(100*time.Millisecond, 10*time.Second, 2)

// Policy retries a function: it decides whether an attempt's error is worth
// another attempt, how long to wait before it, and when to give up. Create
// it with [NewFromConfig], or with the shorthand [New]; most callers then
// use [Policy.Do] or [DoValue].
//
// Defaults, those of the zero [Config]: one attempt; the backoff is
// Exponential(100ms, 10s, 2) with no jitter; every error is retried, except
// Permanent ones and any error once the caller's context is done (see Do);
// no maximum duration beyond the context's deadline; no budget; no hooks.
//
// A Policy is immutable once built and safe for concurrent use by any number
// of goroutines; share one per kind of call. [Policy.With] derives a
// modified copy. The zero Policy runs the function once, as New(1) does.
type Policy struct {
	cfg   Config      // normalized, except in the zero Policy
	timed TimedBudget // cfg.Budget when it implements TimedBudget

	clock  clock          // nil: realClock; tests replace it
	random func() float64 // nil: math/rand/v2's Float64; tests replace it
}

// MaxAttempts returns the most attempts the policy makes, the first one
// included; at least 1.
func (p *Policy) MaxAttempts() int { return max(p.cfg.MaxAttempts, 1) }

// Attempt describes the attempt about to run, for functions passed to
// [Policy.DoAttempt] and for [Call.Attempt].
type Attempt struct {
	// Num is the attempt's number: 1 for the first attempt, 2 for the first
	// retry. Num-1 is the value of gRPC's grpc-previous-rpc-attempts header.
	Num int
	// Delay is how long the engine waited before this attempt; 0 for the
	// first.
	Delay time.Duration
}

// Do calls fn until it succeeds or the policy gives up, waiting between
// attempts, and returns nil on success. fn receives ctx unchanged.
//
// When fn keeps failing, Do returns:
//   - ctx.Err() at once, without calling fn, when ctx is already done;
//   - ctx.Err() as soon as ctx is done during a wait between attempts (the
//     wait is abandoned at once);
//   - the last attempt's error as is when the caller's ctx is done after an
//     attempt: once ctx is done nothing is retried, whatever the error. An
//     error that merely matches context.Canceled or context.DeadlineExceeded
//     while ctx is still alive, such as a per-attempt *resilience.TimeoutError,
//     is retried like any other unless a condition says otherwise;
//   - the unmarked error for an error made with [Permanent], and the error as
//     is when the abort-if or retry-if predicate stops, or a [Pushback] vetoes;
//   - a *resilience.RetriesExhaustedError{Attempts, Err} when the last allowed
//     attempt failed with a retryable error (also for New(1)); it unwraps to
//     the last error;
//   - the last error as is when the next wait would end at or after ctx's
//     deadline or the maximum duration: Do never sleeps past the deadline and
//     returns at once instead of waiting in vain;
//   - the last error as is when the budget denies the retry.
//
// A successful first attempt allocates nothing. Do is safe for concurrent
// use. Its non-blocking twin is [Call.Next], which decides without waiting.
func (p *Policy) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	_, err := run(ctx, p, func(ctx context.Context, _ Attempt) (struct{}, error) {
		return struct{}{}, fn(ctx)
	})
	return err
}

// DoAttempt is [Policy.Do] for functions that need to know which attempt
// they run, and how long the engine waited before it, for instance to set
// gRPC's grpc-previous-rpc-attempts header or span attributes.
func (p *Policy) DoAttempt(ctx context.Context, fn func(ctx context.Context, a Attempt) error) error {
	_, err := run(ctx, p, func(ctx context.Context, a Attempt) (struct{}, error) {
		return struct{}{}, fn(ctx, a)
	})
	return err
}

// DoValue is [Policy.Do] for functions that return a value: it returns the
// value of the successful attempt. When the policy gives up it returns the
// value of the last attempt with the error (the zero T when fn never ran),
// so callers should ignore the value unless the error is nil. It is a
// function rather than a method because Go methods cannot have type
// parameters.
func DoValue[T any](ctx context.Context, p *Policy, fn func(ctx context.Context) (T, error)) (T, error) {
	return run(ctx, p, func(ctx context.Context, _ Attempt) (T, error) { return fn(ctx) })
}

// run is the retry loop of Do, DoAttempt and DoValue.
func run[T any](ctx context.Context, p *Policy, fn func(context.Context, Attempt) (T, error)) (T, error) {
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, err
	}
	c := p.Start()
	for {
		v, err := fn(ctx, c.Attempt())
		d := c.Next(ctx, err)
		if !d.Retry {
			return v, d.Err
		}
		if err := c.Wait(ctx, d.Delay); err != nil {
			return v, err
		}
	}
}

// Call is the state of one logical call under a [Policy], for callers that
// cannot put the whole call into one function, such as stream interceptors:
//
//	c := p.Start()
//	for {
//		err := attempt(ctx, c.Attempt())
//		d := c.Next(ctx, err)
//		if !d.Retry {
//			return d.Err
//		}
//		if err := c.Wait(ctx, d.Delay); err != nil {
//			return err
//		}
//	}
//
// Next decides without blocking; Wait is the blocking part. The loop above
// is exactly what [Policy.Do] does, so the two behave the same.
//
// A Call is not safe for concurrent use: it belongs to one call. The zero
// Call is not usable; obtain one from [Policy.Start].
type Call struct {
	p       *Policy
	attempt int           // number of the current attempt, from 1
	delay   time.Duration // wait before the current attempt
	start   time.Time     // when the call started; set only with a max duration
	retries int           // backoff retry number, restarted by pushback
	prev    time.Duration // backoff's previous delay, before jitter
	state   float64       // backoff's state from the previous retry
}

// Decision is what [Call.Next] decided after an attempt.
type Decision struct {
	// Retry reports whether another attempt should run after Delay.
	Retry bool
	// Delay is the wait before the next attempt; 0 when Retry is false.
	Delay time.Duration
	// Err is the error the call ends with when Retry is false: nil after a
	// success, otherwise as [Policy.Do] documents. It is nil when Retry is
	// true.
	Err error
}

// Start begins a call under p and returns its state, at attempt 1. It never
// blocks and does not allocate.
func (p *Policy) Start() Call {
	c := Call{p: p, attempt: 1}
	if p.cfg.MaxDuration > 0 {
		c.start = p.now()
	}
	return c
}

// Attempt returns the attempt about to run: its number and the wait before
// it.
func (c *Call) Attempt() Attempt { return Attempt{Num: c.attempt, Delay: c.delay} }

// Next reports what follows the current attempt, which ended with err (nil
// for success). It never blocks: it tells the budget the outcome, calls the
// policy's event hooks, and when it decides to retry, advances to the next
// attempt, whose wait is the returned Delay. ctx is the caller's context:
// its deadline bounds the waits, and once it is done nothing is retried.
// After a Decision with Retry false the call is over and c must not be used
// again.
//
// A Decision with Retry true means the budget, if any, granted that retry
// (see [Budget]): the caller must then make the attempt after
// [Call.Wait], unless ctx ends during the wait.
func (c *Call) Next(ctx context.Context, err error) Decision {
	if err == nil {
		if b := c.p.cfg.Budget; b != nil {
			b.Record(c.attempt, Success)
		}
		return Decision{}
	}
	return c.failed(ctx, err, time.Time{}, false)
}

// NextAt is [Call.Next] for a caller that has already read the clock when
// the attempt ended: now is that reading, and NextAt reads no clock itself.
// The budget gets now through RecordAt when it implements [TimedBudget]
// (otherwise through Record), and the ctx deadline and [Config].MaxDuration
// checks measure from now. It decides exactly as Next would have decided at
// that instant. (A budget asked for a retry may still read its own clock:
// [RatioBudget.AllowRetry] does, once per retry.)
//
// now must come from time.Now(), with its monotonic reading, taken after
// the attempt ended; never a zero, truncated or deserialised time. Use
// NextAt when the caller needs the time anyway, as an interceptor that
// measures each attempt's latency does: one clock reading then serves the
// latency, the budget and the deadline. Use Next otherwise: it reads the
// clock only when a check needs it, and reads the policy's clock, which
// tests of the policy may replace; NextAt bypasses that clock.
func (c *Call) NextAt(ctx context.Context, err error, now time.Time) Decision {
	if err == nil {
		c.record(Success, now, true)
		return Decision{}
	}
	return c.failed(ctx, err, now, true)
}

// failed is Next for a failed attempt; it is apart from Next to keep the
// success path short enough to stay cheap. When hasNow is true, now is the
// caller's reading of the clock (NextAt); otherwise the clock is read where
// needed.
func (c *Call) failed(ctx context.Context, err error, now time.Time, hasNow bool) Decision {
	p := c.p
	if final, ok := p.finalError(ctx, err); ok {
		c.record(FinalFailure, now, hasNow)
		return Decision{Err: final}
	}
	pb, hasPushback := pushbackOf(err)
	var pushback time.Duration
	if hasPushback {
		var retry bool
		pushback, retry = pb.RetryDelay()
		if !retry {
			c.record(RetryableFailure, now, hasNow)
			return Decision{Err: err}
		}
	}
	c.record(RetryableFailure, now, hasNow)

	h := &p.cfg // the event hooks
	if c.attempt >= p.MaxAttempts() {
		if h.OnExhausted != nil {
			h.OnExhausted(ctx, c.attempt, err)
		}
		return Decision{Err: &resilience.RetriesExhaustedError{Attempts: c.attempt, Err: err}}
	}

	delay := c.nextDelay(hasPushback, pushback)
	if !c.fits(ctx, delay, now, hasNow) {
		if h.OnDeadline != nil {
			h.OnDeadline(ctx, c.attempt, err, delay)
		}
		return Decision{Err: err}
	}
	// The budget comes last: it is asked only for a retry that every other
	// check allows, so that a grant means the attempt runs (the contract of
	// Budget).
	if b := p.cfg.Budget; b != nil && !b.AllowRetry() {
		if h.OnBudgetDenied != nil {
			h.OnBudgetDenied(ctx, c.attempt, err)
		}
		return Decision{Err: err}
	}
	if h.OnRetry != nil {
		h.OnRetry(ctx, c.attempt, err, delay)
	}
	c.attempt++
	c.delay = delay
	return Decision{Retry: true, Delay: delay}
}

// finalError reports whether err must not be retried, and if so the error
// the call ends with.
func (p *Policy) finalError(ctx context.Context, err error) (error, bool) {
	switch {
	case ctx.Err() != nil: // the caller gave up, whatever err says
		return err, true
	case IsPermanent(err):
		if pe, ok := err.(*PermanentError); ok {
			return pe.Err, true
		}
		return err, true
	case p.cfg.AbortIf != nil && p.cfg.AbortIf(err):
		return err, true
	case p.cfg.RetryIf != nil && !p.cfg.RetryIf(err):
		return err, true
	}
	return nil, false
}

// record tells the budget, if any, how the current attempt ended: at now
// when hasNow is true.
func (c *Call) record(o Outcome, now time.Time, hasNow bool) {
	p := c.p
	switch {
	case hasNow && p.timed != nil:
		p.timed.RecordAt(c.attempt, o, now)
	case p.cfg.Budget != nil:
		p.cfg.Budget.Record(c.attempt, o)
	}
}

// nextDelay returns the wait before the next attempt: the pushback delay when
// the server chose one (restarting the backoff sequence), otherwise the
// backoff's next delay with jitter applied.
func (c *Call) nextDelay(hasPushback bool, pushback time.Duration) time.Duration {
	if hasPushback {
		c.retries, c.prev, c.state = 0, 0, 0
		return max(pushback, 0)
	}
	p := c.p
	b := p.cfg.Backoff
	if b == nil { // only in a zero Policy; With fills the default in
		b = defaultBackoff
	}
	c.retries++
	d, state := b.Delay(Step{Retry: c.retries, Prev: c.prev, State: c.state, Rand: p.rand()})
	d = max(d, 0)
	c.prev, c.state = d, state
	if p.cfg.Jitter != nil {
		d = max(p.cfg.Jitter(d, p.rand()), 0)
	}
	return d
}

// fits reports whether a wait of delay from now ends before both ctx's
// deadline and the policy's maximum duration; it reads the policy's clock
// when hasNow is false.
func (c *Call) fits(ctx context.Context, delay time.Duration, now time.Time, hasNow bool) bool {
	p := c.p
	deadline, hasDeadline := ctx.Deadline()
	if !hasDeadline && p.cfg.MaxDuration == 0 {
		return true
	}
	if !hasNow {
		now = p.now()
	}
	if hasDeadline && deadline.Sub(now) <= delay {
		return false
	}
	// elapsed + delay < maxDuration, written so that it cannot overflow.
	if p.cfg.MaxDuration > 0 && delay >= p.cfg.MaxDuration-now.Sub(c.start) {
		return false
	}
	return true
}

// Wait blocks for d, the Delay of a [Decision], using the policy's clock. It
// returns nil when d has passed; when ctx is done first (or already), it
// returns ctx.Err() at once, and the call should end with that error. A d of
// zero or less does not block.
func (c *Call) Wait(ctx context.Context, d time.Duration) error {
	return c.p.sleep(ctx, d)
}

func (p *Policy) now() time.Time {
	if p.clock != nil {
		return p.clock.now()
	}
	return time.Now()
}

func (p *Policy) sleep(ctx context.Context, d time.Duration) error {
	if p.clock != nil {
		return p.clock.sleep(ctx, d)
	}
	return realClock{}.sleep(ctx, d)
}

// rand returns a uniformly distributed number in [0, 1). The default source
// is math/rand/v2's, which is safe for concurrent use.
func (p *Policy) rand() float64 {
	if p.random != nil {
		return p.random()
	}
	return rand.Float64()
}

package ratelimit

import (
	"context"
	"math"
	"sync/atomic"
	"time"
)

// Limiter grants permits at a steady rate with bursts, after GCRA: Rate
// permits per second on average, at most Burst at one instant. Create one
// with [New]; the zero value is not usable. A Limiter is safe for
// concurrent use by multiple goroutines.
//
// Most callers want [Limiter.Allow], which decides at once, or
// [Limiter.Wait], which waits for a permit within the caller's deadline.
// [Limiter.Reserve] hands out permits for later, and [Limiter.Take] is the
// [Store] form.
//
// A decision is one compare-and-swap on one atomic word, the theoretical
// arrival time of GCRA; it takes no lock and allocates nothing.
type Limiter struct {
	tat atomic.Int64 // GCRA's theoretical arrival time, in units since the epoch
	// tat is written by every grant, and each stripe of counts by the
	// decisions counted in it; every field lives on cache lines of its
	// own (stripes are padded to 128 bytes), so that these writes evict
	// neither each other nor the read-only settings below, which every
	// decision reads.
	_      [120]byte
	counts stripes

	p         params
	clk       clock
	onLimited func(time.Duration)
}

// New returns a full limiter configured by cfg: Burst permits are
// available at once. It never fails: a field that [Config.Validate]
// rejects is clamped as the field's comment says.
func New(cfg Config) *Limiter { return newLimiter(cfg, nil) }

// newLimiter is New with an injected clock, the time since the epoch.
func newLimiter(cfg Config, now func() time.Duration) *Limiter {
	return &Limiter{
		p:         newParams(cfg.Rate, cfg.Burst),
		clk:       newClock(now),
		onLimited: cfg.OnLimited,
	}
}

// Rate returns the limiter's rate in permits per second, after clamping;
// 0 means no limit.
func (l *Limiter) Rate() float64 { return l.p.rate }

// Burst returns the limiter's burst, after defaults: the most permits it
// grants at one instant; 0 when it has no limit.
func (l *Limiter) Burst() int { return l.p.burst }

// Allow reports whether one permit is available now, and takes it if so.
// It never waits. Allow is shorthand for AllowN(time.Now(), 1), but reads
// only the monotonic clock.
func (l *Limiter) Allow() bool {
	if l.p.unlimited {
		l.counts.pick().admitted.Add(1)
		return true
	}
	ok, _ := l.decide(l.clk.now(), 1)
	return ok
}

// AllowN reports whether n permits are available at time now, and takes
// them if so. It never waits. n <= 0 is granted and takes nothing; n above
// the burst is never granted. A now earlier than a previous decision's is
// allowed (a clock stepping back, or a goroutine delayed between reading
// the clock and deciding): the limiter then grants less, never more, than
// at the later time; it refuses when the grants made since that time
// took more than the burst's worth.
func (l *Limiter) AllowN(now time.Time, n int) bool {
	ok, _ := l.decide(l.clk.at(now), n)
	return ok
}

// decide is the immediate decision of Allow, AllowN and Take: whether n
// permits are available at now (in units), and if not, how long until.
func (l *Limiter) decide(now int64, n int) (bool, time.Duration) {
	if l.p.unlimited || n <= 0 {
		l.counts.pick().admitted.Add(1)
		return true, 0
	}
	o, wait, _ := l.p.take(&l.tat, now, n, 0)
	if o == granted {
		l.counts.pick().admitted.Add(1)
		return true, 0
	}
	d := fromUnits(wait)
	l.refused(l.counts.pick(), d)
	return false, d
}

func (l *Limiter) refused(c *stripe, retryAfter time.Duration) {
	c.limited.Add(1)
	if f := l.onLimited; f != nil {
		f(retryAfter)
	}
}

// Wait waits for one permit: shorthand for WaitN(ctx, 1).
func (l *Limiter) Wait(ctx context.Context) error { return l.WaitN(ctx, 1) }

// WaitN takes n permits, waiting until they are available. It returns at
// once
//
//   - ctx.Err() if ctx is already done;
//   - a *[resilience.RateLimitedError] (matching
//     [resilience.ErrRateLimited]) whose RetryAfter says how long until the
//     permits, if they would come only at or after ctx's deadline: WaitN
//     never sleeps until the deadline only to fail then. RetryAfter is 0
//     when they can never come (n above the burst). The limiter is left
//     unchanged.
//
// If ctx is done while WaitN waits, it returns ctx.Err() and gives the
// permits back, as [Reservation.Cancel] does. n <= 0 returns nil at once.
func (l *Limiter) WaitN(ctx context.Context, n int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if l.p.unlimited || n <= 0 {
		l.counts.pick().admitted.Add(1)
		return nil
	}
	switch o, wait := waitOn(ctx, &l.p, &l.clk, &l.tat, n); o {
	case granted:
		l.counts.pick().admitted.Add(1)
		return nil
	case cancelled:
		return ctx.Err()
	default: // refused, never
		l.refused(l.counts.pick(), fromUnits(wait))
		return limitedError(wait)
	}
}

// Take is the [Store] form of [Limiter.AllowN] at the current time: a
// Limiter is a Store with a single key, so key is ignored, and it never
// fails, so ctx is ignored and the error is nil.
func (l *Limiter) Take(_ context.Context, _ string, n int) (Decision, error) {
	if l.p.unlimited || n <= 0 {
		l.counts.pick().admitted.Add(1)
		return Decision{Allowed: true}, nil
	}
	ok, d := l.decide(l.clk.now(), n)
	return Decision{Allowed: ok, RetryAfter: d}, nil
}

// Reserve reserves one permit: shorthand for ReserveN(time.Now(), 1).
func (l *Limiter) Reserve() Reservation {
	return l.reserve(l.clk.now(), 1)
}

// ReserveN reserves n permits at time now and returns a [Reservation] that
// says how long the caller must wait before using them. Unlike Allow and
// Wait, it grants permits in the future without bound: every reservation
// pushes later ones further out. It fails (OK reports false) only for n
// above the burst, or permits beyond the limiter's range of time (36
// years). Call [Reservation.Cancel] to give back permits the caller will
// not use. n <= 0 reserves nothing and is OK with no delay.
func (l *Limiter) ReserveN(now time.Time, n int) Reservation {
	return l.reserve(l.clk.at(now), n)
}

func (l *Limiter) reserve(now int64, n int) Reservation {
	r := Reservation{l: l, n: n, at: now, act: now}
	if l.p.unlimited || n <= 0 {
		r.ok, r.n = true, 0
		l.counts.pick().admitted.Add(1)
		return r
	}
	o, wait, end := l.p.take(&l.tat, now, n, maxUnits)
	if o != granted {
		l.refused(l.counts.pick(), 0)
		return r
	}
	r.ok, r.act, r.end = true, now+wait, end
	l.counts.pick().admitted.Add(1)
	return r
}

// Tokens returns the number of permits available now: Burst when the
// limiter is full, fewer when it was used recently, negative while
// reservations wait for permits. It is +Inf when the limiter has no limit.
func (l *Limiter) Tokens() float64 {
	return l.p.tokens(l.tat.Load(), l.clk.now())
}

// Metrics is a snapshot of a [Limiter]'s counters. It is plain data.
type Metrics struct {
	// Admitted counts the requests granted since the limiter was created:
	// by Allow, AllowN, Take, Reserve, ReserveN (OK reservations), and
	// Wait and WaitN once they return nil. A request counts once whatever
	// its number of permits.
	Admitted uint64
	// Limited counts the requests refused: by Allow, AllowN and Take,
	// Wait and WaitN returning a RateLimitedError, reservations not OK.
	// A wait that ended with its context counts in neither.
	Limited uint64
	// Tokens is [Limiter.Tokens] at the time of the snapshot.
	Tokens float64
}

// Metrics returns a snapshot of the limiter's counters. The counters are
// read one after the other, not at one instant, while calls may change
// them.
func (l *Limiter) Metrics() Metrics {
	a, lim, _ := l.counts.sum()
	return Metrics{Admitted: a, Limited: lim, Tokens: l.Tokens()}
}

// Reservation holds permits granted by [Limiter.Reserve] or
// [Limiter.ReserveN] for a later time. It is a small value: copy it
// freely, but call Cancel or CancelAt at most once: calling it again may
// give the permits back twice. The zero Reservation is not OK and its
// Cancel does nothing. Its methods are safe for concurrent use.
type Reservation struct {
	l   *Limiter
	n   int   // permits reserved; 0 when nothing was taken
	ok  bool  // the permits were granted
	at  int64 // the time of the reservation, in the limiter's units
	act int64 // the time the permits may be used
	end int64 // the TAT the reservation left
}

// OK reports whether the limiter granted the permits. A reservation that
// is not OK holds nothing: its delay is the largest Duration.
func (r Reservation) OK() bool { return r.ok }

// Delay returns how long after the reservation was made the permits may be
// used: 0 when at once, the largest Duration when the reservation is not
// OK.
func (r Reservation) Delay() time.Duration {
	if !r.ok {
		return math.MaxInt64
	}
	return fromUnits(r.act - r.at)
}

// DelayFrom returns how long after now the permits may be used: 0 when
// already, the largest Duration when the reservation is not OK.
func (r Reservation) DelayFrom(now time.Time) time.Duration {
	if !r.ok {
		return math.MaxInt64
	}
	return fromUnits(r.act - r.l.clk.at(now))
}

// Cancel gives the permits back, as far as possible, to the limiter:
// shorthand for CancelAt(time.Now()).
func (r Reservation) Cancel() {
	if r.l != nil {
		r.CancelAt(r.l.clk.time(r.l.clk.now()))
	}
}

// CancelAt gives back at time now the permits the caller will not use. It
// does nothing once the permits were due (their time is before now), and
// gives back less than it holds when reservations were made after it,
// since their delays were computed as if these permits were gone. It
// never makes the limiter hold more than Burst.
func (r Reservation) CancelAt(now time.Time) {
	if !r.ok || r.n <= 0 {
		return
	}
	r.l.p.giveBack(&r.l.tat, r.l.clk.at(now), r.n, r.end, r.act)
}

package ratelimit

import (
	"context"
	"sync/atomic"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/internal/stackhash"
)

// clock is a limiter's time: units since its epoch. The monotonic reading
// of the epoch makes time.Since cost one monotonic clock read, about half
// of time.Now.
type clock struct {
	epoch time.Time
	fn    func() time.Duration // since the epoch; nil: time.Since(epoch). Tests inject it.
}

func newClock(fn func() time.Duration) clock {
	return clock{epoch: time.Now(), fn: fn}
}

// now returns the current time in units.
func (c *clock) now() int64 {
	if c.fn != nil {
		return toUnits(c.fn())
	}
	return toUnits(time.Since(c.epoch))
}

// at returns t in units; times before the epoch are the epoch.
func (c *clock) at(t time.Time) int64 { return toUnits(t.Sub(c.epoch)) }

// time returns the time.Time of u units.
func (c *clock) time(u int64) time.Time {
	return c.epoch.Add(time.Duration(u >> unitShift))
}

// cancelled is the outcome of a wait that ended with its context, its
// permits given back.
const cancelled outcome = dead + 1

// waitOn waits until n permits of the TAT in st are available, or fails at
// once. It returns granted when the caller has its permits; refused (with
// the wait in units) when they would come only at or after ctx's deadline,
// never when they can never come, both without changing st; cancelled
// when ctx was done first, with the permits given back; dead when st was
// evicted. n must be at least 1.
func waitOn(ctx context.Context, p *params, c *clock, st *atomic.Int64, n int) (outcome, int64) {
	now := c.now()
	maxWait := int64(maxUnits)
	if dl, ok := ctx.Deadline(); ok {
		// The permits must come strictly before the deadline: a call
		// that gets them at the deadline has no time left to run. A
		// deadline already passed leaves only immediate grants.
		maxWait = max(toUnits(dl.Sub(c.time(now)))-1, 0)
	}
	o, wait, end := p.take(st, now, n, maxWait)
	if o != granted || wait == 0 {
		return o, wait
	}
	t := time.NewTimer(fromUnits(wait))
	select {
	case <-t.C:
		return granted, 0
	case <-ctx.Done():
		t.Stop()
		p.giveBack(st, c.now(), n, end, now+wait)
		return cancelled, 0
	}
}

// numStripes spreads the counters over padded cache lines, so that
// concurrent callers rarely write the same line.
const (
	stripeBits = 3
	numStripes = 1 << stripeBits
)

// stripe holds one share of a limiter's counters, alone on its cache
// lines: 128 bytes, since some processors fetch lines in pairs.
type stripe struct {
	admitted, limited, overflowed atomic.Uint64
	_                             [128 - 3*8]byte
}

type stripes [numStripes]stripe

// pick returns the calling goroutine's stripe, chosen by the address of
// its stack (see internal/stackhash). A stripe chosen afresh for every
// call (at random, or by the nanoseconds of the clock) keeps concurrent
// writes apart but not the cache line: about every other write finds it in
// the cache of the other core that wrote it last, and moving it costs more
// than the decision.
func (s *stripes) pick() *stripe {
	return &s[stackhash.Hash()>>(64-stripeBits)]
}

// sum returns the totals of the counters.
func (s *stripes) sum() (admitted, limited, overflowed uint64) {
	for i := range s {
		admitted += s[i].admitted.Load()
		limited += s[i].limited.Load()
		overflowed += s[i].overflowed.Load()
	}
	return
}

// limitedError returns the error of a refusal whose wait was w units
// (neverGranted when the request can never be granted).
func limitedError(w int64) error {
	return &resilience.RateLimitedError{RetryAfter: fromUnits(w)}
}

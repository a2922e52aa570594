package redisfleet

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/engineeringlabs/grpc-resilience/ratelimit"
)

// lease is one caller key's lease state in one process: permits taken
// from Redis and not yet granted, the time until which Redis said the key
// is empty, and an estimate of the key's local rate of calls, which sizes
// the next lease.
type lease struct {
	l *Limiter

	mu          sync.Mutex
	permits     int           // taken from Redis, not yet granted
	expires     int64         // mono ns: permits unused by then are dropped
	deniedUntil int64         // mono ns: Redis refused; refuse locally until then
	fetching    chan struct{} // non-nil while a goroutine takes a lease; closed when done
	started     bool          // winStart is set
	winStart    int64         // mono ns: start of the current rate window
	winCalls    int           // calls since winStart
	rate        float64       // estimated local calls per second
	// shareTAT is the theoretical arrival time (mono ns) of the key's
	// local share, charged with every permit Redis granted this process:
	// a round trip that fails while Redis is deemed up is decided by it,
	// so that a busy key never finds a full local bucket.
	shareTAT int64
}

// shareInterval returns the emission interval (ns per permit) and the
// limit (burst × interval, ns) of a local share of rate permits per second
// and burst, within a year each; rate must be positive.
func shareInterval(rate float64, burst int) (interval, limit float64) {
	const year = float64(365 * 24 * time.Hour)
	interval = min(float64(time.Second)/rate, year)
	if !(interval >= 1) { // NaN, or faster than one permit a nanosecond
		interval = 1
	}
	return interval, min(float64(max(burst, 1))*interval, year)
}

// shareCharge returns the TAT tat of a local share after n permits granted
// elsewhere at now: the bucket empties, and goes no further into debt than
// its limit, so that it refills within one burst's time.
func shareCharge(tat, now int64, n int, rate float64, burst int) int64 {
	interval, limit := shareInterval(rate, burst)
	base := float64(max(tat, now))
	next := min(base+float64(max(n, 0))*interval, float64(now)+limit)
	return int64(max(next, base))
}

// shareTake decides n permits of a local share whose TAT is tat at now: it
// returns the new TAT and, when refused, how long until they would be
// granted (0 when n exceeds the burst).
func shareTake(tat, now int64, n int, rate float64, burst int) (next int64, ok bool, retry time.Duration) {
	interval, limit := shareInterval(rate, burst)
	base := float64(max(tat, now))
	want := float64(max(n, 1)) * interval
	if want > limit*(1+1e-9) {
		return tat, false, 0
	}
	if end := base + want; end-float64(now) <= limit*(1+1e-9) {
		return int64(end), true, 0
	}
	wait := base + want - limit - float64(now)
	return tat, false, time.Duration(max(math.Ceil(wait), 1))
}

// idle reports whether the lease state may be evicted from its cache:
// nobody is taking a lease for it and it holds no live permits (dropping
// it then changes no decision but the next lease's size). It is called
// under the cache's lock, so it only tries the state's own.
func (s *lease) idle() bool {
	if !s.mu.TryLock() {
		return false
	}
	defer s.mu.Unlock()
	return s.fetching == nil && (s.permits == 0 || s.l.now() >= s.expires)
}

// charge records n permits Redis granted to this process at now in the
// key's local share. s.mu is held.
func (s *lease) charge(q *Quota, now int64, n int) {
	rate, burst := shareOf(q.rate, q.p.burst, q.l.divisor())
	if rate > 0 {
		s.shareTAT = shareCharge(s.shareTAT, now, n, rate, burst)
	}
}

// observe counts a call at now in the rate estimate: the calls of each
// window of w nanoseconds, averaged with the previous estimate.
func (s *lease) observe(now, w int64) {
	if !s.started {
		s.started, s.winStart = true, now
	}
	s.winCalls++
	el := now - s.winStart
	if el < w {
		return
	}
	r := float64(s.winCalls) / (float64(el) / float64(time.Second))
	if el > 4*w || s.rate == 0 {
		s.rate = r // after a pause, the old rate says nothing
	} else {
		s.rate = (s.rate + r) / 2
	}
	s.winStart, s.winCalls = now, 0
}

// leaseSize returns how many permits a lease takes for a key called rate
// times per second: window's worth, at most maxLease and burst. A result
// below 2 means no lease (a lease of one permit is a plain decision).
func leaseSize(rate float64, window time.Duration, maxLease, burst int) int {
	if !(rate > 0) || window <= 0 {
		return 0
	}
	n := math.Floor(rate * window.Seconds())
	limit := min(maxLease, burst)
	if !(n < float64(limit)) { // NaN, +Inf and large values alike
		return max(limit, 0)
	}
	return int(n)
}

// takeLeased decides one permit for key from its lease, taking a new
// lease when the key is busy enough (see LimiterConfig.LeaseWindow), and
// by a plain round trip otherwise. It waits for Redis until until
// (monotonic ns) at most.
func (q *Quota) takeLeased(ctx context.Context, key string, until int64) ratelimit.Decision {
	l := q.l
	s, ok := q.leaseStates().GetOrCreate(key, func() *lease { return &lease{l: l} })
	if !ok {
		q.overflowed(key)
		return q.takeShared(ctx, nil, key, 1, until)
	}
	w := int64(l.window)
	for waited := false; ; waited = true {
		now := l.now()
		s.mu.Lock()
		if !waited {
			s.observe(now, w)
		}
		if s.permits > 0 {
			if now < s.expires {
				s.permits--
				s.mu.Unlock()
				l.counts.leased.Add(1)
				return ratelimit.Decision{Allowed: true}
			}
			l.counts.dropped.Add(uint64(s.permits))
			s.permits = 0
		}
		if now < s.deniedUntil {
			wait := time.Duration(s.deniedUntil - now)
			s.mu.Unlock()
			l.counts.leased.Add(1)
			return ratelimit.Decision{RetryAfter: wait}
		}
		batch := leaseSize(s.rate, l.window, l.maxLease, q.p.burst)
		if batch < 2 || (s.fetching != nil && waited) {
			s.mu.Unlock()
			return q.takeShared(ctx, s, key, 1, until)
		}
		if ch := s.fetching; ch != nil {
			// Another goroutine is taking a lease for this key; it
			// started earlier, so its round trip ends before ours would.
			s.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return q.local(s, key, 1)
			}
			continue
		}
		ch := make(chan struct{})
		s.fetching = ch
		s.mu.Unlock()
		return q.fetchLease(ctx, s, ch, key, batch, until)
	}
}

// fetchLease takes up to batch permits for key in one round trip, grants
// one of them, and keeps the rest in s. ch is s.fetching, closed when done.
func (q *Quota) fetchLease(ctx context.Context, s *lease, ch chan struct{}, key string, batch int, until int64) ratelimit.Decision {
	l := q.l
	r, ok := q.remote(ctx, key, batch, true, until)
	now := l.now()
	s.mu.Lock()
	s.fetching = nil
	close(ch)
	if !ok {
		s.mu.Unlock()
		return q.local(s, key, 1)
	}
	l.counts.shared.Add(1)
	if r.granted == 0 {
		s.deniedUntil = now + int64(r.retryAfter)
		s.mu.Unlock()
		return ratelimit.Decision{RetryAfter: r.retryAfter}
	}
	s.charge(q, now, r.granted)
	s.permits += r.granted - 1
	s.expires = now + 2*int64(l.window)
	s.mu.Unlock()
	l.counts.leases.Add(1)
	l.counts.leasedPermits.Add(uint64(r.granted - 1))
	return ratelimit.Decision{Allowed: true}
}

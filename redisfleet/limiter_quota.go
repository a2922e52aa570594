package redisfleet

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/internal/keycache"
	"github.com/engineeringlabs/grpc-resilience/ratelimit"
)

// Quota is one rate limit of a [Limiter], shared by the fleet: it
// implements [ratelimit.Store], one GCRA state per caller key, in Redis.
// Create one with [Limiter.Quota]. A Quota is safe for concurrent use.
//
// Take decides through Redis (one script call) or, with leases on, from a
// lease of permits this process took earlier. When Redis is unavailable or
// a round trip fails or runs out of time, Take decides with this
// process's local share of the quota (its rate divided by the number of
// processes) and still returns a nil error: a Quota never admits a call
// unchecked because Redis is down.
type Quota struct {
	l       *Limiter
	name    string
	base    string // key prefix of the quota's caller keys
	p       scriptParams
	rate    float64
	argsOne []string // script arguments for one permit, all or nothing

	leaseOnce sync.Once
	leases    *keycache.Cache[string, *lease]

	share atomic.Pointer[localShare]
}

// localShare is a quota's local limiter for a given divisor.
type localShare struct {
	divisor int
	keyed   *ratelimit.Keyed
}

// key returns the Redis key of the caller key key.
func (q *Quota) key(key string) string { return q.base + keyDigest(key) }

// Name returns the quota's name.
func (q *Quota) Name() string { return q.name }

// Take decides at once whether key may have n permits of the quota, and
// takes them if so, as [ratelimit.Store] describes. It waits for Redis at
// most the Limiter's Timeout and three quarters of the time left before
// ctx's deadline; when Redis cannot decide in time, the local share
// decides (see LimiterConfig.Timeout). The error is always
// nil: a refusal is a Decision with Allowed false and RetryAfter the time
// until the permits (exact to the microsecond, 0 when n exceeds the
// burst). n <= 0 asks for nothing and is granted.
func (q *Quota) Take(ctx context.Context, key string, n int) (ratelimit.Decision, error) {
	if q.p.unlimited || n <= 0 {
		return q.l.count(ratelimit.Decision{Allowed: true}), nil
	}
	if n > q.p.burst {
		return q.l.count(ratelimit.Decision{}), nil
	}
	until := q.l.now() + int64(q.l.timeout)
	if q.l.window > 0 && n == 1 {
		return q.l.count(q.takeLeased(ctx, key, until)), nil
	}
	// The key's state (when MaxKeys allows) keeps the local share that a
	// failed round trip is decided by; without leases, it never holds
	// permits and is evicted first.
	s, _ := q.leaseStates().GetOrCreate(key, func() *lease { return &lease{l: q.l} })
	return q.l.count(q.takeShared(ctx, s, key, n, until)), nil
}

// count adds d to the Limiter's figures and returns it.
func (l *Limiter) count(d ratelimit.Decision) ratelimit.Decision {
	if d.Allowed {
		l.counts.admitted.Add(1)
	} else {
		l.counts.limited.Add(1)
	}
	return d
}

// takeShared decides n permits for key with one round trip that ends by
// until (monotonic ns), or locally when the round trip is not possible.
// s is the key's state, nil when it has none.
func (q *Quota) takeShared(ctx context.Context, s *lease, key string, n int, until int64) ratelimit.Decision {
	r, ok := q.remote(ctx, key, n, false, until)
	if !ok {
		return q.local(s, key, n)
	}
	q.l.counts.shared.Add(1)
	if s != nil {
		now := q.l.now()
		s.mu.Lock()
		if r.granted > 0 {
			s.charge(q, now, r.granted)
		} else if r.retryAfter > 0 {
			s.deniedUntil = max(s.deniedUntil, now+int64(r.retryAfter))
		}
		s.mu.Unlock()
	}
	return ratelimit.Decision{Allowed: r.granted > 0, RetryAfter: r.retryAfter}
}

// remote runs the script for key: n permits, or up to n (at least one)
// when partial, waiting until until (monotonic ns) at most, and at most
// three quarters of the time left before ctx's deadline, so that the
// caller keeps time for its call. ok is false when Redis could not decide (unavailable,
// failed, out of time): the caller decides locally.
//
// A round trip that ran out of time counts against Redis (towards the
// fallback) when it waited at least half the Timeout; a shorter wait, cut
// by a caller's deadline, says nothing about Redis (the heartbeat notices
// an outage even when every caller's deadline is that short).
func (q *Quota) remote(ctx context.Context, key string, n int, partial bool, until int64) (r takeReply, ok bool) {
	l := q.l
	began := l.now()
	wait := time.Duration(until - began)
	if dl, has := ctx.Deadline(); has {
		wait = min(wait, time.Until(dl)/4*3)
	}
	if wait <= 0 {
		return takeReply{}, false
	}
	p, err := l.cb.Allow()
	if err != nil {
		return takeReply{}, false
	}
	args := q.argsOne
	if n != 1 || partial {
		flag := "0"
		if partial {
			flag = "1"
		}
		args = []string{q.p.interval, q.p.limit, strconv.Itoa(n), flag}
	}
	rctx, cancel := context.WithTimeout(ctx, wait)
	v, err := gcraScript.Exec(rctx, l.client, []string{q.key(key)}, args).AsIntSlice()
	cancel()
	if err == nil {
		r, err = parseTakeReply(v, n)
	}
	switch classify(err) {
	case replyOK:
		p.Done(breaker.Success)
		if r.hostile {
			l.sawHostile(q.name)
		}
		return r, true
	case replyHostile:
		p.Done(breaker.Success) // Redis answered
		l.sawHostile(q.name)
		return takeReply{}, false
	}
	if ce := ctx.Err(); ce != nil && !errors.Is(ce, context.DeadlineExceeded) {
		// The caller gave up: that says nothing about Redis.
		p.Done(breaker.Ignored)
		return takeReply{}, false
	}
	if errors.Is(err, context.DeadlineExceeded) && time.Duration(l.now()-began) < l.timeout/2 {
		// Cut short by the caller's deadline.
		p.Done(breaker.Ignored)
		return takeReply{}, false
	}
	l.failed(p, q.name, err)
	return takeReply{}, false
}

// local decides n permits for key without Redis. While Redis is deemed up
// (a single round trip failed), the key's local share charged with what
// Redis granted this process decides, and a refusal of Redis still in
// force stands; s is the key's state, nil when it has none. During a
// fallback, and for keys without state, the quota's local share decides.
func (q *Quota) local(s *lease, key string, n int) ratelimit.Decision {
	l := q.l
	l.counts.local.Add(1)
	if s != nil && !l.fallback.Load() {
		rate, burst := shareOf(q.rate, q.p.burst, l.divisor())
		now := l.now()
		s.mu.Lock()
		defer s.mu.Unlock()
		if now < s.deniedUntil {
			return ratelimit.Decision{RetryAfter: time.Duration(s.deniedUntil - now)}
		}
		next, ok, retry := shareTake(s.shareTAT, now, n, rate, burst)
		s.shareTAT = next
		return ratelimit.Decision{Allowed: ok, RetryAfter: retry}
	}
	d, _ := q.localShare().Take(context.Background(), key, n)
	return d
}

// localShare returns the quota's local limiter for the current divisor,
// creating it (again, when the divisor changed) as needed. A new limiter
// starts full: a change of divisor grants at most one more burst.
func (q *Quota) localShare() *ratelimit.Keyed {
	div := q.l.divisor()
	for {
		s := q.share.Load()
		if s != nil && s.divisor == div {
			return s.keyed
		}
		rate, burst := shareOf(q.rate, q.p.burst, div)
		ns := &localShare{divisor: div, keyed: ratelimit.NewKeyed(ratelimit.KeyedConfig{
			Rate:    rate,
			Burst:   burst,
			MaxKeys: q.l.maxKeys,
			OnOverflow: func(key string) {
				q.l.counts.overflow.Add(1)
				if q.l.onOverflow != nil {
					q.l.onOverflow(q.name, key)
				}
			},
		})}
		if q.share.CompareAndSwap(s, ns) {
			return ns.keyed
		}
	}
}

// shareOf divides a quota among div processes: rate/div per second, and a
// burst of burst/div rounded up, at least 1. A zero rate stays zero (no
// limit).
func shareOf(rate float64, burst, div int) (float64, int) {
	div = max(div, 1)
	if !(rate > 0) {
		return 0, 0
	}
	return rate / float64(div), max(1, (max(burst, 1)+div-1)/div)
}

// leaseStates returns the quota's lease cache, created on first use.
func (q *Quota) leaseStates() *keycache.Cache[string, *lease] {
	q.leaseOnce.Do(func() {
		q.leases = keycache.New(keycache.Config[string, *lease]{
			Max:       q.l.maxKeys,
			Evictable: (*lease).idle,
		})
	})
	return q.leases
}

// overflowed reports a decision about key made without state of its own.
func (q *Quota) overflowed(key string) {
	q.l.counts.overflow.Add(1)
	if q.l.onOverflow != nil {
		q.l.onOverflow(q.name, key)
	}
}

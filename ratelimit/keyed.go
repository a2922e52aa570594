package ratelimit

import (
	"context"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/engineeringlabs/grpc-resilience/internal/keycache"
)

// Keyed keeps one GCRA limiter per key (a caller, a method, a tenant), so
// that each key has its own Rate and Burst and one key's load cannot use
// another's permits. Create one with [NewKeyed]; the zero value is not
// usable. A Keyed is safe for concurrent use by multiple goroutines.
//
// # Bounded memory
//
// A Keyed holds at most MaxKeys keys. A key's limiter is one atomic word;
// with the cache entry around it a key costs about 100 bytes plus its
// length (at most [MaxKeyLen]): 10^4 keys of 20 bytes take about 1.2 MB,
// of MaxKeyLen bytes at most 3.6 MB, whatever the number of distinct keys
// seen. A flood of 10^6 hostile keys costs no more than 10^4 keys. When the cache is full, a new key takes the
// place of a key whose limiter is full again (its TAT is in the past):
// such a limiter is indistinguishable from a new one, so dropping it
// changes no decision. When every key is busy, the new key's decisions use
// one shared overflow limiter, with the same Rate and Burst, and
// KeyedConfig.OnOverflow says so; a protection is never dropped silently.
//
// Decisions about a key already present take no lock and allocate
// nothing; a new key costs one allocation for a copy of the key (taken so
// that the Keyed never holds on to a caller's larger buffer) and, when the
// cache is full, a bounded scan for an idle key.
type Keyed struct {
	p          params
	clk        clock
	cache      *keycache.Cache[string, *keyState]
	onLimited  func(string, time.Duration)
	onOverflow func(string)
	onEvict    func(string)

	scanNow atomic.Int64 // time of the latest decision that missed the cache

	_        [64]byte
	overflow keyState
	_        [128]byte // puts counts at a multiple of 64 bytes
	evicted  atomic.Uint64
	counts   stripes
}

// keyState is one key's limiter: its TAT, or deadTAT once evicted.
type keyState struct{ tat atomic.Int64 }

func newKeyState() *keyState { return new(keyState) }

// NewKeyed returns a Keyed configured by cfg, with no key yet. It never
// fails: a field that [KeyedConfig.Validate] rejects is clamped as the
// field's comment says.
func NewKeyed(cfg KeyedConfig) *Keyed { return newKeyed(cfg, nil) }

// newKeyed is NewKeyed with an injected clock, the time since the epoch.
func newKeyed(cfg KeyedConfig, now func() time.Duration) *Keyed {
	k := &Keyed{
		p:          newParams(cfg.Rate, cfg.Burst),
		clk:        newClock(now),
		onLimited:  cfg.OnLimited,
		onOverflow: cfg.OnOverflow,
		onEvict:    cfg.OnEvict,
	}
	maxKeys := cfg.MaxKeys
	if maxKeys == 0 {
		maxKeys = DefaultMaxKeys
	}
	k.cache = keycache.New(keycache.Config[string, *keyState]{
		Max:       max(maxKeys, 0),
		Evictable: k.evictable,
		OnEvict: func(key string, _ *keyState) {
			k.evicted.Add(1)
			if f := k.onEvict; f != nil {
				f(key)
			}
		},
	})
	return k
}

// evictable reports whether s is full again, and if so marks it dead, so
// that a decision that found s just before its eviction looks the key up
// again instead of deciding on a limiter nobody will see again. The cache
// evicts every entry this accepts. It runs with the cache's mutex held,
// for up to a few hundred entries per insert: instead of reading the clock
// for each, it compares with the time of the latest decision that missed
// the cache, which is at most the current time, so that it can only find
// fewer entries idle than a fresh reading would.
func (k *Keyed) evictable(s *keyState) bool {
	tat := s.tat.Load()
	return tat <= k.scanNow.Load() && s.tat.CompareAndSwap(tat, deadTAT)
}

// Rate returns each key's rate in permits per second, after clamping; 0
// means no limit.
func (k *Keyed) Rate() float64 { return k.p.rate }

// Burst returns each key's burst, after defaults; 0 when there is no
// limit.
func (k *Keyed) Burst() int { return k.p.burst }

// state returns key's limiter, creating it if needed, or the overflow
// limiter, for a decision at now; relook skips the lock-free lookup, for a
// key whose state was just found dead.
func (k *Keyed) state(key string, now int64, relook bool) (*keyState, bool) {
	if len(key) > MaxKeyLen {
		return &k.overflow, true
	}
	if !relook {
		if s, ok := k.cache.Get(key); ok {
			return s, false
		}
	}
	k.scanNow.Store(now)
	if s, ok := k.cache.GetOrCreate(strings.Clone(key), newKeyState); ok {
		return s, false
	}
	return &k.overflow, true
}

// Allow reports whether one permit of key is available now, and takes it
// if so: AllowN(key, time.Now(), 1), reading only the monotonic clock.
func (k *Keyed) Allow(key string) bool {
	if k.p.unlimited {
		k.counts.pick().admitted.Add(1)
		return true
	}
	ok, _ := k.decide(key, k.clk.now(), 1)
	return ok
}

// AllowN reports whether n permits of key are available at time now, and
// takes them if so, as [Limiter.AllowN] does for one limiter. Idle keys
// are evicted by the time of the latest decision that missed the cache, so
// callers that pass times should pass them in order.
func (k *Keyed) AllowN(key string, now time.Time, n int) bool {
	ok, _ := k.decide(key, k.clk.at(now), n)
	return ok
}

// Take is the [Store] form of AllowN at the current time. A Keyed never
// fails to decide, so the error is nil; ctx is not used.
func (k *Keyed) Take(_ context.Context, key string, n int) (Decision, error) {
	if k.p.unlimited || n <= 0 {
		k.counts.pick().admitted.Add(1)
		return Decision{Allowed: true}, nil
	}
	ok, d := k.decide(key, k.clk.now(), n)
	return Decision{Allowed: ok, RetryAfter: d}, nil
}

func (k *Keyed) decide(key string, now int64, n int) (bool, time.Duration) {
	if k.p.unlimited || n <= 0 {
		k.counts.pick().admitted.Add(1)
		return true, 0
	}
	relook := false
	for {
		s, over := k.state(key, now, relook)
		o, wait, _ := k.p.take(&s.tat, now, n, 0)
		if o == dead {
			relook = true
			continue
		}
		c := k.counts.pick()
		if over {
			k.overflowed(c, key)
		}
		if o == granted {
			c.admitted.Add(1)
			return true, 0
		}
		d := fromUnits(wait)
		k.refused(c, key, d)
		return false, d
	}
}

func (k *Keyed) overflowed(c *stripe, key string) {
	c.overflowed.Add(1)
	if f := k.onOverflow; f != nil {
		f(key)
	}
}

func (k *Keyed) refused(c *stripe, key string, retryAfter time.Duration) {
	c.limited.Add(1)
	if f := k.onLimited; f != nil {
		f(key, retryAfter)
	}
}

// Wait waits for one permit of key: shorthand for WaitN(ctx, key, 1).
func (k *Keyed) Wait(ctx context.Context, key string) error { return k.WaitN(ctx, key, 1) }

// WaitN takes n permits of key, waiting until they are available, exactly
// as [Limiter.WaitN] does for one limiter: it fails at once, with a
// *[resilience.RateLimitedError] carrying how long until the permits,
// when they would come only at or after ctx's deadline, and returns
// ctx.Err() and gives the permits back when ctx is done while it waits.
func (k *Keyed) WaitN(ctx context.Context, key string, n int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if k.p.unlimited || n <= 0 {
		k.counts.pick().admitted.Add(1)
		return nil
	}
	relook := false
	for {
		s, over := k.state(key, k.clk.now(), relook)
		o, wait := waitOn(ctx, &k.p, &k.clk, &s.tat, n)
		if o == dead {
			relook = true
			continue
		}
		c := k.counts.pick()
		if over {
			k.overflowed(c, key)
		}
		switch o {
		case granted:
			c.admitted.Add(1)
			return nil
		case cancelled:
			return ctx.Err()
		}
		k.refused(c, key, fromUnits(wait))
		return limitedError(wait)
	}
}

// Len returns the number of keys with a limiter of their own; it never
// exceeds MaxKeys.
func (k *Keyed) Len() int { return k.cache.Len() }

// Tokens returns the permits key has left now, as [Limiter.Tokens] does
// for one limiter: Burst for a key without a limiter of its own (never
// seen, evicted, or sent to the overflow limiter), +Inf without a limit.
// It does not create the key's limiter nor count as a use of it, takes no
// lock and allocates nothing.
func (k *Keyed) Tokens(key string) float64 {
	if k.p.unlimited {
		return math.Inf(1)
	}
	now := k.clk.now()
	if s, ok := k.cache.Peek(key); ok {
		if tat := s.tat.Load(); tat != deadTAT {
			return k.p.tokens(tat, now)
		}
	}
	return float64(k.p.burst)
}

// Range calls fn for each key with a limiter of its own and the permits
// it has left now (Burst when its limiter is full; see [Limiter.Tokens]),
// in no particular order, until fn returns false. The keys sent to the
// overflow limiter are not included. It takes no lock and allocates
// nothing, calls fn at most MaxKeys times and sees each key at most once;
// keys added or evicted meanwhile may or may not be seen. fn may call the
// Keyed. It does not count as a use of the keys.
func (k *Keyed) Range(fn func(key string, tokens float64) bool) {
	now := k.clk.now()
	k.cache.Range(func(key string, s *keyState) bool {
		tat := s.tat.Load()
		if tat == deadTAT { // evicted while we looked
			return true
		}
		return fn(key, k.p.tokens(tat, now))
	})
}

// KeyedMetrics is a snapshot of a [Keyed]'s counters. It is plain data.
type KeyedMetrics struct {
	// Admitted and Limited count requests as [Metrics] does, over every
	// key, the overflow limiter included.
	Admitted, Limited uint64
	// Overflowed counts the decisions made with the shared overflow
	// limiter.
	Overflowed uint64
	// Evicted counts the idle keys dropped to make room for new ones.
	Evicted uint64
	// Keys is the number of keys with a limiter of their own.
	Keys int
}

// Metrics returns a snapshot of the counters, read one after the other
// while calls may change them.
func (k *Keyed) Metrics() KeyedMetrics {
	a, l, o := k.counts.sum()
	return KeyedMetrics{Admitted: a, Limited: l, Overflowed: o, Evicted: k.evicted.Load(), Keys: k.Len()}
}

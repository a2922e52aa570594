package redisfleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/ratelimit"
)

// Defaults of a [LimiterConfig]'s zero fields.
const (
	DefaultTimeout           = 5 * time.Millisecond
	DefaultMaxLease          = 1000
	DefaultMaxKeys           = 10000
	DefaultHeartbeatInterval = 500 * time.Millisecond
	DefaultRetryInterval     = 500 * time.Millisecond
)

// failuresToFallback is the number of consecutive failed decision round
// trips (errors or timeouts) after which a Limiter falls back to local
// shares; two failed heartbeats in a row (see beatsToFallback) are enough
// too.
const failuresToFallback = 3

// LimiterConfig configures a [Limiter]. It is plain data: [NewLimiter]
// copies it. Every field but Client has a useful zero value.
type LimiterConfig struct {
	// Client is the connection to Redis, configured by the caller
	// (address, TLS, authentication and pooling are its options). The
	// Limiter never closes it. Required.
	Client rueidis.Client

	// Prefix starts every key the Limiter uses, so that several
	// applications can share one Redis. Zero means [DefaultPrefix]
	// ("grpcres:"). Longer than [MaxPrefixLen] bytes, or holding a brace
	// (which Redis Cluster reads as a hash tag), is invalid. Every
	// process of a fleet must use the same prefix (and the same quota
	// names, rates and bursts) to share its quotas.
	Prefix string

	// Timeout bounds the round trip of one decision: a decision never
	// waits longer, nor longer than three quarters of the time left
	// before its context's deadline. A round trip that fails or runs out of time is
	// decided locally instead: by the key's local share (see Processes),
	// charged with the permits Redis granted this process, and refused
	// while Redis' last refusal of the key is in force. A round trip cut
	// short by the caller's deadline before half the Timeout does not
	// count towards the fallback (the heartbeat still notices an outage).
	// Heartbeats wait max(Timeout, 200ms).
	// Zero means [DefaultTimeout] (5ms). Negative values are invalid.
	Timeout time.Duration

	// LeaseWindow turns on leases: when a key's calls in this process come
	// fast enough to use at least two permits in LeaseWindow, the process
	// takes from Redis, in one round trip, the permits its recent rate of
	// calls needs for LeaseWindow (up to MaxLease) and grants them locally,
	// so that most decisions take no round trip. Permits not used within
	// twice LeaseWindow are dropped. Zero means no leases: every decision
	// is one round trip, exact. Negative values are invalid. 50ms to
	// 100ms suits most loads; see the package documentation for the
	// accuracy it costs.
	LeaseWindow time.Duration

	// MaxLease is the most permits one lease takes; a lease takes no more
	// than the quota's burst either. Zero means [DefaultMaxLease] (1000).
	// Negative values are invalid.
	MaxLease int

	// MaxKeys is the most caller keys of one quota that have lease state
	// in this process, and the most keys of one quota's local share while
	// Redis is unavailable. A key beyond it has no lease: each of its
	// decisions takes a round trip, and OnOverflow says so. Zero means
	// [DefaultMaxKeys] (10000). Negative values are invalid.
	MaxKeys int

	// Processes, when positive, is the number of processes that share each
	// quota: while Redis is unavailable, each process grants Rate/Processes
	// per key (its local share). Zero means the number of live processes
	// last heard of in Redis (each announces itself every
	// HeartbeatInterval), or 1 if it never heard. Negative values are
	// invalid.
	Processes int

	// HeartbeatInterval is how often the process announces itself in
	// Redis and counts the live processes (those heard from within three
	// intervals). A heartbeat that fails is tried again 50ms later, and
	// the second failure in a row falls back, so that an outage is
	// noticed even when no call comes within HeartbeatInterval plus 50ms
	// plus two heartbeats, each bounded by max(Timeout, 200ms): with the
	// defaults, within 950ms when Redis does not answer at all, and
	// within about 550ms when its connections are refused. Zero means
	// [DefaultHeartbeatInterval] (500ms). Negative values are invalid.
	HeartbeatInterval time.Duration

	// RetryInterval is how long the Limiter keeps deciding with local
	// shares, once Redis has failed, before it tries Redis again. Zero
	// means [DefaultRetryInterval] (500ms). Negative values are invalid.
	RetryInterval time.Duration

	// OnFallback, when not nil, is called when the Limiter stops deciding
	// through Redis and starts granting local shares: after three
	// consecutive failed decision round trips, or two failed heartbeats.
	// A round trip fails when Redis does not answer in time, or answers
	// with an error (out of memory, read-only replica, loading, busy, no
	// permission, ...); a reply of an unexpected shape is a hostile value
	// instead. It runs on the goroutine of the decision or heartbeat that
	// saw the failure, once per outage, with no lock held.
	OnFallback func(FallbackEvent)

	// OnRecover, when not nil, is called when Redis answers again after a
	// fallback and the Limiter decides through it again, on the goroutine
	// of the decision or heartbeat that saw it answer, with no lock held.
	OnRecover func(RecoverEvent)

	// OnOverflow, when not nil, is called for each decision about a key
	// that has no state of its own in this process because MaxKeys keys
	// are busy: it is decided by a round trip without a lease, or, while
	// Redis is unavailable, by the local share's overflow limiter. It runs
	// on the deciding goroutine with no lock held.
	OnOverflow func(quota, key string)

	// Logger receives one Warn line when the Limiter falls back (with the
	// cause and the number of processes each quota is divided by) and one
	// Info line when it returns to Redis (with how long it was away): one
	// line per transition, never one per call. Nil means [slog.Default].
	Logger *slog.Logger

	// OnError, when not nil, is called for each round trip that failed
	// (the error wraps the cause; a timeout matches
	// context.DeadlineExceeded) and for each hostile value found under the
	// Limiter's keys (matching [ErrHostileValue]), on the goroutine that
	// saw it, with no lock held.
	OnError func(quota string, err error)
}

// FallbackEvent describes the start of a fallback to local shares.
type FallbackEvent struct {
	// Reason is the failure that made Redis count as unavailable.
	Reason error
	// Processes is the number each quota's rate is divided by; zero for
	// [Breakers].
	Processes int
}

// RecoverEvent describes the return to shared quotas.
type RecoverEvent struct {
	// Down is how long the Limiter decided with local shares.
	Down time.Duration
}

// ErrHostileValue reports a value under one of the package's keys
// (limiter or breaker) or on its channel that the package cannot have
// written (another type, garbage, a time far in the future). It is
// treated as absent: overwritten, deleted or ignored.
var ErrHostileValue = errors.New("redisfleet: hostile value under a fleet key (reset)")

// Validate reports every invalid field of c, each as a
// *[resilience.FieldError], joined with errors.Join; nil when c is valid.
func (c LimiterConfig) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	negDur := func(field string, d time.Duration) {
		if d < 0 {
			add(&resilience.FieldError{Field: field, Value: d, Reason: "negative"})
		}
	}
	negInt := func(field string, n int) {
		if n < 0 {
			add(&resilience.FieldError{Field: field, Value: n, Reason: "negative"})
		}
	}
	add(checkClient(c.Client))
	add(checkPrefix(c.Prefix))
	negDur("Timeout", c.Timeout)
	negDur("LeaseWindow", c.LeaseWindow)
	negInt("MaxLease", c.MaxLease)
	negInt("MaxKeys", c.MaxKeys)
	negInt("Processes", c.Processes)
	negDur("HeartbeatInterval", c.HeartbeatInterval)
	negDur("RetryInterval", c.RetryInterval)
	return errors.Join(errs...)
}

// Limiter enforces rate limits shared by every process of a fleet: each
// [Quota] it creates keeps one GCRA state per caller key in Redis, decided
// by one script call that reads Redis' clock, so that N processes together
// admit a quota's rate, not N times it. Create one with [NewLimiter] and
// stop it with [Limiter.Close]; the zero value is not usable. A Limiter is
// safe for concurrent use.
//
// One Limiter serves every quota of a process over one client; it runs
// one goroutine, the heartbeat, which announces the process in Redis so
// that each process knows its share of a quota when Redis is down.
type Limiter struct {
	client    rueidis.Client
	prefix    string
	timeout   time.Duration
	window    time.Duration // lease window; 0: no leases
	maxLease  int
	maxKeys   int
	processes int // configured divisor; 0: live count
	heartbeat time.Duration
	id        string

	onFallback func(FallbackEvent)
	onRecover  func(RecoverEvent)
	onOverflow func(quota, key string)
	onError    func(quota string, err error)
	logger     *slog.Logger

	cb        *breaker.Breaker // guards the round trips
	fallback  atomic.Bool      // deciding with local shares
	downSince atomic.Int64     // mono ns when the fallback began
	lastErr   atomic.Pointer[error]
	live      atomic.Int64 // live processes last heard of; 0: never heard

	epoch time.Time
	now   func() int64 // ns since epoch, monotonic; replaced by tests

	counts counters

	stop     chan struct{}
	done     chan struct{}
	closeOne sync.Once
}

// counters are a Limiter's cumulative figures.
type counters struct {
	shared, leased, local      atomic.Uint64
	admitted, limited          atomic.Uint64
	errors, hostile, overflow  atomic.Uint64
	fallbacks, leases, dropped atomic.Uint64
	leasedPermits              atomic.Uint64
}

// LimiterMetrics is a snapshot of a Limiter's counters. It is plain data.
type LimiterMetrics struct {
	// Shared counts decisions made by a round trip to Redis.
	Shared uint64
	// Leased counts decisions made from permits of a lease, without a
	// round trip (refusals while Redis said the key is empty included).
	Leased uint64
	// Local counts decisions made by a local share because Redis was
	// unavailable or a round trip failed.
	Local uint64
	// Admitted and Limited count the decisions that granted and refused,
	// whoever made them.
	Admitted, Limited uint64
	// Errors counts round trips that failed or ran out of time.
	Errors uint64
	// Hostile counts values found under the Limiter's keys that it cannot
	// have written, which it reset.
	Hostile uint64
	// Overflow counts decisions about keys beyond MaxKeys.
	Overflow uint64
	// Fallbacks counts the times the Limiter fell back to local shares.
	Fallbacks uint64
	// Leases counts leases taken; LeasedPermits the permits they took
	// beyond the decision that asked; DroppedPermits those that expired
	// unused.
	Leases, LeasedPermits, DroppedPermits uint64
	// InFallback reports that the Limiter decides with local shares now.
	InFallback bool
	// Processes is the number of live processes last heard of in Redis (0
	// before the first heartbeat answered).
	Processes int
}

// NewLimiter returns a Limiter configured by cfg and starts its
// heartbeat. It returns cfg.Validate's error when cfg is invalid. It does
// not wait for Redis: the first heartbeat runs in the background.
func NewLimiter(cfg LimiterConfig) (*Limiter, error) {
	return newLimiterClock(cfg, nil)
}

// newLimiterClock is NewLimiter with the monotonic clock now (ns), when
// not nil, in place of the real one.
func newLimiterClock(cfg LimiterConfig, now func() int64) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Limiter{
		client:     cfg.Client,
		prefix:     prefixOr(cfg.Prefix),
		timeout:    orDefault(cfg.Timeout, DefaultTimeout),
		window:     cfg.LeaseWindow,
		maxLease:   orDefault(cfg.MaxLease, DefaultMaxLease),
		maxKeys:    orDefault(cfg.MaxKeys, DefaultMaxKeys),
		processes:  cfg.Processes,
		heartbeat:  orDefault(cfg.HeartbeatInterval, DefaultHeartbeatInterval),
		id:         newProcessID(),
		onFallback: cfg.OnFallback,
		onRecover:  cfg.OnRecover,
		onOverflow: cfg.OnOverflow,
		onError:    cfg.OnError,
		logger:     cfg.Logger,
		epoch:      time.Now(),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	if l.logger == nil {
		l.logger = slog.Default()
	}
	l.now = now
	if l.now == nil {
		l.now = func() int64 { return int64(time.Since(l.epoch)) }
	}
	retry := orDefault(cfg.RetryInterval, DefaultRetryInterval)
	l.cb = breaker.New(breaker.Config{
		Name:              "redisfleet",
		FailureThreshold:  failuresToFallback,
		Timeout:           retry,
		SuccessThreshold:  1,
		MaxHalfOpenProbes: 1,
		ProbeTimeout:      max(retry, time.Second),
		OnStateChange:     l.stateChanged,
	})
	go l.run()
	return l, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Close stops the heartbeat and, unless the Limiter is in fallback,
// removes the process from the live set; it does not close the client.
// It waits for the heartbeat in flight and makes at most one round trip,
// each bounded by max(Timeout, 200ms): Close returns within about twice
// that (400ms with the defaults). Quotas keep deciding after
// Close, without announcing the process. Close is idempotent and always
// returns nil.
func (l *Limiter) Close() error {
	l.closeOne.Do(func() {
		close(l.stop)
		<-l.done
		if !l.fallback.Load() {
			_, _ = l.presence(true)
		}
	})
	return nil
}

// Metrics returns a snapshot of the Limiter's counters.
func (l *Limiter) Metrics() LimiterMetrics {
	c := &l.counts
	return LimiterMetrics{
		Shared:         c.shared.Load(),
		Leased:         c.leased.Load(),
		Local:          c.local.Load(),
		Admitted:       c.admitted.Load(),
		Limited:        c.limited.Load(),
		Errors:         c.errors.Load(),
		Hostile:        c.hostile.Load(),
		Overflow:       c.overflow.Load(),
		Fallbacks:      c.fallbacks.Load(),
		Leases:         c.leases.Load(),
		LeasedPermits:  c.leasedPermits.Load(),
		DroppedPermits: c.dropped.Load(),
		InFallback:     l.fallback.Load(),
		Processes:      int(l.live.Load()),
	}
}

// InFallback reports whether the Limiter decides with local shares now,
// because Redis failed.
func (l *Limiter) InFallback() bool { return l.fallback.Load() }

// run is the heartbeat goroutine.
func (l *Limiter) run() {
	defer close(l.done)
	t := time.NewTimer(0)
	defer t.Stop()
	failed := 0 // heartbeats failed in a row
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		next := l.heartbeat
		switch l.beat() {
		case beatFailed:
			// A heartbeat that failed is tried again soon: the second
			// failure in a row falls back, so that an outage is noticed
			// quickly and one slow heartbeat is not taken for one.
			if failed++; failed >= beatsToFallback {
				l.cb.Trip()
			}
			next = min(next, beatRetry)
		case beatOK:
			failed = 0
		}
		t.Reset(next)
	}
}

// beatsToFallback is the number of heartbeats failed in a row after which
// a Limiter falls back; beatRetry is how soon a failed one is tried again.
const (
	beatsToFallback = 2
	beatRetry       = 50 * time.Millisecond
)

// beatResult is the outcome of one heartbeat.
type beatResult int

const (
	beatSkipped beatResult = iota // the breaker is open: no round trip
	beatOK
	beatFailed
)

// beat announces the process and counts the live ones, through the
// breaker, so that an outage is noticed (and its end too) even when no
// call comes.
func (l *Limiter) beat() beatResult {
	p, err := l.cb.Allow()
	if err != nil {
		return beatSkipped // open: a later beat, after RetryInterval, probes
	}
	v, err := l.presence(false)
	var (
		live    int
		hostile bool
	)
	if err == nil {
		live, hostile, err = parsePresenceReply(v)
	}
	switch classify(err) {
	case replyOK:
		p.Done(breaker.Success)
		if hostile {
			l.sawHostile("")
		}
		l.live.Store(int64(live))
	case replyHostile:
		p.Done(breaker.Success) // Redis answered
		l.sawHostile("")
	default:
		l.failed(p, "", err)
		return beatFailed
	}
	return beatOK
}

// minBeatTimeout is the least time a heartbeat waits for Redis: two
// heartbeats that fail fall back, so they must not fail for a scheduling
// hiccup.
const minBeatTimeout = 200 * time.Millisecond

// beatTimeout bounds one heartbeat round trip: Timeout, at least
// minBeatTimeout (200ms).
func (l *Limiter) beatTimeout() time.Duration { return max(l.timeout, minBeatTimeout) }

// presence runs the presence script, announcing the process (or, when
// leave, removing it), bounded by beatTimeout.
//
// It runs on a dedicated connection: the heartbeat then never runs
// concurrently with decisions on the shared connection, which would move a
// client that serves calls one at a time to its pipelining mode and add a
// goroutine handoff to each decision. Taking a dedicated connection may
// dial, and the client dials without the call's context (for as long as
// its dial timeout): presence runs it on a goroutine and stops waiting at
// the bound, leaving the goroutine to end with the dial.
func (l *Limiter) presence(leave bool) ([]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.beatTimeout())
	type result struct {
		v   []int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer cancel()
		var r result
		r.err = l.client.Dedicated(func(c rueidis.DedicatedClient) error {
			var err error
			r.v, err = c.Do(ctx, c.B().Eval().Script(presenceSource).Numkeys(1).Key(l.prefix+presenceSpace).Arg(l.presenceArgs(leave)...).Build()).AsIntSlice()
			return err
		})
		done <- r
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		select {
		case r := <-done: // it ended as the time ran out
			return r.v, r.err
		default:
			return nil, fmt.Errorf("redisfleet: heartbeat: %w", ctx.Err())
		}
	}
}

func (l *Limiter) presenceArgs(leave bool) []string {
	ttl := float64(3*l.heartbeat) / float64(time.Microsecond)
	flag := "0"
	if leave {
		flag = "1"
	}
	return []string{l.id, fmt.Sprintf("%.0f", ttl), flag}
}

// failed records a failed round trip.
func (l *Limiter) failed(p breaker.Permit, quota string, err error) {
	l.counts.errors.Add(1)
	l.lastErr.Store(&err)
	p.Done(breaker.Failure)
	if l.onError != nil {
		l.onError(quota, fmt.Errorf("redisfleet: round trip: %w", err))
	}
}

func (l *Limiter) sawHostile(quota string) {
	l.counts.hostile.Add(1)
	if l.onError != nil {
		l.onError(quota, ErrHostileValue)
	}
}

// stateChanged turns the breaker's transitions into fallback and recovery.
// A half-open breaker whose probe fails opens again: still the same
// fallback.
func (l *Limiter) stateChanged(c breaker.StateChange) {
	switch c.To {
	case breaker.Open:
		if !l.fallback.CompareAndSwap(false, true) {
			return
		}
		l.downSince.Store(l.now())
		l.counts.fallbacks.Add(1)
		var reason error
		if e := l.lastErr.Load(); e != nil {
			reason = *e
		}
		div := l.divisor()
		l.logger.Warn("redisfleet: Redis unavailable; quotas decide with this process's local share until it answers",
			"cause", reason, "processes", div)
		if l.onFallback != nil {
			l.onFallback(FallbackEvent{Reason: reason, Processes: div})
		}
	case breaker.Closed:
		if !l.fallback.CompareAndSwap(true, false) {
			return
		}
		down := time.Duration(l.now() - l.downSince.Load())
		l.logger.Info("redisfleet: Redis answers again; quotas are shared again", "down", down)
		if l.onRecover != nil {
			l.onRecover(RecoverEvent{Down: down})
		}
	}
}

// divisor returns the number of processes a quota's rate is divided by
// for the local share.
func (l *Limiter) divisor() int {
	if l.processes > 0 {
		return l.processes
	}
	return int(max(l.live.Load(), 1))
}

// Quota returns the Store that decides the quota named name, with rate
// permits per second and bursts of up to burst for each caller key, shared
// by every process that uses the same Redis, prefix and name. Rate and
// burst follow package ratelimit: a zero (or invalid) rate means no limit,
// a zero burst means ceil(rate), at least 1. Every process should give a
// name the same rate and burst.
//
// Quota is cheap: it computes the quota's keys and parameters and creates
// its local state lazily. Two Quotas with one name share the Redis state
// but not the leases.
func (l *Limiter) Quota(name string, rate float64, burst int) *Quota {
	p := newScriptParams(rate, burst)
	q := &Quota{
		l:       l,
		name:    name,
		base:    quotaKeyBase(l.prefix, name),
		p:       p,
		rate:    min(max(rate, 0), maxRate),
		argsOne: []string{p.interval, p.limit, "1", "0"},
	}
	if math.IsNaN(rate) || math.IsInf(rate, 0) {
		q.rate = 0
	}
	return q
}

var _ ratelimit.Store = (*Quota)(nil)

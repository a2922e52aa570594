package redisfleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
)

// Defaults of [BreakersConfig].
const (
	// DefaultSyncInterval is how often a process publishes its counts and
	// reads the fleet's, when BreakersConfig.SyncInterval is zero.
	DefaultSyncInterval = 100 * time.Millisecond
	// DefaultFleetWindow is the period the fleet's rates cover, when
	// BreakersConfig.Window is zero.
	DefaultFleetWindow = 10 * time.Second
	// MaxFleetWindow is the longest BreakersConfig.Window.
	MaxFleetWindow = time.Hour
	// DefaultFleetFailureRate is the fleet's failure rate, in percent, at
	// or above which every process opens, when
	// BreakersConfig.FailureRateThreshold is zero.
	DefaultFleetFailureRate = 50
	// DefaultFleetMinimumCalls is the number of calls the fleet's window
	// must hold before its rates count, when BreakersConfig.MinimumCalls
	// is zero.
	DefaultFleetMinimumCalls = 20
	// DefaultProbeLease is how long a process holds the fleet's probe
	// lease without extending it, when BreakersConfig.ProbeLease is zero.
	DefaultProbeLease = 3 * time.Second
	// MaxProbeLease is the longest BreakersConfig.ProbeLease.
	MaxProbeLease = time.Hour
	// DefaultSyncTimeout bounds one round trip of the syncer, when
	// BreakersConfig.Timeout is zero.
	DefaultSyncTimeout = time.Second
	// DefaultMaxBreakers is the most breakers one [Breakers] joins, when
	// BreakersConfig.MaxBreakers is zero.
	DefaultMaxBreakers = 10000
	// MaxBreakerNameLen is the longest name a breaker joins under.
	MaxBreakerNameLen = 1024
)

// stateKeep is how long the fleet state of a breaker outlives its last
// change (beyond the open time). A state that expired reads as closed.
const stateKeep = 24 * time.Hour

// BreakersConfig configures a [Breakers]. It is plain data: [NewBreakers]
// copies it. Every field but Client has a useful zero value.
//
// Every process of a fleet must use the same Prefix and join each shared
// breaker under the same name; the other settings (Window,
// FailureRateThreshold, SlowCallRateThreshold, MinimumCalls, ProbeLease)
// should agree too: processes with different rate settings disagree on
// when the fleet's rate is reached, and a lease ten times longer than a
// process's own ProbeLease looks hostile to it.
type BreakersConfig struct {
	// Client is the connection to Redis, configured by the caller
	// (address, TLS, authentication and pooling are its options). Breakers
	// never closes it. Required.
	Client rueidis.Client

	// Prefix starts every key and the channel Breakers uses, so that
	// several applications can share one Redis. Zero means
	// [DefaultPrefix] ("grpcres:"). Longer than [MaxPrefixLen] bytes, or
	// holding a brace (which Redis Cluster reads as a hash tag), is
	// invalid.
	Prefix string

	// SyncInterval is how often the process publishes the counts of each
	// joined breaker, reads the fleet's totals and state, and asks for the
	// probe lease: one round trip per interval for all its breakers. A
	// breaker that made no call while the fleet is closed syncs every
	// tenth interval only (transitions still arrive at once on the
	// channel). Zero means [DefaultSyncInterval] (100ms). Values below 1ms
	// are invalid.
	SyncInterval time.Duration

	// Window is the period the fleet's failure and slow-call rates cover,
	// counted in whole seconds (rounded up). Zero means
	// [DefaultFleetWindow] (10s). Negative values and values above
	// [MaxFleetWindow] are invalid.
	Window time.Duration

	// FailureRateThreshold is the failure rate, in percent of the calls
	// the whole fleet made in Window (0 < rate <= 100), at or above which
	// every process opens its breaker. Calls the breaker ignored do not
	// count. Zero means [DefaultFleetFailureRate] (50). Negative values,
	// NaN and values above 100 are invalid.
	FailureRateThreshold float64

	// SlowCallRateThreshold is the rate of slow calls (as each process's
	// breaker counts them: see breaker.Config.SlowCallDuration), in percent
	// of the fleet's calls in Window, at or above which every process
	// opens. Zero means disabled. Negative values, NaN and values above
	// 100 are invalid.
	SlowCallRateThreshold float64

	// MinimumCalls is the number of calls the fleet's window must hold
	// before its rates are compared with the thresholds. Zero means
	// [DefaultFleetMinimumCalls] (20). Negative values are invalid.
	MinimumCalls int

	// ProbeLease is how long the process that won the right to probe
	// holds it: it extends the lease while it probes (a probe in flight,
	// or calls since its last sync), and when the process dies or makes
	// no call, the lease runs out and another process may take it. It is
	// also how long a breaker whose round trips fail while Redis serves
	// the others waits before it runs on its own. Zero means [DefaultProbeLease] (3s).
	// Values below 10ms or above [MaxProbeLease] are invalid. Set it above SyncInterval and above
	// the time a probe call takes.
	ProbeLease time.Duration

	// Timeout bounds one round trip to Redis. A round trip that fails
	// because Redis cannot serve it makes the breakers run on their own
	// (see OnFallback). Zero means
	// [DefaultSyncTimeout] (1s). Negative values are invalid.
	Timeout time.Duration

	// MaxBreakers is the most breakers joined at once; [Breakers.Join]
	// refuses more with an error. Zero means [DefaultMaxBreakers]
	// (10000). Negative values are invalid.
	MaxBreakers int

	// OnFallback, when not nil, is called when Redis stops answering, or
	// answers with an error reply saying it cannot serve (OOM, READONLY,
	// LOADING, BUSY, NOPERM, NOAUTH, MASTERDOWN, TRYAGAIN, CLUSTERDOWN,
	// MISCONF), and each process's breakers run on their own local state
	// (their own thresholds; no process is kept from probing), once per
	// outage, on the syncer's goroutine, with no lock held.
	// FallbackEvent.Processes is zero.
	OnFallback func(FallbackEvent)

	// OnRecover, when not nil, is called when Redis answers again after a
	// fallback and the breakers share their state again, on the syncer's
	// goroutine, with no lock held.
	OnRecover func(RecoverEvent)

	// Logger receives one Warn line when Redis stops answering and the
	// breakers fall back to their local state (with the cause), and one
	// Info line when it answers again (with how long it was away): one
	// line per transition, never one per call or per round trip. Nil
	// means [slog.Default].
	Logger *slog.Logger

	// OnError, when not nil, is called with the breaker's name for each
	// failed round trip (a timeout matches context.DeadlineExceeded), for
	// each hostile value found under the breaker's keys or on the channel
	// (matching [ErrHostileValue]; the value is deleted or ignored), on
	// the syncer's or the subscriber's goroutine, with no lock held. The
	// name is "" for a round trip or a message that concerns no one
	// breaker.
	OnError func(name string, err error)
}

// Validate reports every invalid field of c, each as a
// *[resilience.FieldError], joined with errors.Join; nil when c is valid.
func (c BreakersConfig) Validate() error {
	var errs []error
	bad := func(field string, value any, reason string) {
		errs = append(errs, &resilience.FieldError{Field: field, Value: value, Reason: reason})
	}
	if err := checkClient(c.Client); err != nil {
		errs = append(errs, err)
	}
	if err := checkPrefix(c.Prefix); err != nil {
		errs = append(errs, err)
	}
	const notNegative = "must not be negative"
	if c.SyncInterval != 0 && c.SyncInterval < time.Millisecond {
		bad("SyncInterval", c.SyncInterval, "must be zero or at least 1ms")
	}
	if c.Window < 0 || c.Window > MaxFleetWindow {
		bad("Window", c.Window, fmt.Sprintf("must be between 0 and %v", MaxFleetWindow))
	}
	if !(c.FailureRateThreshold >= 0 && c.FailureRateThreshold <= 100) {
		bad("FailureRateThreshold", c.FailureRateThreshold, "must be a percentage between 0 and 100")
	}
	if !(c.SlowCallRateThreshold >= 0 && c.SlowCallRateThreshold <= 100) {
		bad("SlowCallRateThreshold", c.SlowCallRateThreshold, "must be a percentage between 0 and 100")
	}
	if c.MinimumCalls < 0 {
		bad("MinimumCalls", c.MinimumCalls, notNegative)
	}
	if c.ProbeLease != 0 && (c.ProbeLease < 10*time.Millisecond || c.ProbeLease > MaxProbeLease) {
		bad("ProbeLease", c.ProbeLease, fmt.Sprintf("must be zero or between 10ms and %v", MaxProbeLease))
	}
	if c.Timeout < 0 {
		bad("Timeout", c.Timeout, notNegative)
	}
	if c.MaxBreakers < 0 {
		bad("MaxBreakers", c.MaxBreakers, notNegative)
	}
	return errors.Join(errs...)
}

// breakersSettings is a BreakersConfig with every default applied.
type breakersSettings struct {
	prefix      string
	interval    time.Duration
	windowSec   int64
	failureRate float64
	slowRate    float64 // 0: off
	minCalls    int64
	lease       time.Duration
	timeout     time.Duration
	maxBreakers int
	onFallback  func(FallbackEvent)
	onRecover   func(RecoverEvent)
	onError     func(string, error)
	logger      *slog.Logger
}

func (c BreakersConfig) settings() breakersSettings {
	w := c.Window
	if w <= 0 {
		w = DefaultFleetWindow
	}
	s := breakersSettings{
		prefix:      prefixOr(c.Prefix),
		interval:    orDefault(c.SyncInterval, DefaultSyncInterval),
		windowSec:   int64((w + time.Second - 1) / time.Second),
		failureRate: c.FailureRateThreshold,
		slowRate:    c.SlowCallRateThreshold,
		minCalls:    int64(orDefault(c.MinimumCalls, DefaultFleetMinimumCalls)),
		lease:       orDefault(c.ProbeLease, DefaultProbeLease),
		timeout:     orDefault(c.Timeout, DefaultSyncTimeout),
		maxBreakers: orDefault(c.MaxBreakers, DefaultMaxBreakers),
		onFallback:  c.OnFallback,
		onRecover:   c.OnRecover,
		onError:     c.OnError,
		logger:      c.Logger,
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.failureRate == 0 {
		s.failureRate = DefaultFleetFailureRate
	}
	if s.lease < 10*time.Millisecond || s.lease > MaxProbeLease {
		s.lease = DefaultProbeLease
	}
	return s
}

// Breakers shares the state of circuit breakers across the processes of a
// fleet through Redis. Create one per process with [NewBreakers], join each
// local [breaker.Breaker] to it under a name that every process uses for
// the same dependency ([Breakers.Join]), and [Breakers.Close] it at the
// end. A Breakers is safe for concurrent use.
//
// Each process keeps its local breaker: the closed path stays local (no
// network, no allocation per call). A background goroutine (the syncer)
// joins it to the fleet:
//
//   - Every SyncInterval it adds the breaker's new calls, failures and slow
//     calls to per-second counts in Redis and reads the fleet's totals over
//     Window, in one round trip; when the fleet's failure (or slow-call)
//     rate reaches its threshold with at least MinimumCalls calls, the
//     process trips its breaker ([breaker.Breaker.Trip]) and opens the
//     fleet.
//   - When a local breaker opens by itself (its own thresholds, or a failed
//     probe), the syncer opens the fleet state and announces it on a
//     channel; every process, hearing it, reads the state from Redis and
//     trips its breaker, so that the whole fleet opens within two round
//     trips of the first process. A message is only a hint to read: a
//     forged one moves nothing.
//   - When the fleet's open time is over, one process wins a probe lease
//     (the first one that had calls waiting) and only its breaker
//     half-opens; the other processes keep theirs open. Its probes decide
//     for everyone: closed, every process closes its breaker
//     ([breaker.Breaker.Reset]); failed, the fleet opens again. The holder
//     extends its lease only while it probes; a lease whose holder died or
//     stopped calling runs out (ProbeLease) and another process takes it.
//
// When Redis does not answer, each breaker runs on its own (see
// BreakersConfig.OnFallback) and nothing waits for Redis: the syncer's
// round trips are bounded by Timeout and no call ever makes one. Values
// under the breakers' keys or on the channel that this package cannot
// have written are deleted or ignored and reported (OnError with
// [ErrHostileValue], BreakersMetrics.Hostile); they never panic.
//
// [breaker.Breaker.Reset], ForceOpen and ForceClosed act on the local
// breaker only; a forced breaker neither follows the fleet nor moves it.
type Breakers struct {
	s      breakersSettings
	client rueidis.Client
	id     string // this process's id in leases and messages
	start  time.Time
	// now reads the monotonic clock the gates use; tests may replace it.
	now func() time.Duration

	events chan localEvent // from the breakers' hooks to the syncer
	msgs   chan message    // from the subscriber to the syncer
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	members map[string]*member
	closed  bool

	fallback  atomic.Bool
	downSince time.Time // syncer goroutine only
	c         breakerCounters
}

type breakerCounters struct {
	syncs, syncErrors, fallbacks, published, received,
	trips, resets, leases, hostile, dropped atomic.Uint64
}

// BreakersMetrics is a snapshot of a [Breakers]' counts, from
// [Breakers.Metrics]. It is plain data.
type BreakersMetrics struct {
	// Joined is the number of breakers joined now.
	Joined int
	// Syncs counts the round trips that succeeded; SyncErrors those that
	// failed.
	Syncs, SyncErrors uint64
	// Fallback reports that Redis does not answer and every breaker runs
	// on its own; Fallbacks counts the outages.
	Fallback  bool
	Fallbacks uint64
	// Published counts the fleet transitions this process wrote (it
	// opened or closed the fleet); Received counts the transitions it
	// heard on the channel, its own included.
	Published, Received uint64
	// Trips counts the times the fleet opened a local breaker; Resets the
	// times it closed one.
	Trips, Resets uint64
	// ProbeLeases counts the probe leases this process won.
	ProbeLeases uint64
	// Hostile counts the values under the breakers' keys and the messages
	// on the channel that this package cannot have written; they were
	// deleted or ignored.
	Hostile uint64
	// Dropped counts the local state changes and messages the syncer did
	// not keep up with; the next round trip brings the state back in line.
	Dropped uint64
}

// NewBreakers validates cfg and returns a Breakers that has started its
// syncer and subscribed to the fleet's channel. It does not wait for
// Redis: when Redis does not answer, the breakers joined run on their own
// until it does.
func NewBreakers(cfg BreakersConfig) (*Breakers, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Breakers{
		s:       cfg.settings(),
		client:  cfg.Client,
		id:      newBreakerProcessID(),
		start:   time.Now(),
		events:  make(chan localEvent, 1024),
		msgs:    make(chan message, 1024),
		ctx:     ctx,
		cancel:  cancel,
		members: make(map[string]*member),
	}
	b.now = func() time.Duration { return time.Since(b.start) }
	b.wg.Add(2)
	go b.runSyncer()
	go b.runSubscriber()
	return b, nil
}

// newBreakerProcessID returns an id for this process in leases and
// messages: the process id and random bytes, without spaces.
func newBreakerProcessID() string {
	var r [8]byte
	_, _ = rand.Read(r[:])
	return strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(r[:])
}

// ErrClosed is returned by [Breakers.Join] after [Breakers.Close].
var ErrClosed = errors.New("redisfleet: closed")

// Join joins b to the fleet's breaker called name and returns a function
// that leaves it again (calling it more than once does nothing; Close
// leaves every breaker). Every process must join its breaker for the same
// dependency under the same name. The breaker keeps its configuration and
// its local state; from now on it also follows the fleet, as [Breakers]
// describes.
//
// A breaker joined under a name that another breaker of this process holds
// takes its place: the other one leaves, as its leave function would make
// it, and follows the fleet no more. So a cache that drops a breaker and
// creates another for the same name, before it has run the first one's
// leave, never leaves the new one out of the fleet.
//
// Join fails when name is empty or longer than [MaxBreakerNameLen] bytes,
// when b is nil, when MaxBreakers breakers are joined, and after Close
// ([ErrClosed]).
func (f *Breakers) Join(name string, b *breaker.Breaker) (leave func(), err error) {
	switch {
	case name == "" || len(name) > MaxBreakerNameLen:
		return nil, fmt.Errorf("redisfleet: breaker name of %d bytes, want 1 to %d", len(name), MaxBreakerNameLen)
	case b == nil:
		return nil, errors.New("redisfleet: nil breaker")
	}
	m := &member{name: name, b: b}
	m.keys[0], m.keys[1], m.keys[2] = breakerKeys(f.s.prefix, name)
	m.gateUntil.Store(math.MaxInt64) // until the fleet says otherwise
	m.last = b.Peek()
	m.lastOK = f.now()

	f.mu.Lock()
	old := f.members[name]
	switch {
	case f.closed:
		f.mu.Unlock()
		return nil, ErrClosed
	case old == nil && len(f.members) >= f.s.maxBreakers:
		f.mu.Unlock()
		return nil, fmt.Errorf("redisfleet: %d breakers joined, the most MaxBreakers allows", len(f.members))
	}
	f.members[name] = m
	m.detach = b.Coordinate(breaker.Coordinator{
		OnStateChange: func(c breaker.StateChange) { f.stateChanged(m, c) },
		AllowHalfOpen: func() bool { return int64(f.now()) < m.gateUntil.Load() },
	})
	f.mu.Unlock()
	if old != nil {
		old.detach()
	}

	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			if f.members[name] == m {
				delete(f.members, name)
			}
			f.mu.Unlock()
			m.detach()
		})
	}, nil
}

// stateChanged hands a local state change to the syncer without waiting.
func (f *Breakers) stateChanged(m *member, c breaker.StateChange) {
	select {
	case f.events <- localEvent{m: m, c: c}:
	default:
		f.c.dropped.Add(1)
		m.resync.Store(true)
	}
}

// Close stops the syncer and the subscriber, waits for them (it cancels
// the round trip in flight, so it never waits for Redis longer than
// Timeout), and leaves every joined breaker, which then runs on its own. It leaves the fleet's
// state in Redis as it is and does not close the client. Calling it again
// does nothing. It always returns nil. It must not be called from a hook
// (a breaker's OnStateChange or a BreakersConfig hook): those may run on
// the syncer's goroutine, which Close waits for.
func (f *Breakers) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	members := make([]*member, 0, len(f.members))
	for _, m := range f.members {
		members = append(members, m)
	}
	clear(f.members)
	f.mu.Unlock()
	f.cancel()
	f.wg.Wait()
	for _, m := range members {
		m.detach()
	}
	return nil
}

// Metrics returns a snapshot of the counts. It is safe for concurrent use.
func (f *Breakers) Metrics() BreakersMetrics {
	f.mu.Lock()
	n := len(f.members)
	f.mu.Unlock()
	return BreakersMetrics{
		Joined:      n,
		Syncs:       f.c.syncs.Load(),
		SyncErrors:  f.c.syncErrors.Load(),
		Fallback:    f.fallback.Load(),
		Fallbacks:   f.c.fallbacks.Load(),
		Published:   f.c.published.Load(),
		Received:    f.c.received.Load(),
		Trips:       f.c.trips.Load(),
		Resets:      f.c.resets.Load(),
		ProbeLeases: f.c.leases.Load(),
		Hostile:     f.c.hostile.Load(),
		Dropped:     f.c.dropped.Load(),
	}
}

// InFallback reports whether Redis does not answer and the breakers run on
// their own.
func (f *Breakers) InFallback() bool { return f.fallback.Load() }

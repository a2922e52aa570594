package breaker

import (
	"context"
	"errors"
	"math"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/engineeringlabs/grpc-resilience/internal/stackhash"
)

// Breaker is a circuit breaker. Create one with [New]; the zero value is not
// usable. A Breaker is safe for concurrent use by multiple goroutines.
//
// Most callers use [Breaker.Execute]; streams and interceptors use the
// two-step [Breaker.Allow] and the returned [Permit].
//
// # Concurrency design
//
// The state, the mode and a generation number live in one atomic word. A
// closed-state Allow is one atomic load; recording its outcome is a couple
// of atomic operations on the counters of the current closed period (an
// object replaced, never reset, on every transition to closed, so that a
// late writer can only touch a dead object) and one on the cumulative
// counters: the breaker's own until calls contend for them, then the
// calling goroutine's stripe. A success in a period without a rate window
// writes only that counter: the run of consecutive failures is read, and
// written only when it is not zero. The mutex is taken only to change
// state, to admit and record half-open probes, and for the metrics
// snapshot. Every transition increments the generation; a permit remembers
// the generation it was granted in, and an outcome recorded under another
// generation is discarded.
type Breaker struct {
	// base holds the cumulative counters until two calls update one of
	// them at the same moment; from then on they go to the stripes at
	// cells, and base keeps what it counted. It is written by every call
	// until then, so it lies apart from the fields read on every call,
	// behind the fields only transitions write.
	base counters

	mu             sync.Mutex
	probeSuccesses int // successful probes in the current half-open generation
	// probeStarts holds the Permit.start of each probe in flight in the
	// current half-open generation, in the order they were admitted. A
	// probe's start identifies its slot: a probe whose start is no longer
	// here lost its slot to ProbeTimeout.
	probeStarts []time.Duration
	opens       int // consecutive opens since the breaker last closed
	transitions uint64
	events      []StateChange // undelivered state changes, oldest first from eventHead
	eventHead   int
	delivering  bool // a goroutine is delivering events

	// Read on every call, written only on transitions (under mu).
	word   atomic.Uint64          // state | mode<<2 | generation<<4
	period atomic.Pointer[period] // counters of the latest closed period
	// cells is the first of the 1<<(64-stripeShift) stripes of the
	// cumulative counters, nil until calls contend for base; set once.
	cells     atomic.Pointer[stripe]
	openUntil atomic.Int64 // clock reading at which an auto-open breaker half-opens
	probes    atomic.Int64 // half-open probes in flight; written under mu only
	// probeExpiry is the clock reading at which the oldest probe in flight
	// loses its slot (math.MaxInt64: none); written under mu only.
	probeExpiry atomic.Int64
	// coords holds the attached coordinators; nil when there are none.
	// Written under mu only, copied on write.
	coords atomic.Pointer[[]*Coordinator]

	s settings
	// origin is the time.Time at which the breaker's clock (now) reads
	// zero; clockFn, when set, replaces that clock (tests inject one).
	origin      time.Time
	clockFn     func() time.Duration
	needNow     bool  // records need the clock (slow calls or a time window)
	stripeShift uint8 // 64 - log2(number of stripes), for Breaker.stripe
	// errs holds the three rejections a breaker returns, allocated with
	// it: errOpen, errForced and errProbes point into it.
	errs                          [3]OpenError
	errOpen, errForced, errProbes *OpenError

	// release is what RegistryConfig.OnCreate returned, run once when a
	// Registry drops the breaker; nil otherwise.
	release atomic.Pointer[func()]
}

// Layout of Breaker.word.
const (
	stateMask = 0b11
	modeShift = 2
	modeMask  = 0b11
	genShift  = 4
)

func pack(s State, m Mode, gen uint64) uint64 {
	return gen<<genShift | uint64(m)<<modeShift | uint64(s)
}
func stateOf(w uint64) State { return State(w & stateMask) }
func modeOf(w uint64) Mode   { return Mode(w >> modeShift & modeMask) }
func genOf(w uint64) uint64  { return w >> genShift }

// period holds the counters of one closed period of a breaker: from a
// transition to closed until the next transition.
type period struct {
	gen         uint64
	consecutive atomic.Int64 // consecutive failures
	win         window       // nil when no rate threshold is set
}

// counter names one of a breaker's cumulative counters.
type counter uint8

const (
	cSuccesses counter = iota
	cFailures
	cIgnored
	cSlows
	cRejected
	cDiscarded
	numCounters
)

// counters holds one share of a breaker's cumulative counters.
type counters [numCounters]atomic.Uint64

// maxStripes caps the number of stripes of a breaker's counters.
const maxStripes = 8

// stripe holds one share of a breaker's cumulative counters, alone on its
// 128 bytes (some processors fetch cache lines in pairs). A breaker's
// stripes are one block, a multiple of 128 bytes allocated alone, which
// starts on a 128-byte boundary, so that no stripe shares a line with
// another stripe or with another object.
type stripe struct {
	c counters
	_ [128 - numCounters*8]byte
}

// numStripes returns the number of stripes for a breaker created now: twice
// GOMAXPROCS rounded up to a power of two, at least 2 and at most
// maxStripes: more stripes than goroutines running at once, so that few
// of them share one, in 256 to 1024 bytes.
func numStripes() int {
	n := 2
	for n < 2*runtime.GOMAXPROCS(0) && n < maxStripes {
		n *= 2
	}
	return n
}

// count adds one to counter c. Until two calls meet on base (a failed
// compare-and-swap), the counts go there: a breaker that never sees
// concurrent calls never allocates its stripes. Then they go to the
// calling goroutine's stripe.
func (b *Breaker) count(c counter) {
	if first := b.cells.Load(); first != nil {
		b.stripe(first).c[c].Add(1)
		return
	}
	x := &b.base[c]
	if v := x.Load(); x.CompareAndSwap(v, v+1) {
		return
	}
	b.stripe(b.grow()).c[c].Add(1)
}

// grow allocates the stripes, unless another call just did, and returns
// the first.
func (b *Breaker) grow() *stripe {
	s := make([]stripe, 1<<(64-b.stripeShift))
	if b.cells.CompareAndSwap(nil, &s[0]) {
		return &s[0]
	}
	return b.cells.Load()
}

// stripes returns the stripes that start at first.
func (b *Breaker) stripes(first *stripe) []stripe {
	return unsafe.Slice(first, 1<<(64-b.stripeShift))
}

// stripe returns the calling goroutine's stripe of those that start at
// first, chosen by the address of its stack (see internal/stackhash). A
// stripe chosen afresh for every call (at random, or by the nanoseconds of
// the clock) keeps concurrent writes apart but not the cache line: about
// every other write finds it in the cache of the other core that wrote it
// last, and moving it costs more than the count.
func (b *Breaker) stripe(first *stripe) *stripe {
	return &b.stripes(first)[stackhash.Hash()>>b.stripeShift]
}

// now returns the breaker's monotonic clock reading.
func (b *Breaker) now() time.Duration {
	if b.clockFn != nil {
		return b.clockFn()
	}
	return time.Since(b.origin)
}

// New returns a closed circuit breaker configured by cfg. It never fails: a
// field that [Config.Validate] rejects is treated as if it were zero, that
// is, as its default.
//
// When concurrent calls make the breaker stripe its counters, their number
// follows the GOMAXPROCS of the time New ran (see Memory in the package
// documentation); the counts stay exact when GOMAXPROCS changes later.
func New(cfg Config) *Breaker {
	return newBreaker(cfg, nil)
}

// newBreaker is New with an injected monotonic clock; nil means the
// breaker's own, started now.
func newBreaker(cfg Config, clock func() time.Duration) *Breaker {
	n := numStripes()
	b := &Breaker{
		s:           cfg.settings(),
		origin:      time.Now(),
		clockFn:     clock,
		stripeShift: uint8(64 - bits.TrailingZeros(uint(n))),
	}
	b.needNow = b.s.slowDur > 0 || (b.s.windowed && b.s.windowType == TimeWindow)
	b.errs = [3]OpenError{{b: b, state: Open}, {b: b, state: Open, forced: true}, {b: b, state: HalfOpen}}
	b.errOpen, b.errForced, b.errProbes = &b.errs[0], &b.errs[1], &b.errs[2]
	b.period.Store(b.newPeriod(0))
	b.probeExpiry.Store(math.MaxInt64)
	b.word.Store(pack(Closed, Auto, 0))
	return b
}

func (b *Breaker) newPeriod(gen uint64) *period {
	p := &period{gen: gen}
	if b.s.windowed {
		if b.s.windowType == TimeWindow {
			p.win = newTimeWindow(b.s.bucketDur, b.s.buckets, b.now)
		} else {
			p.win = newCountWindow(b.s.windowSize)
		}
	}
	return p
}

// Permit is the permission [Breaker.Allow] grants to run one call. It is a
// small value: copy it freely, but record its outcome exactly once, with
// [Permit.Done], [Permit.DoneAt], [Permit.DoneDuration] or [Permit.Record].
// A half-open probe holds its probe slot until then, or until
// Config.ProbeTimeout ran out (its outcome is then discarded); recording a
// closed-state permit twice counts the call twice.
//
// The zero Permit belongs to no breaker: its methods do nothing. Its methods
// are safe for concurrent use.
type Permit struct {
	b     *Breaker
	gen   uint64
	start time.Duration // clock reading at Allow; set for probes and when slow calls are tracked
	state State
}

// State returns the state the permit was granted in: [Closed], or
// [HalfOpen] for a probe.
func (p Permit) State() State { return p.state }

// Done records the call's outcome. Its duration, for slow-call detection,
// runs from Allow to Done. An outcome other than the three constants counts
// as [Failure].
func (p Permit) Done(o Outcome) {
	if p.b != nil {
		p.b.record(p, o, 0, false, p.b.clock())
	}
}

// DoneAt is Done with the caller's reading of the clock at the end of the
// call, now (from time.Now()), so that a caller that reads the clock
// anyway saves the breaker another reading. A breaker uses a clock reading
// to record an outcome only when its records need one: with a time-based
// window (Config.WindowType [TimeWindow] and a rate threshold) or a
// slow-call threshold (Config.SlowCallDuration); otherwise now is not used.
// The call's duration, for slow-call detection, runs from Allow to now.
//
// now should carry a monotonic clock reading, as time.Now's result does;
// then the breaker measures it against its own monotonic clock and a step
// of the wall clock changes nothing. A now earlier than Allow's reading
// counts as a duration of 0. A now later than the breaker's clock still
// times the call up to now, but a time window files the call under the
// present, never under a bucket the clock has not reached. A breaker
// created inside a testing/synctest bubble reads the bubble's fake clock,
// so time.Now's readings there map onto it too.
func (p Permit) DoneAt(o Outcome, now time.Time) {
	if p.b != nil {
		p.b.record(p, o, 0, false, p.b.at(now))
	}
}

// DoneDuration records the call's outcome with a duration the caller
// measured itself, for slow-call detection; a negative d counts as 0.
func (p Permit) DoneDuration(o Outcome, d time.Duration) {
	if p.b != nil {
		p.b.record(p, o, max(d, 0), true, p.b.clock())
	}
}

// Record classifies err with Config.Classify (by default: nil is a
// success, context.Canceled is ignored, anything else is a failure) and
// records the outcome as Done does.
func (p Permit) Record(err error) {
	if b := p.b; b != nil {
		o := Success
		if err != nil || !b.s.defaultClassify {
			o = b.s.classify(err)
		}
		b.record(p, o, 0, false, b.clock())
	}
}

// Allow asks for permission to run one call and never blocks. In the closed
// state it grants a permit without taking any lock and without allocating.
// Open, it rejects the call with an *[OpenError] (matching
// [resilience.ErrCircuitOpen]) until the open duration ran out; then it
// half-opens and grants up to Config.MaxHalfOpenProbes concurrent probes,
// rejecting the rest (never queueing them).
//
// After a nil error, the caller must record the call's outcome on the
// permit exactly once. Rejections are counted in the metrics and reported
// to Config.OnReject.
func (b *Breaker) Allow() (Permit, error) {
	w := b.word.Load()
	if stateOf(w) == Closed && b.s.slowDur == 0 {
		return Permit{b: b, gen: genOf(w), state: Closed}, nil
	}
	return b.allowSlow(w)
}

func (b *Breaker) closedPermit(w uint64) Permit {
	p := Permit{b: b, gen: genOf(w), state: Closed}
	if b.s.slowDur > 0 {
		p.start = b.now()
	}
	return p
}

// allowSlow is Allow outside the closed state, and in the closed state
// when slow calls are tracked.
func (b *Breaker) allowSlow(w uint64) (Permit, error) {
	for {
		switch {
		case stateOf(w) == Closed:
			return b.closedPermit(w), nil
		case modeOf(w) == ForcedOpen:
			return b.reject(b.errForced)
		case stateOf(w) == Open && b.now() < time.Duration(b.openUntil.Load()):
			// Still open: the common rejection, lock-free.
			return b.reject(b.errOpen)
		case stateOf(w) == Open && modeOf(w) == Auto && !b.halfOpenAllowed():
			// The open duration ran out but a coordinator keeps the
			// breaker open.
			return b.reject(b.errOpen)
		case stateOf(w) == HalfOpen && b.probes.Load() >= int64(b.s.maxProbes) &&
			b.now() < time.Duration(b.probeExpiry.Load()):
			// Every slot taken, none held past ProbeTimeout: reject
			// without contending for the lock. The count may be stale by
			// a probe that just finished; such a call is rejected as it
			// would have been a moment earlier.
			return b.reject(b.errProbes)
		}
		b.mu.Lock()
		if w2 := b.word.Load(); w2 != w {
			// The state changed since we looked: decide again.
			b.mu.Unlock()
			w = w2
			continue
		}
		if stateOf(w) == Open {
			if w = b.halfOpenLocked(w); stateOf(w) != HalfOpen {
				b.unlockAndDeliver()
				continue
			}
		}
		now := b.now()
		if b.probes.Load() >= int64(b.s.maxProbes) {
			b.reclaimProbesLocked(now)
		}
		if b.probes.Load() >= int64(b.s.maxProbes) {
			b.unlockAndDeliver()
			return b.reject(b.errProbes)
		}
		// A probe always carries its start: it identifies its slot.
		p := Permit{b: b, gen: genOf(w), state: HalfOpen, start: now}
		b.probes.Add(1)
		b.probeStarts = append(b.probeStarts, now)
		if len(b.probeStarts) == 1 {
			b.probeExpiry.Store(int64(addSat(now, b.s.probeTimeout)))
		}
		b.unlockAndDeliver()
		return p, nil
	}
}

func (b *Breaker) reject(e *OpenError) (Permit, error) {
	b.count(cRejected)
	if b.s.onReject != nil {
		b.s.onReject(e)
	}
	return Permit{}, e
}

// Execute runs fn if the breaker permits it and records the outcome: it
// returns fn's error unchanged, or an *[OpenError] matching
// [resilience.ErrCircuitOpen] without calling fn when the breaker rejects
// the call. It never blocks by itself: ctx is handed to fn, and when ctx is
// already done Execute returns ctx.Err() without calling fn or taking a
// permit.
//
// fn's error is classified with Config.Classify, except that any error
// returned after ctx was cancelled (context.Canceled, the caller gave up)
// is [Ignored]. A panic in fn is recorded as a [Failure] and then
// propagates. In the closed state, Execute takes no lock and allocates
// nothing of its own (see Performance in the package documentation).
func (b *Breaker) Execute(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := b.Allow()
	if err != nil {
		return err
	}
	recorded := false
	defer func() {
		if !recorded { // fn panicked or called runtime.Goexit
			p.Done(Failure)
		}
	}()
	err = fn(ctx)
	recorded = true
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		p.Done(Ignored)
	} else {
		p.Record(err)
	}
	return err
}

// clock returns the breaker's clock reading when records need it (a time
// window or slow calls), and 0 otherwise.
func (b *Breaker) clock() time.Duration {
	if b.needNow {
		return b.now()
	}
	return 0
}

// at is clock for a caller's reading t of time.Now: t on the breaker's
// clock. An injected clock has no origin to map t onto: at reads it
// instead.
func (b *Breaker) at(t time.Time) time.Duration {
	switch {
	case !b.needNow:
		return 0
	case b.clockFn != nil:
		return b.clockFn()
	}
	// A reading before the breaker's creation (the zero Time, say) is
	// its creation: durations and bucket indices never go negative.
	return max(t.Sub(b.origin), 0)
}

// record counts one outcome at now, the breaker's clock reading from
// clock or at. d is the call's duration when measured is true; otherwise
// record measures it from p.start when slow calls are tracked.
func (b *Breaker) record(p Permit, o Outcome, d time.Duration, measured bool, now time.Duration) {
	if o > Ignored {
		o = Failure
	}
	if !measured {
		d = 0
		if b.s.slowDur > 0 {
			d = max(now-p.start, 0)
		}
	}
	slow := o != Ignored && b.s.slowDur > 0 && d >= b.s.slowDur
	counted := b.apply(p, o, slow, now)

	switch {
	case !counted:
		b.count(cDiscarded)
	case o == Success:
		b.count(cSuccesses)
	case o == Failure:
		b.count(cFailures)
	default:
		b.count(cIgnored)
	}
	if counted && slow {
		b.count(cSlows)
	}
	if b.s.onResult != nil {
		b.s.onResult(Result{Name: b.s.name, State: p.state, Outcome: o, Duration: d, Slow: slow, Discarded: !counted})
	}
}

// apply feeds an outcome to the state machine and reports whether it
// counted (false: the permit's generation is over, the result is stale).
func (b *Breaker) apply(p Permit, o Outcome, slow bool, now time.Duration) bool {
	w := b.word.Load()
	if genOf(w) != p.gen {
		return false
	}
	if p.state == HalfOpen {
		return b.recordProbe(p, o, slow)
	}
	if modeOf(w) == ForcedClosed || o == Ignored {
		return true
	}
	// The period of generation g is stored before the word announces g,
	// so having seen g in the word, we load g's period or a later one.
	per := b.period.Load()
	if per.gen != p.gen {
		return false
	}
	if r := per.record(&b.s, o == Failure, slow, now); r != 0 {
		b.trip(p.gen, r)
	}
	return true
}

// record counts a success or failure in a closed period and returns the
// reason to open the breaker, or 0.
func (per *period) record(s *settings, failed, slow bool, now time.Duration) Reason {
	var r Reason
	if s.failureThreshold > 0 {
		if failed {
			if per.consecutive.Add(1) >= s.failureThreshold {
				r = ReasonConsecutiveFailures
			}
		} else if per.consecutive.Load() != 0 {
			// Only write when needed: successes in a healthy period
			// leave the cache line shared. Failures counted between
			// the load and the store end with the run: they count as
			// recorded before this success, an order concurrent
			// records allow.
			per.consecutive.Store(0)
		}
	}
	if per.win != nil {
		calls, failures, slows := per.win.add(failed, slow, now)
		if r == 0 && calls >= s.minCalls {
			switch {
			case exceeds(failures, calls, s.failureRate):
				r = ReasonFailureRate
			case exceeds(slows, calls, s.slowRate):
				r = ReasonSlowCallRate
			}
		}
	}
	return r
}

// trip opens the breaker for reason if it is still closed in generation
// gen; concurrent trips of the same generation open it once.
func (b *Breaker) trip(gen uint64, r Reason) {
	b.mu.Lock()
	if w := b.word.Load(); genOf(w) == gen && stateOf(w) == Closed && modeOf(w) == Auto {
		b.openLocked(w, r)
	}
	b.unlockAndDeliver()
}

// recordProbe records a half-open probe's outcome; it reports false when the
// probe's generation is over or its slot was reclaimed.
func (b *Breaker) recordProbe(p Permit, o Outcome, slow bool) bool {
	b.mu.Lock()
	w := b.word.Load()
	if genOf(w) != p.gen || !b.releaseProbeLocked(p.start) {
		b.mu.Unlock()
		return false
	}
	switch {
	case o == Ignored:
	case o == Failure || (slow && b.s.slowRate > 0):
		b.openLocked(w, ReasonProbeFailed)
	default:
		b.probeSuccesses++
		if b.probeSuccesses >= b.s.successThreshold {
			b.opens = 0
			b.setLocked(w, Closed, Auto, ReasonProbesSucceeded, 0, true)
		}
	}
	b.unlockAndDeliver()
	return true
}

// releaseProbeLocked frees the slot of the probe that started at start and
// reports whether the probe still held one.
func (b *Breaker) releaseProbeLocked(start time.Duration) bool {
	i := slices.Index(b.probeStarts, start)
	if i < 0 {
		return false
	}
	b.probeStarts = slices.Delete(b.probeStarts, i, i+1)
	b.probes.Add(-1)
	if i == 0 {
		b.setProbeExpiryLocked()
	}
	return true
}

// reclaimProbesLocked frees the slots of the probes that have held theirs
// for ProbeTimeout or longer at now. Their outcomes will be discarded.
func (b *Breaker) reclaimProbesLocked(now time.Duration) {
	n := 0
	for n < len(b.probeStarts) && addSat(b.probeStarts[n], b.s.probeTimeout) <= now {
		n++ // probeStarts is in admission order, so oldest first
	}
	if n == 0 {
		return
	}
	b.probeStarts = slices.Delete(b.probeStarts, 0, n)
	b.probes.Add(-int64(n))
	b.setProbeExpiryLocked()
}

// setProbeExpiryLocked publishes when the oldest probe in flight loses its
// slot.
func (b *Breaker) setProbeExpiryLocked() {
	if len(b.probeStarts) == 0 {
		b.probeExpiry.Store(math.MaxInt64)
		return
	}
	b.probeExpiry.Store(int64(addSat(b.probeStarts[0], b.s.probeTimeout)))
}

// openLocked opens the breaker in auto mode for the open duration of the
// next consecutive open.
func (b *Breaker) openLocked(w uint64, r Reason) {
	b.opens++
	d := b.s.timeout
	if f := b.s.openDuration; f != nil {
		if x := f(b.opens); x > 0 {
			d = x
		}
	}
	// openUntil is stored before the word says open, so a lock-free
	// Allow that sees open also sees this deadline.
	b.openUntil.Store(int64(addSat(b.now(), d)))
	b.setLocked(w, Open, Auto, r, d, true)
}

// halfOpenLocked half-opens an auto-open breaker whose open duration ran
// out, and returns the current word.
func (b *Breaker) halfOpenLocked(w uint64) uint64 {
	if stateOf(w) == Open && modeOf(w) == Auto && b.now() >= time.Duration(b.openUntil.Load()) {
		b.setLocked(w, HalfOpen, Auto, ReasonTimeoutElapsed, 0, true)
	}
	return b.word.Load()
}

// setLocked moves the breaker from word w to state s in mode m, starting a
// new generation, and queues a StateChange when notify is set.
func (b *Breaker) setLocked(w uint64, s State, m Mode, r Reason, openFor time.Duration, notify bool) {
	gen := genOf(w) + 1
	switch s {
	case Closed:
		// Published before the word: see apply.
		b.period.Store(b.newPeriod(gen))
	}
	// Probes belong to one half-open generation: a transition ends them
	// (their outcomes are discarded by the generation check).
	b.probes.Store(0)
	b.probeStarts = b.probeStarts[:0]
	b.probeExpiry.Store(math.MaxInt64)
	b.probeSuccesses = 0
	b.word.Store(pack(s, m, gen))
	b.transitions++
	if notify && (b.s.onStateChange != nil || b.coords.Load() != nil) {
		b.events = append(b.events, StateChange{Name: b.s.name, From: stateOf(w), To: s, Mode: m, Reason: r, OpenFor: openFor})
	}
}

// unlockAndDeliver releases mu and delivers the queued state changes.
func (b *Breaker) unlockAndDeliver() {
	pending := b.eventHead < len(b.events) && !b.delivering
	b.mu.Unlock()
	if pending {
		b.deliver()
	}
}

// deliver calls OnStateChange (the Config's, then each coordinator's) for
// every queued event, in order, without
// holding mu. One goroutine delivers at a time: a goroutine that queues an
// event while another delivers leaves it to that one, which picks it up
// before it stops. This keeps the order of transitions and lets a listener
// call back into the breaker (its own transitions are queued and delivered
// after it returns).
func (b *Breaker) deliver() {
	b.mu.Lock()
	if b.delivering || b.eventHead == len(b.events) {
		b.mu.Unlock()
		return
	}
	b.delivering = true
	finished := false
	defer func() {
		if !finished { // the listener panicked: let the next caller deliver the rest
			b.mu.Lock()
			b.delivering = false
			b.mu.Unlock()
		}
	}()
	for b.eventHead < len(b.events) {
		ev := b.events[b.eventHead]
		b.eventHead++
		b.mu.Unlock()
		if b.s.onStateChange != nil {
			b.s.onStateChange(ev)
		}
		if cs := b.coords.Load(); cs != nil {
			for _, c := range *cs {
				if c.OnStateChange != nil {
					c.OnStateChange(ev)
				}
			}
		}
		b.mu.Lock()
	}
	b.events, b.eventHead = b.events[:0], 0
	b.delivering = false
	finished = true
	b.mu.Unlock()
}

// State returns the current state. An open breaker whose open duration ran
// out half-opens on the first call that looks, State included, so State
// reports [HalfOpen] from then on (unless a [Coordinator] keeps it open).
func (b *Breaker) State() State {
	w := b.word.Load()
	if stateOf(w) == Open && modeOf(w) == Auto && b.now() >= time.Duration(b.openUntil.Load()) && b.halfOpenAllowed() {
		b.mu.Lock()
		w = b.halfOpenLocked(b.word.Load())
		b.unlockAndDeliver()
	}
	return stateOf(w)
}

// Mode returns whether the breaker runs by itself ([Auto]) or was forced
// open or closed by hand.
func (b *Breaker) Mode() Mode { return modeOf(b.word.Load()) }

// ForceOpen isolates the breaker: it opens (if it was not) and rejects every
// call, with an *[OpenError] whose Forced method reports true, until
// [Breaker.ForceClosed] or [Breaker.Reset]. Outcomes of calls permitted
// before are discarded. Calling it again has no effect.
func (b *Breaker) ForceOpen() {
	b.mu.Lock()
	if w := b.word.Load(); modeOf(w) != ForcedOpen {
		b.opens = 0
		b.setLocked(w, Open, ForcedOpen, ReasonForcedOpen, 0, true)
	}
	b.unlockAndDeliver()
}

// ForceClosed disables the breaker: it closes (if it was not) and permits
// every call, never opening, until [Breaker.ForceOpen] or [Breaker.Reset].
// Outcomes still reach the metrics and Config.OnResult but no threshold.
// Calling it again has no effect.
func (b *Breaker) ForceClosed() {
	b.mu.Lock()
	if w := b.word.Load(); modeOf(w) != ForcedClosed {
		b.opens = 0
		b.setLocked(w, Closed, ForcedClosed, ReasonForcedClosed, 0, true)
	}
	b.unlockAndDeliver()
}

// Reset returns the breaker to closed in [Auto] mode with empty windows and
// counts, as New left it (the cumulative metrics keep counting). Outcomes
// of calls permitted before are discarded. OnStateChange hears of it only
// when the state or the mode changed.
func (b *Breaker) Reset() {
	b.mu.Lock()
	w := b.word.Load()
	b.opens = 0
	b.setLocked(w, Closed, Auto, ReasonReset, 0, stateOf(w) != Closed || modeOf(w) != Auto)
	b.unlockAndDeliver()
}

// Trip opens the breaker now, in [Auto] mode, as if its own threshold had
// been reached: it stays open for the duration Config.OpenDurationFunc (or
// Config.Timeout) gives, outcomes of calls permitted before are discarded,
// and OnStateChange hears of it with [ReasonTripped]. It does nothing when
// the breaker is already open or was forced open or closed by hand. Use it
// when something outside the breaker knows the service is failing, for
// example the other processes of a fleet.
func (b *Breaker) Trip() {
	b.mu.Lock()
	if w := b.word.Load(); modeOf(w) == Auto && stateOf(w) != Open {
		b.openLocked(w, ReasonTripped)
	}
	b.unlockAndDeliver()
}

// Coordinate attaches c to the breaker and returns a function that detaches
// it again (calling it more than once does nothing). Several coordinators
// may be attached at once: each hears every state change, and an open
// breaker half-opens only when every AllowHalfOpen allows it. Attaching
// does not change the breaker's state. It is safe for concurrent use.
func (b *Breaker) Coordinate(c Coordinator) (detach func()) {
	e := &c
	b.mu.Lock()
	var list []*Coordinator
	if old := b.coords.Load(); old != nil {
		list = slices.Clone(*old)
	}
	list = append(list, e)
	b.coords.Store(&list)
	b.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			old := b.coords.Load()
			if old == nil {
				return
			}
			list := slices.DeleteFunc(slices.Clone(*old), func(x *Coordinator) bool { return x == e })
			if len(list) == 0 {
				b.coords.Store(nil)
				return
			}
			b.coords.Store(&list)
		})
	}
}

// halfOpenAllowed reports whether every attached coordinator lets an
// auto-open breaker whose open duration ran out half-open. It runs without
// the lock.
func (b *Breaker) halfOpenAllowed() bool {
	cs := b.coords.Load()
	if cs == nil {
		return true
	}
	for _, c := range *cs {
		if c.AllowHalfOpen != nil && !c.AllowHalfOpen() {
			return false
		}
	}
	return true
}

func (b *Breaker) openRemaining() time.Duration {
	w := b.word.Load()
	if stateOf(w) != Open || modeOf(w) != Auto {
		return 0
	}
	return max(time.Duration(b.openUntil.Load())-b.now(), 0)
}

// Metrics is a snapshot of a breaker's counts, from [Breaker.Metrics]. It
// is plain data; the zero value is the snapshot of an unused breaker.
type Metrics struct {
	// Name is the breaker's Config.Name.
	Name string
	// State and Mode are the state and mode at the snapshot.
	State State
	Mode  Mode

	// Calls is the number of outcomes recorded since New, discarded ones
	// excluded: Successes + Failures + Ignored. The cumulative counts are
	// never reset, Reset included.
	Calls     uint64
	Successes uint64
	Failures  uint64
	Ignored   uint64
	// SlowCalls counts the recorded calls that were slow (they are also
	// counted as successes or failures).
	SlowCalls uint64
	// Rejections counts the calls the breaker refused.
	Rejections uint64
	// Discarded counts outcomes recorded after the breaker changed state
	// (stale generation).
	Discarded uint64
	// Transitions counts state and mode changes, plus resets.
	Transitions uint64

	// ConsecutiveFailures is the current run of failures of the latest
	// closed period (the one that opened the breaker, while it is open).
	ConsecutiveFailures int64
	// ConsecutiveOpens is how many times the breaker opened since it last
	// closed; it drives Config.OpenDurationFunc.
	ConsecutiveOpens int
	// HalfOpenProbes is the number of probes in flight.
	HalfOpenProbes int

	// WindowCalls, WindowFailures and WindowSlowCalls are the counts in the
	// sliding window of the latest closed period; zero when no rate
	// threshold is set.
	WindowCalls, WindowFailures, WindowSlowCalls int64
	// FailureRate and SlowCallRate are the rates in the window, in
	// percent; zero when the window is empty.
	FailureRate, SlowCallRate float64

	// OpenRemaining is how long an auto-open breaker stays open.
	OpenRemaining time.Duration
}

// Metrics returns a snapshot of the breaker's counts. It is safe for
// concurrent use; the counts are read one by one, so under concurrent calls
// they may be a few calls apart from each other. Like State, it half-opens a
// breaker whose open duration ran out.
func (b *Breaker) Metrics() Metrics {
	b.State()
	return b.snapshot()
}

// Peek returns the snapshot [Breaker.Metrics] returns, without its side
// effect: an open breaker whose open duration ran out stays open (with
// OpenRemaining 0) until a call or State looks. A coordinator that reads
// the breaker on its own schedule uses Peek, so that its reading never
// half-opens the breaker without a call. It is safe for concurrent use.
func (b *Breaker) Peek() Metrics { return b.snapshot() }

func (b *Breaker) snapshot() Metrics {
	m := Metrics{Name: b.s.name}
	b.mu.Lock()
	w := b.word.Load()
	m.State, m.Mode = stateOf(w), modeOf(w)
	m.Transitions = b.transitions
	m.ConsecutiveOpens = b.opens
	if m.State == HalfOpen {
		m.HalfOpenProbes = int(b.probes.Load())
	}
	b.mu.Unlock()
	var sum [numCounters]uint64
	for c := range numCounters {
		sum[c] = b.base[c].Load()
	}
	if first := b.cells.Load(); first != nil {
		ss := b.stripes(first)
		for i := range ss {
			st := &ss[i]
			for c := range numCounters {
				sum[c] += st.c[c].Load()
			}
		}
	}
	m.Successes, m.Failures, m.Ignored = sum[cSuccesses], sum[cFailures], sum[cIgnored]
	m.SlowCalls, m.Rejections, m.Discarded = sum[cSlows], sum[cRejected], sum[cDiscarded]
	m.Calls = m.Successes + m.Failures + m.Ignored
	per := b.period.Load()
	m.ConsecutiveFailures = per.consecutive.Load()
	if per.win != nil {
		var now time.Duration
		if b.needNow {
			now = b.now()
		}
		m.WindowCalls, m.WindowFailures, m.WindowSlowCalls = per.win.counts(now)
		if m.WindowCalls > 0 {
			m.FailureRate = float64(m.WindowFailures) * 100 / float64(m.WindowCalls)
			m.SlowCallRate = float64(m.WindowSlowCalls) * 100 / float64(m.WindowCalls)
		}
	}
	m.OpenRemaining = b.openRemaining()
	return m
}

// addSat returns t+d, saturating at the largest Duration instead of
// overflowing; d must not be negative.
func addSat(t, d time.Duration) time.Duration {
	if t > math.MaxInt64-d {
		return math.MaxInt64
	}
	return t + d
}

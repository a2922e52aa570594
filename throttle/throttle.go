package throttle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// Defaults used for zero fields of [Config]; the package documentation
// says why each was chosen.
const (
	// DefaultK is the multiplier of Config.K: the throttle lets through
	// up to twice as many requests as the backend accepts.
	DefaultK = 2.0
	// DefaultWindow is the history Config.Window keeps.
	DefaultWindow = 10 * time.Second
	// DefaultBuckets is the number of buckets Config.Buckets splits the
	// window into: 250ms each with DefaultWindow.
	DefaultBuckets = 40
	// DefaultMinRequests is the number of requests the window must hold
	// before the throttle rejects anything.
	DefaultMinRequests = 20
	// DefaultPassInterval is the longest time Config.PassInterval lets
	// the throttle go without letting a request through.
	DefaultPassInterval = time.Second
	// MaxBuckets is the largest Config.Buckets.
	MaxBuckets = 1 << 12
	// MaxK is the largest Config.K; a throttle with a larger K would
	// never reject anything.
	MaxK = 1e6
)

// Config configures a [Throttle]. It is plain data: [New] copies it, so
// changing a Config afterwards does not affect the throttle. Every field
// has a default for its zero value, so Config{} is a working
// configuration: K 2, a 10s window in 40 buckets, at least 20 requests
// before any rejection, and one request a second let through whatever the
// odds.
type Config struct {
	// K is how many times the requests the backend accepted the throttle
	// lets through before it starts rejecting: it rejects with
	// probability max(0, (requests - K×accepts) / (requests + 1)).
	// Lowering K makes the throttle reject sooner; raising it lets more
	// requests reach an overloaded backend. Zero means [DefaultK] (2).
	// Values below 1, above [MaxK], NaN and infinities are invalid: with
	// K below 1 it would reject requests of a backend that accepts all.
	K float64

	// Window is the history the counts cover: requests and accepts older
	// than Window, to within one bucket, no longer count. Zero means
	// [DefaultWindow] (10s). Negative values are invalid, and so is a
	// window that leaves a bucket less than 1ms.
	Window time.Duration

	// Buckets is the number of buckets Window is split into; the window
	// slides one bucket at a time. Zero means [DefaultBuckets] (40).
	// Negative values and values above [MaxBuckets] are invalid.
	Buckets int

	// MinRequests is the number of requests the window must hold before
	// the throttle rejects any: a quiet client is never throttled by a
	// handful of failures. Zero means [DefaultMinRequests] (20). Negative
	// values are invalid.
	MinRequests int

	// PassInterval is how often the throttle lets a request through
	// against the odds: a request that the draw would reject passes when
	// no other passed that way for PassInterval, so that at least one
	// request per PassInterval reaches the backend and a recovered backend
	// is noticed even when the rejection probability is close to 1. Zero means
	// [DefaultPassInterval] (1s). Negative values are invalid.
	PassInterval time.Duration

	// OnReject, when not nil, is called for every request the throttle
	// rejects, with the rejection probability it drew against. It runs on
	// the goroutine that called Allow, holding no lock; it may be called
	// concurrently and must be quick.
	OnReject func(probability float64)
}

// Validate reports every invalid field of c, each as a
// *resilience.FieldError, joined with errors.Join; nil when c is valid.
// [New] treats an invalid field as zero, that is, as its default.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, value any, why string) {
		errs = append(errs, &resilience.FieldError{Field: field, Value: value, Reason: why})
	}
	if !validK(c.K) {
		bad("K", c.K, fmt.Sprintf("must be a number from 1 to %g, or 0 for %g", float64(MaxK), DefaultK))
	}
	bucketsOK := c.Buckets >= 0 && c.Buckets <= MaxBuckets
	if !bucketsOK {
		bad("Buckets", c.Buckets, fmt.Sprintf("must be from 1 to %d, or 0 for %d", MaxBuckets, DefaultBuckets))
	}
	switch {
	case c.Window < 0:
		bad("Window", c.Window, "must not be negative")
	case bucketsOK:
		if w, n := orDuration(c.Window, DefaultWindow), orInt(c.Buckets, DefaultBuckets); w/time.Duration(n) < time.Millisecond {
			bad("Window", c.Window, fmt.Sprintf("must leave each of the %d buckets at least 1ms", n))
		}
	}
	if c.MinRequests < 0 {
		bad("MinRequests", c.MinRequests, "must not be negative")
	}
	if c.PassInterval < 0 {
		bad("PassInterval", c.PassInterval, "must not be negative")
	}
	return errors.Join(errs...)
}

func validK(k float64) bool { return k == 0 || (k >= 1 && k <= MaxK) }

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func orInt(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

// Throttle is a client-side adaptive throttle, after "Handling Overload"
// in Google's Site Reliability Engineering book: the client counts the
// requests it attempts and those the backend accepts, and when the backend
// accepts too few it rejects requests itself, before they are sent, with
// probability
//
//	max(0, (requests - K×accepts) / (requests + 1))
//
// over the last Config.Window. Requests it rejects count as requests, so
// the more the backend refuses, the more the client drops, and the load
// that reaches the backend settles near K times what it accepts.
//
// Create one with [New]; the zero value is not usable. A Throttle is safe
// for concurrent use by multiple goroutines. Most callers use
// [Throttle.Execute]; interceptors and streams use the two-step
// [Throttle.Allow] and the returned [Permit].
//
// # Concurrency design
//
// Each bucket of the window is an object holding its epoch (the bucket's
// number since the throttle started) and one atomic word that packs its
// requests (high 32 bits) and accepts (low 32 bits), so that recording an
// outcome is one atomic add and reading a bucket one atomic load. A bucket
// whose epoch has passed is replaced by a new object, never reset, so a
// late writer can only touch a dead object. A bucket saturates at
// [MaxBucketCount] requests: further outcomes in it are not counted, so
// the packed counts never overflow into each other.
//
// The sums of the completed buckets are cached, recomputed once per bucket
// duration by one call, elected with a compare-and-swap among those that
// see the epoch change; the others, meanwhile, add the bucket just
// completed to the previous sums. The cache only moves forward: a call
// that read the clock before a bucket boundary and reaches the cache after
// it sums without storing. An outcome recorded after its bucket completed
// (a request that outlived its bucket) is added to the cached
// sums as well, so it counts at once. Allow reads that cache and the
// current bucket, whatever the number of buckets. No lock is taken
// anywhere.
type Throttle struct {
	k            float64
	minRequests  float64
	bucketDur    int64 // nanoseconds
	passInterval int64 // nanoseconds
	onReject     func(float64)
	buckets      []atomic.Pointer[bucket]
	done         atomic.Pointer[sums] // completed buckets of the window
	summing      atomic.Bool          // a call is recomputing done
	lastPass     atomic.Int64         // clock reading of the last request let through against the odds
	rejected     atomic.Uint64
	// now reads the clock, in nanoseconds since the throttle started;
	// rnd draws in [0, 1). Tests replace both.
	now func() int64
	rnd func() float64
}

// bucket is one slice of the window. It is replaced, never reset.
type bucket struct {
	epoch int64
	// counts packs requests (high 32 bits) and accepts (low 32 bits).
	counts atomic.Uint64
}

// sums are the counts of the buckets completed before epoch that are
// still in the window. Outcomes recorded late into those buckets are
// added to them.
type sums struct {
	epoch             int64
	requests, accepts atomic.Uint64
}

// MaxBucketCount is the most requests one bucket counts; outcomes
// recorded into a full bucket are dropped. It is far above any real rate
// (2^31 requests in one bucket), and keeps the two counts packed in one
// word from overflowing into each other.
const MaxBucketCount = 1 << 31

// Packed increments of bucket.counts.
const (
	oneRequest = 1 << 32
	oneAccept  = oneRequest | 1
)

// New returns a throttle configured by cfg, with empty counts. It never
// fails: a field that Config.Validate rejects is treated as if it were
// zero, that is, as its default.
func New(cfg Config) *Throttle {
	start := time.Now()
	return newThrottle(cfg, func() int64 { return int64(time.Since(start)) })
}

func newThrottle(cfg Config, now func() int64) *Throttle {
	fe := resilience.FieldErrors(cfg.Validate())
	for _, e := range fe {
		switch e.Field {
		case "K":
			cfg.K = 0
		case "Window":
			cfg.Window = 0
		case "Buckets":
			cfg.Buckets = 0
		case "MinRequests":
			cfg.MinRequests = 0
		case "PassInterval":
			cfg.PassInterval = 0
		}
	}
	if cfg.Window != 0 && cfg.Buckets == 0 && cfg.Window/DefaultBuckets < time.Millisecond {
		cfg.Window = 0
	}
	n := orInt(cfg.Buckets, DefaultBuckets)
	t := &Throttle{
		k:            cfg.K,
		minRequests:  float64(orInt(cfg.MinRequests, DefaultMinRequests)),
		bucketDur:    int64(orDuration(cfg.Window, DefaultWindow) / time.Duration(n)),
		passInterval: int64(orDuration(cfg.PassInterval, DefaultPassInterval)),
		onReject:     cfg.OnReject,
		buckets:      make([]atomic.Pointer[bucket], n),
		now:          now,
		rnd:          rand.Float64,
	}
	if t.k == 0 {
		t.k = DefaultK
	}
	t.lastPass.Store(math.MinInt64)
	return t
}

// epoch returns the number of the bucket that the clock reading now falls
// in; negative readings (a clock that went back) floor correctly.
func (t *Throttle) epoch(now int64) int64 {
	e := now / t.bucketDur
	if now%t.bucketDur < 0 {
		e--
	}
	return e
}

// slot returns the ring slot of epoch e.
func (t *Throttle) slot(e int64) *atomic.Pointer[bucket] {
	i := e % int64(len(t.buckets))
	if i < 0 {
		i += int64(len(t.buckets))
	}
	return &t.buckets[i]
}

// add records one packed increment in the bucket of epoch e. An outcome
// recorded more than a window late, whose bucket was replaced by a newer
// one, counts in that newer one rather than replace it; a bucket newer
// than the last epoch the throttle summed is left by a clock that went
// back, and is replaced. A full bucket counts nothing more.
//
// It reports whether the increment was counted in the bucket of epoch e.
func (t *Throttle) add(e int64, inc uint64) bool {
	s := t.slot(e)
	for {
		b := s.Load()
		if b != nil && (b.epoch == e || b.epoch > e && !t.future(b.epoch)) {
			// Load, then add: concurrent adders overshoot the bound by at
			// most their number, far below the 2^32 the field holds.
			if b.counts.Load()>>32 >= MaxBucketCount {
				return false
			}
			b.counts.Add(inc)
			return b.epoch == e
		}
		nb := &bucket{epoch: e}
		nb.counts.Store(inc)
		if s.CompareAndSwap(b, nb) {
			return true
		}
		// Another call replaced the bucket first: add to whatever it put
		// there, or replace it again if its epoch is not ours.
	}
}

// future reports whether epoch e is after the last epoch the throttle
// summed. That epoch only moves forward, but for a clock that goes back
// by a window or more.
func (t *Throttle) future(e int64) bool {
	d := t.done.Load()
	return d != nil && e > d.epoch
}

// counts returns the requests and accepts in the window at epoch e.
func (t *Throttle) counts(e int64) (requests, accepts uint64) {
	d := t.done.Load()
	n := int64(len(t.buckets))
	switch {
	case d != nil && d.epoch == e:
		// Accepts first: a late Done adds its request first, so the
		// accepts read never outnumber the requests.
		accepts = d.accepts.Load()
		requests = d.requests.Load()
	case d != nil && e < d.epoch && d.epoch-e < n:
		// The clock was read before the cache moved on: sum for e without
		// moving the cache back.
		requests, accepts = t.sum(e)
	case t.summing.CompareAndSwap(false, true):
		requests, accepts = t.sum(e)
		nd := &sums{epoch: e}
		nd.requests.Store(requests)
		nd.accepts.Store(accepts)
		t.store(nd)
		t.summing.Store(false)
	case d != nil && e == d.epoch+1:
		// Another call is summing for e: the previous sums and the bucket
		// just completed stand in meanwhile (they still hold the bucket
		// that is leaving the window).
		accepts = d.accepts.Load()
		requests = d.requests.Load()
		r, a := t.bucketCounts(d.epoch)
		requests, accepts = requests+r, accepts+a
	default:
		requests, accepts = t.sum(e)
	}
	r, a := t.bucketCounts(e)
	return requests + r, accepts + a
}

// bucketCounts returns the counts of the bucket of epoch e, zero when its
// slot holds another epoch.
func (t *Throttle) bucketCounts(e int64) (requests, accepts uint64) {
	if b := t.slot(e).Load(); b != nil && b.epoch == e {
		c := b.counts.Load()
		return c >> 32, c & (1<<32 - 1)
	}
	return 0, 0
}

// store caches nd unless the cache holds a later epoch within a window of
// nd's: the cache moves back only for a clock that went back by a window
// or more.
func (t *Throttle) store(nd *sums) {
	n := int64(len(t.buckets))
	for {
		d := t.done.Load()
		if d != nil && d.epoch >= nd.epoch && d.epoch-nd.epoch < n {
			return
		}
		if t.done.CompareAndSwap(d, nd) {
			return
		}
	}
}

// sum returns the counts of the buckets completed before epoch e that are
// still in the window. Buckets from the future (after a clock that went
// back) do not count.
func (t *Throttle) sum(e int64) (requests, accepts uint64) {
	n := int64(len(t.buckets))
	for i := range t.buckets {
		b := t.buckets[i].Load()
		if b == nil || b.epoch >= e || b.epoch <= e-n {
			continue
		}
		c := b.counts.Load()
		requests += c >> 32
		accepts += c & (1<<32 - 1)
	}
	return requests, accepts
}

// probability returns the rejection probability for the given counts and
// settings: max(0, (requests - k×accepts) / (requests + 1)), or 0 when
// requests is below minRequests. It is always in [0, 1).
func probability(requests, accepts uint64, k, minRequests float64) float64 {
	r := float64(requests)
	if r < minRequests || r == 0 {
		return 0
	}
	p := (r - k*float64(accepts)) / (r + 1)
	if !(p > 0) { // negative, or NaN from a broken k
		return 0
	}
	return min(p, 1)
}

// RejectedError is the error [Throttle.Allow] and [Throttle.Execute]
// return for a request the throttle rejected. It matches
// [resilience.ErrThrottled] with errors.Is.
type RejectedError struct {
	// Probability is the rejection probability the request was drawn
	// against, in (0, 1).
	Probability float64
}

// Error returns the text of resilience.ErrThrottled and the probability.
func (e *RejectedError) Error() string {
	return fmt.Sprintf("%v (probability %.3f)", resilience.ErrThrottled, e.Probability)
}

// Is reports whether target is resilience.ErrThrottled.
func (e *RejectedError) Is(target error) bool { return target == resilience.ErrThrottled }

// Allow asks for permission to send one request and never blocks. It draws
// against the rejection probability of the window: when the draw rejects,
// and a request passed within Config.PassInterval, it counts the request
// as a rejected one and returns a *[RejectedError], which matches
// [resilience.ErrThrottled]; otherwise it returns a [Permit] on which the
// caller must record the request's outcome exactly once. Allow takes no
// lock and reads the clock once; a request it lets through allocates
// nothing, except the once-per-bucket replacement of a bucket and of the
// cached sums, and a rejection allocates its error.
func (t *Throttle) Allow() (Permit, error) {
	now := t.now()
	e := t.epoch(now)
	requests, accepts := t.counts(e)
	if p := probability(requests, accepts, t.k, t.minRequests); p > 0 && t.rnd() < p && !t.mustPass(now) {
		t.add(e, oneRequest)
		t.rejected.Add(1)
		if f := t.onReject; f != nil {
			f(p)
		}
		return Permit{}, &RejectedError{Probability: p}
	}
	return Permit{t: t, epoch: e}, nil
}

// mustPass reports whether the throttle let no request through against
// the odds for the pass interval, and if so claims that pass for the
// caller. Only rejections read or write lastPass, so requests that pass
// never write to it.
func (t *Throttle) mustPass(now int64) bool {
	last := t.lastPass.Load()
	if last != math.MinInt64 && now-last < t.passInterval && now >= last {
		return false
	}
	return t.lastPass.CompareAndSwap(last, now)
}

// Outcome is what a permitted request amounted to. The zero value is
// Accepted.
type Outcome uint8

const (
	// Accepted: the backend accepted the request; it counts as a request
	// and an accept.
	Accepted Outcome = iota
	// Rejected: the backend refused the request (it failed, was
	// overloaded, timed out); it counts as a request only.
	Rejected
	// Ignored: the outcome says nothing about the backend (the caller gave
	// up, or something on the client stopped the request before it was
	// sent); it does not count at all.
	Ignored
)

var outcomeNames = [...]string{"accepted", "rejected", "ignored"}

// String returns "accepted", "rejected" or "ignored".
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Permit is the permission [Throttle.Allow] grants to send one request. It
// is a small value: copy it freely, but record its outcome once, with
// [Permit.Done] or [Permit.Record]; recording it twice counts the request
// twice. The zero Permit belongs to no throttle: its methods do nothing.
// Its methods are safe for concurrent use.
type Permit struct {
	t     *Throttle
	epoch int64 // the bucket of the moment Allow granted it
}

// Done records the request's outcome. It counts in the bucket of the
// moment Allow granted the permit, so that it leaves the window with the
// requests of that moment, and reads no clock; it shows in the throttle's
// counts at once, except when it races with the once-per-bucket
// recomputation of the window's sums, and then shows a bucket later. An outcome other than the
// three constants counts as Rejected. It takes no lock and allocates
// nothing (but once per bucket duration).
func (p Permit) Done(o Outcome) {
	t := p.t
	if t == nil || o == Ignored {
		return
	}
	inc := uint64(oneRequest)
	if o == Accepted {
		inc = oneAccept
	}
	// Load the cached sums before counting: sums computed after the
	// count may hold it already, those loaded before cannot.
	d := t.done.Load()
	if !t.add(p.epoch, inc) || d == nil || p.epoch >= d.epoch || p.epoch <= d.epoch-int64(len(t.buckets)) {
		return
	}
	// The permit's bucket is completed and still in the window: the
	// cached sums count it too, so that the outcome shows at once.
	d.requests.Add(1)
	if o == Accepted {
		d.accepts.Add(1)
	}
}

// Record records nil as Accepted, an error matching context.Canceled as
// Ignored, and any other error as Rejected.
func (p Permit) Record(err error) { p.Done(classify(err)) }

func classify(err error) Outcome {
	switch {
	case err == nil:
		return Accepted
	case errors.Is(err, context.Canceled):
		return Ignored
	}
	return Rejected
}

// Execute runs fn if the throttle lets the request through and records the
// outcome as [Permit.Record] does, except that any error fn returns once
// ctx is done with context.Canceled is Ignored. It returns fn's error
// unchanged, or a *[RejectedError] matching [resilience.ErrThrottled]
// without calling fn. When ctx is
// already done it returns ctx.Err() without calling fn or counting
// anything. A panic in fn is recorded as Rejected and then propagates.
func (t *Throttle) Execute(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := t.Allow()
	if err != nil {
		return err
	}
	recorded := false
	defer func() {
		if !recorded {
			p.Done(Rejected)
		}
	}()
	err = fn(ctx)
	recorded = true
	o := classify(err)
	if o == Rejected && errors.Is(ctx.Err(), context.Canceled) {
		o = Ignored
	}
	p.Done(o)
	return err
}

// Probability returns the rejection probability in force now, in [0, 1):
// the chance that Allow rejects a request, PassInterval aside.
func (t *Throttle) Probability() float64 {
	r, a := t.counts(t.epoch(t.now()))
	return probability(r, a, t.k, t.minRequests)
}

// Idle reports whether the throttle rejects nothing now, so that
// replacing it with a new one would change no decision but forget its
// counts. Caches of throttles (such as [Registry]) evict only idle ones.
func (t *Throttle) Idle() bool { return t.Probability() == 0 }

// Metrics is a snapshot of a throttle's counts. It is plain data.
type Metrics struct {
	// Requests and Accepts are the window's counts: the requests
	// attempted (rejected ones included) and those the backend accepted.
	Requests, Accepts uint64
	// Probability is the rejection probability they give, in [0, 1).
	Probability float64
	// Rejected counts every request the throttle rejected since it was
	// created.
	Rejected uint64
	// K, Window and MinRequests are the settings in force, defaults
	// filled in.
	K           float64
	Window      time.Duration
	MinRequests int
}

// Metrics returns a snapshot of the throttle's counts. It is safe for
// concurrent use; under concurrent requests the counts may be a few
// requests apart from each other.
func (t *Throttle) Metrics() Metrics {
	r, a := t.counts(t.epoch(t.now()))
	return Metrics{
		Requests:    r,
		Accepts:     a,
		Probability: probability(r, a, t.k, t.minRequests),
		Rejected:    t.rejected.Load(),
		K:           t.k,
		Window:      time.Duration(t.bucketDur * int64(len(t.buckets))),
		MinRequests: int(t.minRequests),
	}
}

package retry

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// Outcome is how an attempt ended, as a [Budget] is told.
type Outcome int

const (
	// Success means the attempt returned nil.
	Success Outcome = iota
	// RetryableFailure means the attempt failed with an error the policy
	// retries, whether or not a retry follows (attempts, time or budget may
	// have run out), or with a Pushback that vetoed retrying. gRPC's
	// retryThrottling counts exactly these as failures.
	RetryableFailure
	// FinalFailure means the attempt failed with an error the policy does
	// not retry: a Permanent error, an abort-if or retry-if verdict, or any
	// error once the caller's context is done.
	FinalFailure
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case RetryableFailure:
		return "retryable failure"
	case FinalFailure:
		return "final failure"
	}
	return "unknown outcome"
}

// Budget limits retries across calls, and across every [Policy] that shares
// it ([Config].Budget), so that retries cannot multiply the load on a
// failing server. The package's budgets are [RatioBudget] (Finagle/Linkerd)
// and [TokenBucket] (gRPC retryThrottling).
//
// The contract between a Policy and its Budget, which every implementation
// may rely on: AllowRetry is asked exactly once for each extra attempt the
// caller is about to make, after Record of the attempt that failed, and
// true means that attempt will run. So a Policy asks only when nothing else
// stops the retry (conditions, a Pushback veto, the attempt limit, the
// deadline and the maximum duration all come first), never for a retry it
// then drops; only the caller's context ending during the wait before the
// attempt can still cancel a granted retry. Each implementation documents
// where it charges a retry: in AllowRetry, or in Record of the failure that
// asks for it, but never twice.
//
// Implementations must be safe for concurrent use; they are on the hot path
// (Record runs after every attempt), so they should not block, and should
// allocate rarely if at all.
type Budget interface {
	// Record is told how each attempt of each call ended; attempt counts
	// from 1.
	Record(attempt int, o Outcome)
	// AllowRetry reports whether the extra attempt the caller is about to
	// make may run; true commits the caller to it.
	AllowRetry() bool
}

// TimedBudget is a [Budget] that can be told when an attempt ended, so that
// a caller that has already read the clock spares the budget another
// reading. [Call.NextAt] uses RecordAt when the policy's budget implements
// it; [RatioBudget] does.
//
// RecordAt(attempt, o, now) must do what Record(attempt, o) would have done
// at the instant now. now comes from time.Now() (with its monotonic
// reading), taken when the attempt ended.
type TimedBudget interface {
	Budget
	RecordAt(attempt int, o Outcome, now time.Time)
}

var (
	_ TimedBudget = (*RatioBudget)(nil)
	_ Budget      = (*TokenBucket)(nil)
)

// Fixed-point units of RatioBudget, as in Finagle's TokenRetryBudget: a call
// deposits ratioScale, a retry costs ratioScale/ratio.
const (
	ratioScale    = 1000
	ratioSlots    = 10      // slices of the TTL window
	minRatio      = 1e-6    // ratios below count as zero
	maxRatio      = 1000    // Finagle's upper bound for percentCanRetry
	maxBudgetUnit = 1 << 60 // saturation point of the reserve
	defaultTTL    = 10 * time.Second
	defaultRatio  = 0.2
)

// RatioBudgetConfig configures a [RatioBudget] built by
// [NewRatioBudgetFromConfig]: plain data, copied by the constructor. Every
// zero field selects its default, and the zero RatioBudgetConfig is a budget
// whose retries may add 20% to the calls of the last 10 seconds, with no
// floor.
//
// [RatioBudgetConfig.Validate] reports the values the constructor would have
// to clamp.
type RatioBudgetConfig struct {
	// TTL is the window over which calls and retries are counted: each
	// call's deposit and each retry's cost expire TTL after they happen.
	// Zero means 10s; negative values are invalid (and mean 10s).
	TTL time.Duration

	// MinRetriesPerSecond is the floor that lets clients with little
	// traffic retry: MinRetriesPerSecond*TTL retries per window (TTL in
	// seconds, rounded down to a whole number of retries). Zero means no
	// floor; negative values are invalid (and mean 0).
	MinRetriesPerSecond int

	// Ratio is the fraction of the window's calls that retries may add:
	// 0.2 lets 100 calls make 20 retries. Zero means 0.2; for a budget
	// whose floor alone allows retries, use NewRatioBudget with a ratio of
	// 0. Negative values, values between 0 and 0.000001 or above 1000, and
	// NaN are invalid (they are clamped to [0.000001, 1000], NaN meaning
	// 0.2).
	Ratio float64

	// FloorInsideRatio chooses how the floor and the ratio combine. false,
	// the default, adds them as Finagle and Linkerd do: the retries of a
	// window are at most floor + Ratio*calls. true counts the floor inside
	// the ratio: at most max(floor, Ratio*calls), so that under a total
	// outage at any rate where Ratio*calls reaches the floor, attempts stay
	// within 1+Ratio per call, while a client with too few calls still
	// gets the floor.
	FloorInsideRatio bool
}

// Validate reports every field of c that [NewRatioBudgetFromConfig] would
// have to clamp, each as a *[resilience.FieldError] whose Field is the
// field's name ("TTL", "MinRetriesPerSecond", "Ratio"), joined with
// [errors.Join]; nil when c is valid. Zero fields are valid: they select
// the defaults.
func (c RatioBudgetConfig) Validate() error {
	var errs []error
	if c.TTL < 0 {
		errs = append(errs, &resilience.FieldError{Field: "TTL", Value: c.TTL, Reason: "must not be negative (0 means 10s)"})
	}
	if c.MinRetriesPerSecond < 0 {
		errs = append(errs, &resilience.FieldError{Field: "MinRetriesPerSecond", Value: c.MinRetriesPerSecond, Reason: "must not be negative (0 means no floor)"})
	}
	if !(c.Ratio >= 0 && c.Ratio <= maxRatio) || (c.Ratio > 0 && c.Ratio < minRatio) {
		errs = append(errs, &resilience.FieldError{Field: "Ratio", Value: c.Ratio, Reason: "must be 0 (meaning 0.2) or within [0.000001, 1000]"})
	}
	return errors.Join(errs...)
}

// RatioBudget allows retries for at most a fraction of recent calls, plus a
// floor of retries per second so that clients with little traffic can still
// retry: the retry budget of Finagle (RetryBudget) and Linkerd.
//
// Over any window of the TTL, the retries it grants are at most
//
//	floor + ratio*(calls in the window)
//
// or, when the floor counts inside the ratio
// ([RatioBudgetConfig].FloorInsideRatio),
//
//	max(floor, ratio*(calls in the window))
//
// where floor is minRetriesPerSecond*TTL and a call counts when its first
// attempt ends (up to the rounding of a retry's cost to a thousandth of a
// call). Deposits and spent retries expire TTL after they happen. Every
// Policy that shares the budget draws on the same balance.
//
// It charges a retry in AllowRetry: a grant withdraws the retry's cost, a
// denial withdraws nothing, and Record only deposits.
//
// A RatioBudget is safe for concurrent use. Record and RecordAt are
// lock-free: an atomic add on the count of the current slice of time (a
// tenth of the TTL). AllowRetry and Available take a short mutex. Available
// never allocates; the others allocate only to start a new slice, once per
// slice (callers that race to start the same slice may each allocate it,
// and all copies but one are dropped). The zero RatioBudget denies every
// retry; use [NewRatioBudget] or [NewRatioBudgetFromConfig].
type RatioBudget struct {
	now         func() time.Time // nil: time.Now; tests replace it
	epoch       time.Time        // origin of the slice numbering
	width       time.Duration    // length of one slice; 0 in the zero value
	deposit     int64            // units a call deposits
	withdrawal  int64            // units a retry costs
	reserve     int64            // units of the floor within a window
	floorInside bool             // balance is max(reserve, deposits) - withdrawals

	// slots holds the slices of the last TTL, slice idx at idx%ratioSlots.
	// A slot moves on to a newer slice by swapping in a fresh ratioSlice,
	// never by resetting one in place, so a deposit that races with the
	// swap lands in the expired slice, where it is dropped, and never in
	// the new one.
	slots [ratioSlots]atomic.Pointer[ratioSlice]

	mu sync.Mutex // serialises withdrawals: AllowRetry's check and spend
}

// ratioSlice sums the deposits and the withdrawals of one slice of time,
// the one numbered idx.
type ratioSlice struct {
	idx         int64
	deposits    atomic.Int64
	withdrawals int64 // written and read under RatioBudget.mu
}

// NewRatioBudget returns a budget that lets retries reach at most ratio
// times the number of calls over the last ttl, plus minRetriesPerSecond
// retries per second on top (Finagle: RetryBudget(ttl, minRetriesPerSec,
// percentCanRetry); Linkerd's defaults are 10s, 10 and 0.2).
//
// It never fails; out-of-range values are clamped: a ttl of zero or less
// means 10s; a negative minRetriesPerSecond means 0; ratio is clamped to
// [0, 1000], and NaN or a ratio below 0.000001 means 0, so that only the
// floor allows retries. The floor amounts to minRetriesPerSecond*ttl retries
// (ttl in seconds, rounded down to a whole number of retries) per window.
// [NewRatioBudgetFromConfig] can count the floor inside the ratio instead.
func NewRatioBudget(ttl time.Duration, minRetriesPerSecond int, ratio float64) *RatioBudget {
	return newRatioBudget(ttl, minRetriesPerSecond, ratio, false, time.Now)
}

// NewRatioBudgetFromConfig returns a budget configured by cfg. It never
// fails: a negative TTL means 10s, a negative MinRetriesPerSecond means 0,
// a NaN Ratio means 0.2 and any other Ratio is clamped to [0.000001, 1000];
// [RatioBudgetConfig.Validate] reports such values.
func NewRatioBudgetFromConfig(cfg RatioBudgetConfig) *RatioBudget {
	return newRatioBudgetFromConfig(cfg, time.Now)
}

func newRatioBudgetFromConfig(cfg RatioBudgetConfig, now func() time.Time) *RatioBudget {
	ratio := cfg.Ratio
	switch {
	case ratio == 0 || math.IsNaN(ratio):
		ratio = defaultRatio
	case ratio < minRatio:
		ratio = minRatio
	}
	return newRatioBudget(cfg.TTL, cfg.MinRetriesPerSecond, ratio, cfg.FloorInsideRatio, now)
}

func newRatioBudget(ttl time.Duration, minRetriesPerSecond int, ratio float64, floorInside bool, now func() time.Time) *RatioBudget {
	if ttl <= 0 {
		ttl = defaultTTL
	}
	minRetriesPerSecond = max(minRetriesPerSecond, 0)
	switch {
	case !(ratio >= minRatio): // NaN too
		ratio = 0
	case ratio > maxRatio:
		ratio = maxRatio
	}
	b := &RatioBudget{now: now, epoch: now(), width: max(ttl/ratioSlots, 1), floorInside: floorInside}
	if ratio == 0 {
		// Calls earn nothing; every retry costs one unit of the reserve.
		b.deposit, b.withdrawal = 0, 1
	} else {
		b.deposit = ratioScale
		b.withdrawal = max(int64(math.Round(ratioScale/ratio)), 1) // at most 1e9
	}
	floor := math.Floor(float64(minRetriesPerSecond) * ttl.Seconds())
	b.reserve = int64(math.Min(floor*float64(b.withdrawal), maxBudgetUnit))
	return b
}

// Record deposits one call's worth of retries when attempt is 1, whatever
// the outcome; later attempts change nothing. It never charges a retry. It
// reads the clock only when attempt is 1.
func (b *RatioBudget) Record(attempt int, o Outcome) {
	if attempt != 1 || b.width == 0 || b.deposit == 0 {
		return
	}
	b.RecordAt(attempt, o, b.clock())
}

// RecordAt is [RatioBudget.Record] for an attempt that ended at now, a
// reading of time.Now() (see [TimedBudget]): the deposit counts in the
// slice of time that holds now. A deposit for a slice that has already
// left the window is dropped, as it would have expired.
func (b *RatioBudget) RecordAt(attempt int, _ Outcome, now time.Time) {
	if attempt != 1 || b.width == 0 || b.deposit == 0 {
		return
	}
	if s := b.slice(b.sliceIndex(now)); s != nil {
		// Deposits cannot overflow: a slice would need 9e15 calls.
		s.deposits.Add(b.deposit)
	}
}

// AllowRetry reports whether the balance of the last TTL covers one more
// retry, and withdraws the retry's cost when it does; a denial changes
// nothing.
func (b *RatioBudget) AllowRetry() bool {
	if b.width == 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	idx := b.sliceIndex(b.clock())
	if b.balanceLocked(idx) < b.withdrawal {
		return false
	}
	s := b.slice(idx)
	if s == nil {
		// A later reading of the clock has moved the window past idx:
		// this caller's reading is stale, and a retry spent in an
		// expired slice would not count. Deny it.
		return false
	}
	s.withdrawals += b.withdrawal
	return true
}

// Available returns how many retries the budget would grant now if nobody
// else drew on it, for metrics, consoles and tests. It is 0 for the zero
// RatioBudget. [TokenBucket.Available] means the same.
func (b *RatioBudget) Available() int {
	if b.width == 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return int(max(b.balanceLocked(b.sliceIndex(b.clock())), 0) / b.withdrawal)
}

func (b *RatioBudget) clock() time.Time {
	if b.now != nil {
		return b.now()
	}
	return time.Now()
}

// sliceIndex numbers the slice of time that holds now; it never goes below
// 0, even if the clock steps back behind the epoch.
func (b *RatioBudget) sliceIndex(now time.Time) int64 {
	return max(int64(now.Sub(b.epoch)/b.width), 0)
}

// slice returns the slice idx, starting it in its slot if the slot holds an
// older one, or nil if the slot has already moved on to a newer slice.
func (b *RatioBudget) slice(idx int64) *ratioSlice {
	slot := &b.slots[idx%ratioSlots]
	for {
		s := slot.Load()
		switch {
		case s != nil && s.idx == idx:
			return s
		case s != nil && s.idx > idx:
			return nil
		}
		n := &ratioSlice{idx: idx}
		if slot.CompareAndSwap(s, n) {
			return n
		}
	}
}

// balanceLocked returns the units available in the window ending with
// slice idx: the reserve plus the deposits (or the larger of the two when
// the floor counts inside the ratio), less the withdrawals. b.mu must be
// held.
func (b *RatioBudget) balanceLocked(idx int64) int64 {
	var deposits, withdrawals int64
	for i := range b.slots {
		if s := b.slots[i].Load(); s != nil && s.idx > idx-ratioSlots && s.idx <= idx {
			deposits += s.deposits.Load()
			withdrawals += s.withdrawals
		}
	}
	if b.floorInside {
		return max(b.reserve, deposits) - withdrawals
	}
	return b.reserve + deposits - withdrawals
}

// Fixed-point units of TokenBucket: gRPC keeps three decimal places of
// tokenRatio, so milli-tokens are exact.
const (
	milliTokens = 1000
	maxTokens   = 1000 // gRPC's upper bound for maxTokens
)

// TokenBucket is gRPC's retry throttling (gRFC A6, service config
// "retryThrottling": maxTokens, tokenRatio): the bucket starts full with
// maxTokens; every retryable failure takes one token and every success puts
// back tokenRatio, up to maxTokens; retries are allowed only while more than
// maxTokens/2 tokens remain. Final failures change nothing.
//
// Under a total outage it grants about maxTokens/2 retries and then none
// until successes refill it; unlike [RatioBudget] it has no notion of time.
//
// It charges a retry in Record: the failure that asks for a retry has
// already taken its token when AllowRetry is asked, so AllowRetry only
// reads the count and a grant costs nothing more, as in gRPC.
//
// A TokenBucket is safe for concurrent use and lock-free; its methods never
// allocate. The zero TokenBucket has no tokens and denies every retry; use
// [NewTokenBucket].
type TokenBucket struct {
	max    int64 // capacity in milli-tokens
	ratio  int64 // milli-tokens a success puts back
	tokens atomic.Int64
}

// NewTokenBucket returns a full bucket of maxTokens tokens that gains
// tokenRatio tokens per success.
//
// It never fails; out-of-range values are clamped as gRPC's limits say:
// maxTokens to [0, 1000] (NaN means 0, a bucket that denies every retry),
// tokenRatio to [0, 1000] (NaN means 0) and is truncated to three decimal
// places, so a ratio below 0.001 never refills the bucket.
func NewTokenBucket(maxTokens, tokenRatio float64) *TokenBucket {
	maxTokens = clampFloat(maxTokens, 0, maxTokensLimit)
	tokenRatio = clampFloat(tokenRatio, 0, maxTokensLimit)
	b := &TokenBucket{
		max:   int64(math.Round(maxTokens * milliTokens)),
		ratio: int64(math.Trunc(tokenRatio * milliTokens)),
	}
	b.tokens.Store(b.max)
	return b
}

// maxTokensLimit is maxTokens as a float64, also the largest useful ratio.
const maxTokensLimit = float64(maxTokens)

// clampFloat returns f clamped to [lo, hi], and lo for NaN.
func clampFloat(f, lo, hi float64) float64 {
	switch {
	case !(f > lo):
		return lo
	case f > hi:
		return hi
	}
	return f
}

// Record takes a token for a RetryableFailure and puts tokenRatio back for
// a Success, within [0, maxTokens]; a FinalFailure changes nothing.
func (b *TokenBucket) Record(_ int, o Outcome) {
	switch o {
	case Success:
		b.add(b.ratio)
	case RetryableFailure:
		b.add(-milliTokens)
	}
}

// add adds delta milli-tokens, keeping the count within [0, max].
func (b *TokenBucket) add(delta int64) {
	for {
		old := b.tokens.Load()
		n := min(max(old+delta, 0), b.max)
		if n == old || b.tokens.CompareAndSwap(old, n) {
			return
		}
	}
}

// AllowRetry reports whether more than maxTokens/2 tokens remain. It spends
// nothing: the failure that asks for the retry already took its token.
func (b *TokenBucket) AllowRetry() bool {
	return 2*b.tokens.Load() > b.max
}

// Available returns how many retries the bucket would grant now if
// nobody else drew on it, as [RatioBudget.Available] does: the number of
// retryable failures, each taking its token, after which more than
// maxTokens/2 tokens would still remain. It is 0 for the zero TokenBucket.
func (b *TokenBucket) Available() int {
	// The k-th retry is granted when 2*(tokens - k*1000) > max, that is
	// for k < (2*tokens - max) / 2000.
	over := 2*b.tokens.Load() - b.max
	if over <= 0 {
		return 0
	}
	return int((over - 1) / (2 * milliTokens))
}

// Tokens returns the current number of tokens, for metrics and tests.
func (b *TokenBucket) Tokens() float64 {
	return float64(b.tokens.Load()) / milliTokens
}

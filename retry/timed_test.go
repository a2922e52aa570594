package retry

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// defaultTargetConfig is the configuration of the interceptors package's
// default per-target budget (interceptors.DefaultTargetBudget).
var defaultTargetConfig = RatioBudgetConfig{
	TTL:                 10 * time.Second,
	MinRetriesPerSecond: 1,
	Ratio:               0.2,
	FloorInsideRatio:    true,
}

// outageAtRate runs a total outage of calls arriving at rate per second for
// d, each call allowed maxAttempts attempts without backoff, on a budget
// built from cfg on a simulated clock, and returns the attempts per call.
func outageAtRate(t *testing.T, cfg RatioBudgetConfig, rate int, d time.Duration, maxAttempts int) float64 {
	t.Helper()
	clock := newManualNow()
	b := newRatioBudgetFromConfig(cfg, clock.now)
	p := New(maxAttempts, WithBackoff(Constant(0)), WithBudget(b))
	gap := time.Second / time.Duration(rate)
	calls := int(d / gap)
	attempts := 0
	ctx := context.Background()
	for range calls {
		c := p.Start()
		for {
			attempts++
			if !c.NextAt(ctx, errTransient, clock.now()).Retry {
				break
			}
		}
		clock.advance(gap)
	}
	return float64(attempts) / float64(calls)
}

// TestDefaultTargetBudgetAmplification checks the goal of the default
// per-target budget: under a total outage, at most 1.2 attempts per call at
// 10, 100 and 3000 calls per second, while a client with one call per
// second can still retry thanks to the floor.
func TestDefaultTargetBudgetAmplification(t *testing.T) {
	for _, rate := range []int{10, 100, 3000} {
		got := outageAtRate(t, defaultTargetConfig, rate, time.Minute, 3)
		t.Logf("%d calls/s: %.4f attempts per call", rate, got)
		if got > 1.2 {
			t.Errorf("%d calls/s: %.4f attempts per call, want at most 1.2", rate, got)
		}
		if got < 1.15 {
			t.Errorf("%d calls/s: %.4f attempts per call, want the ratio to allow about 1.2", rate, got)
		}
	}
	if got := outageAtRate(t, defaultTargetConfig, 1, time.Minute, 3); got < 1.9 {
		t.Errorf("1 call/s: %.4f attempts per call, want the floor to allow about one retry per call", got)
	}
	// The Finagle budget with Linkerd's settings puts its floor on top.
	linkerd := RatioBudgetConfig{TTL: 10 * time.Second, MinRetriesPerSecond: 10, Ratio: 0.2}
	if got := outageAtRate(t, linkerd, 100, time.Minute, 3); got <= 1.25 {
		t.Errorf("Linkerd's budget at 100 calls/s: %.4f attempts per call, want the floor on top of 1.2", got)
	}
}

// TestRatioBudgetFloorInsideRatio checks the balance when the floor counts
// inside the ratio: max(floor, ratio*calls), not their sum.
func TestRatioBudgetFloorInsideRatio(t *testing.T) {
	clock := newManualNow()
	cfg := RatioBudgetConfig{TTL: 10 * time.Second, MinRetriesPerSecond: 1, Ratio: 0.5, FloorInsideRatio: true}
	b := newRatioBudgetFromConfig(cfg, clock.now)
	if got := b.Available(); got != 10 {
		t.Fatalf("Available = %d at start, want the floor of 10", got)
	}
	for range 10 {
		b.Record(1, RetryableFailure)
	}
	if got := b.Available(); got != 10 {
		t.Fatalf("Available = %d after 10 calls, want still the floor of 10 (5 from the ratio)", got)
	}
	for range 20 {
		b.Record(1, RetryableFailure)
	}
	if got := b.Available(); got != 15 {
		t.Fatalf("Available = %d after 30 calls, want 15 (the ratio), not 25", got)
	}
	if got := grants(b, 20); got != 15 {
		t.Fatalf("%d of 20 retries granted, want 15", got)
	}
	// Every deposit and withdrawal expires with the window: the floor is
	// back.
	clock.advance(10 * time.Second)
	if got := b.Available(); got != 10 {
		t.Fatalf("Available = %d a TTL later, want the floor of 10", got)
	}
}

func TestRatioBudgetConfigDefaults(t *testing.T) {
	clock := newManualNow()
	b := newRatioBudgetFromConfig(RatioBudgetConfig{}, clock.now)
	if b.width != time.Second || b.withdrawal != 5000 || b.reserve != 0 || b.floorInside {
		t.Fatalf("zero config: width %v, withdrawal %d, reserve %d, floor inside %v; want 1s, 5000, 0, false",
			b.width, b.withdrawal, b.reserve, b.floorInside)
	}
	if b.Available() != 0 {
		t.Fatal("the zero config has a floor")
	}
	for range 5 {
		b.Record(1, Success)
	}
	if got := b.Available(); got != 1 {
		t.Fatalf("Available = %d after 5 calls, want 1 (20%%)", got)
	}
}

func TestRatioBudgetConfigValidate(t *testing.T) {
	tests := []struct {
		cfg    RatioBudgetConfig
		fields []string
		// Clamped values the constructor uses.
		width      time.Duration
		withdrawal int64
		reserve    int64
	}{
		{RatioBudgetConfig{}, nil, time.Second, 5000, 0},
		{defaultTargetConfig, nil, time.Second, 5000, 50000},
		{RatioBudgetConfig{TTL: -1, MinRetriesPerSecond: -1, Ratio: -1}, []string{"TTL", "MinRetriesPerSecond", "Ratio"}, time.Second, 1e9, 0},
		{RatioBudgetConfig{Ratio: math.NaN()}, []string{"Ratio"}, time.Second, 5000, 0},
		{RatioBudgetConfig{Ratio: 1e-9}, []string{"Ratio"}, time.Second, 1e9, 0},
		{RatioBudgetConfig{Ratio: 1e6}, []string{"Ratio"}, time.Second, 1, 0},
		{RatioBudgetConfig{Ratio: math.Inf(1)}, []string{"Ratio"}, time.Second, 1, 0},
		{RatioBudgetConfig{TTL: 5, MinRetriesPerSecond: math.MaxInt, Ratio: 1000}, nil, 1, 1, 46116860184}, // floor(MaxInt * 5e-9)
		{RatioBudgetConfig{TTL: time.Hour, MinRetriesPerSecond: math.MaxInt, Ratio: 1e-6}, nil, 6 * time.Minute, 1e9, maxBudgetUnit},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		var got []string
		for _, fe := range resilience.FieldErrors(err) {
			got = append(got, fe.Field)
		}
		if fmtStrings(got) != fmtStrings(tt.fields) {
			t.Errorf("%+v: Validate() = %v, want problems with %v", tt.cfg, err, tt.fields)
		}
		if err != nil {
			var fe *resilience.FieldError
			if !errors.As(err, &fe) {
				t.Errorf("%+v: Validate() = %v, not a *resilience.FieldError", tt.cfg, err)
			}
		}
		b := newRatioBudgetFromConfig(tt.cfg, newManualNow().now)
		if b.width != tt.width || b.withdrawal != tt.withdrawal || b.reserve != tt.reserve {
			t.Errorf("%+v: width %v, withdrawal %d, reserve %d; want %v, %d, %d",
				tt.cfg, b.width, b.withdrawal, b.reserve, tt.width, tt.withdrawal, tt.reserve)
		}
	}
}

// TestRatioBudgetRecordAt checks that RecordAt deposits in the slice of
// the time it is given, and drops a deposit whose slice has left the
// window.
func TestRatioBudgetRecordAt(t *testing.T) {
	clock := newManualNow()
	b := newRatioBudget(10*time.Second, 0, 1, false, clock.now) // a retry per call
	start := clock.now()
	clock.advance(5 * time.Second)
	b.RecordAt(1, Success, start.Add(5*time.Second))
	b.RecordAt(2, RetryableFailure, start.Add(5*time.Second)) // not a first attempt
	b.RecordAt(1, FinalFailure, start)
	if got := b.Available(); got != 2 {
		t.Fatalf("Available = %d, want 2 deposits", got)
	}
	clock.advance(7 * time.Second)
	if got := b.Available(); got != 1 {
		t.Fatalf("Available = %d at 12s, want 1: the deposit at 0s expired", got)
	}
	// A reading older than the window counts nothing: its slot moved on.
	b.RecordAt(1, Success, start.Add(30*time.Second))
	b.RecordAt(1, Success, start.Add(20*time.Second))
	clock.advance(18 * time.Second) // 30s
	if got := b.Available(); got != 1 {
		t.Fatalf("Available = %d at 30s, want 1: the deposit for 20s was dropped", got)
	}
	var zero RatioBudget
	zero.RecordAt(1, Success, time.Now())
	if zero.AllowRetry() {
		t.Fatal("the zero RatioBudget granted a retry")
	}
}

// TestRatioBudgetConcurrentExact records and withdraws from many
// goroutines across slice boundaries and checks that the grants never
// exceed the bound and that, at quiescence, every deposit is counted.
func TestRatioBudgetConcurrentExact(t *testing.T) {
	const goroutines, calls = 8, 2000
	for _, inside := range []bool{false, true} {
		clock := newManualNow()
		b := newRatioBudget(time.Hour, 0, 0.5, inside, clock.now) // a retry per 2 calls
		start := clock.now()
		var granted atomic.Int64
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for i := range calls {
					// Readings spread over the first 6 slices, in an order
					// of each goroutine's own.
					at := start.Add(time.Duration((i*7+g)%6) * 6 * time.Minute)
					b.RecordAt(1, Success, at)
					if i%2 == 0 && b.AllowRetry() {
						granted.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if got := granted.Load(); got > goroutines*calls/2 {
			t.Errorf("inside %v: granted %d retries for %d calls, more than half", inside, got, goroutines*calls)
		}
		clock.advance(50 * time.Minute) // every slice is in the window
		want := goroutines*calls/2 - int(granted.Load())
		if got := b.Available(); got != want {
			t.Errorf("inside %v: Available = %d at quiescence, want %d = %d calls / 2 - %d granted",
				inside, got, want, goroutines*calls, granted.Load())
		}
	}
}

// countingClock is a fake clock that counts its readings.
type countingClock struct {
	*fakeClock
	reads atomic.Int64
}

func (c *countingClock) now() time.Time {
	c.reads.Add(1)
	return c.fakeClock.now()
}

// timedBudget records the times RecordAt is given.
type timedBudget struct {
	recordingBudget
	at []time.Time
}

func (b *timedBudget) RecordAt(attempt int, o Outcome, now time.Time) {
	b.Record(attempt, o)
	b.at = append(b.at, now)
}

// TestNextAtUsesCallersTime checks that NextAt reads no clock, hands its
// time to a TimedBudget, and measures the deadline and the maximum duration
// from it.
func TestNextAtUsesCallersTime(t *testing.T) {
	cc := &countingClock{fakeClock: &fakeClock{t: time.Now()}} // the ctx deadline is on the real clock
	tb := &timedBudget{recordingBudget: recordingBudget{allow: true}}
	p := New(5, WithBackoff(Constant(time.Second)), WithMaxDuration(10*time.Second), WithBudget(tb))
	p.clock = cc
	ctx, cancel := context.WithDeadline(context.Background(), cc.fakeClock.now().Add(time.Hour))
	defer cancel()

	c := p.Start() // reads the clock once, for the maximum duration
	cc.reads.Store(0)
	t0 := cc.fakeClock.now()
	if d := c.NextAt(ctx, errTransient, t0.Add(5*time.Second)); !d.Retry || d.Delay != time.Second {
		t.Fatalf("NextAt 5s into a 10s maximum = %+v, want a retry after 1s", d)
	}
	// 9s in, a 1s wait would end at the maximum duration: no retry.
	if d := c.NextAt(ctx, errTransient, t0.Add(9*time.Second)); d.Retry {
		t.Fatalf("NextAt 9s into a 10s maximum = %+v, want no retry", d)
	}
	if n := cc.reads.Load(); n != 0 {
		t.Errorf("NextAt read the policy's clock %d times, want 0", n)
	}
	if want := []time.Time{t0.Add(5 * time.Second), t0.Add(9 * time.Second)}; len(tb.at) != 2 || !tb.at[0].Equal(want[0]) || !tb.at[1].Equal(want[1]) {
		t.Errorf("RecordAt got %v, want %v", tb.at, want)
	}
	if got, want := fmtStrings(tb.records), "[retryable failure@1 retryable failure@2]"; got != want {
		t.Errorf("records %s, want %s", got, want)
	}

	// The ctx deadline too is measured from the caller's time.
	c = p.Start()
	if d := c.NextAt(ctx, errTransient, t0.Add(time.Hour-time.Second)); d.Retry {
		t.Fatalf("NextAt 1s before the deadline with a 1s wait = %+v, want no retry", d)
	}

	// A budget without RecordAt gets Record; success ends the call.
	rb := &recordingBudget{allow: true}
	c = New(3, WithBudget(rb)).Start()
	if d := c.NextAt(ctx, nil, time.Now()); d.Retry || d.Err != nil {
		t.Fatalf("NextAt(nil) = %+v, want the end of the call", d)
	}
	if got, want := fmtStrings(rb.records), "[success@1]"; got != want {
		t.Errorf("records %s, want %s", got, want)
	}
}

// TestNextAtMatchesNext runs the same calls through Next on a fake clock
// and through NextAt with that clock's readings, on a budget that reads
// the same clock and is tight enough to deny retries: the decisions agree,
// the budget's denials included.
func TestNextAtMatchesNext(t *testing.T) {
	errs := []error{errTransient, &pushbackError{delay: 3 * time.Second, retry: true}, errTransient, Permanent(errBad), nil}
	six := []error{errTransient, errTransient, errTransient, errTransient, errTransient, errTransient}
	run := func(useAt bool) []Decision {
		p, fc := testPolicy(6, 0.5, WithBackoff(Exponential(time.Second, time.Minute, 2)), WithMaxDuration(20*time.Second))
		// The ctx deadline is on the real clock: it must not have passed
		// already, or no attempt would be retried.
		fc.t = time.Now()
		// A retry per 2 calls, on the policy's clock, without a floor.
		p = p.With(WithBudget(newRatioBudget(10*time.Second, 0, 0.5, true, fc.now)))
		ctx, cancel := context.WithDeadline(context.Background(), fc.now().Add(12*time.Second))
		defer cancel()
		var out []Decision
		for _, e := range [][]error{{nil}, {nil}, {nil}, {nil}, errs, six, six} {
			c := p.Start()
			for _, err := range e {
				var d Decision
				if useAt {
					d = c.NextAt(ctx, err, fc.now())
				} else {
					d = c.Next(ctx, err)
				}
				out = append(out, d)
				if !d.Retry {
					break
				}
				fc.advance(d.Delay)
			}
		}
		return out
	}
	next, at := run(false), run(true)
	// Four successes; then two retries and a denial; one retry and a
	// denial; and a denial at once: the calls before spent what the
	// deposits allowed.
	if last := next[len(next)-1]; last.Retry || !errors.Is(last.Err, errTransient) || len(next) != 4+3+2+1 {
		t.Fatalf("Next made %d decisions ending with %+v; want the budget to deny the last call's first retry", len(next), last)
	}
	if len(next) != len(at) {
		t.Fatalf("Next made %d decisions, NextAt %d", len(next), len(at))
	}
	for i := range next {
		if next[i].Retry != at[i].Retry || next[i].Delay != at[i].Delay || !errors.Is(at[i].Err, next[i].Err) {
			t.Errorf("decision %d: Next %+v, NextAt %+v", i, next[i], at[i])
		}
	}
}

// TestTimedPathsAllocateNothing checks that NextAt and RecordAt allocate
// nothing once the current slice of time has started.
func TestTimedPathsAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocations")
	}
	b := NewRatioBudgetFromConfig(defaultTargetConfig)
	p := New(3, WithBudget(b))
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	now := time.Now()
	b.RecordAt(1, Success, now)
	if n := testing.AllocsPerRun(1000, func() { b.RecordAt(1, Success, now) }); n != 0 {
		t.Errorf("RecordAt allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		c := p.Start()
		_ = c.NextAt(ctx, nil, now)
	}); n != 0 {
		t.Errorf("Start+NextAt allocates %v times, want 0", n)
	}
}

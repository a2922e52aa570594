package breaker

import (
	"math"
	"testing"
	"testing/synctest"
	"time"
)

// DoneAt measures the call's duration up to the caller's clock reading,
// on the breaker's own clock: a reading 2s after Allow makes a slow call, a
// reading before Allow (the zero Time included) a call of duration 0.
func TestDoneAtMeasuresToTheCallersReading(t *testing.T) {
	var last Result
	b := New(Config{SlowCallDuration: time.Second, OnResult: func(r Result) { last = r }})
	p := mustAllow(t, b)
	p.DoneAt(Success, time.Now().Add(2*time.Second))
	if !last.Slow || last.Duration < 2*time.Second || last.Duration > time.Hour {
		t.Fatalf("result %+v, want a slow call of about 2s", last)
	}
	p = mustAllow(t, b)
	p.DoneAt(Failure, time.Now().Add(-time.Hour))
	if last.Slow || last.Duration != 0 || last.Outcome != Failure {
		t.Fatalf("result %+v, want a failure of duration 0, not slow", last)
	}
	p = mustAllow(t, b)
	p.DoneAt(Success, time.Time{}) // the zero Time: long before Allow
	if last.Slow || last.Duration != 0 {
		t.Fatalf("result %+v for the zero Time, want duration 0, not slow", last)
	}
	if m := b.Metrics(); m.SlowCalls != 1 || m.Successes != 2 || m.Failures != 1 {
		t.Fatalf("metrics %+v, want 1 slow call, 2 successes, 1 failure", m)
	}
}

// DoneAt records into a time window, at the caller's reading.
func TestDoneAtTimeWindow(t *testing.T) {
	b := New(Config{WindowType: TimeWindow, FailureRateThreshold: 50, WindowPeriod: time.Hour, WindowBuckets: 2, MinimumCalls: 100})
	start := time.Now()
	mustAllow(t, b).DoneAt(Failure, start)
	if m := b.Metrics(); m.WindowCalls != 1 || m.WindowFailures != 1 {
		t.Fatalf("window %d calls %d failures, want 1, 1", m.WindowCalls, m.WindowFailures)
	}
}

// With an injected clock, which no time.Time maps onto, DoneAt reads that
// clock and ignores the caller's reading.
func TestDoneAtInjectedClock(t *testing.T) {
	var last Result
	b, clk := newFake(Config{SlowCallDuration: time.Second, OnResult: func(r Result) { last = r }})
	p := mustAllow(t, b)
	clk.advance(3 * time.Second)
	p.DoneAt(Success, time.Time{})
	if !last.Slow || last.Duration != 3*time.Second {
		t.Fatalf("result %+v, want a slow call of 3s, the injected clock's", last)
	}
}

// Without a time window or slow calls the breaker needs no clock: DoneAt
// records as Done does, whatever the reading.
func TestDoneAtWithoutClock(t *testing.T) {
	b := New(Config{FailureThreshold: 2})
	mustAllow(t, b).DoneAt(Failure, time.Time{})
	mustAllow(t, b).DoneAt(Failure, time.Now())
	if m := b.Metrics(); m.State != Open || m.Failures != 2 {
		t.Fatalf("state %v failures %d, want open after 2 failures", m.State, m.Failures)
	}
	var zero Permit
	zero.DoneAt(Success, time.Now()) // belongs to no breaker: does nothing
}

// Inside a synctest bubble, the breaker and time.Now share the fake clock:
// a call that sleeps 2s of fake time is slow when DoneAt gets the reading
// taken after it.
func TestDoneAtSynctestBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var last Result
		b := New(Config{SlowCallDuration: time.Second, OnResult: func(r Result) { last = r }})
		p := mustAllow(t, b)
		time.Sleep(2 * time.Second)
		p.DoneAt(Success, time.Now())
		if !last.Slow || last.Duration != 2*time.Second {
			t.Fatalf("result %+v, want a slow call of exactly 2s", last)
		}
	})
}

// A reading from the future (a caller's clock far ahead of the breaker's)
// counts as a call now: it must not park a bucket of the time window in an
// epoch the clock has not reached, where the calls that share the bucket
// would be lost from the rates until the clock got there.
func TestDoneAtFutureKeepsTheWindow(t *testing.T) {
	cfg := Config{WindowType: TimeWindow, FailureRateThreshold: 50, WindowPeriod: 10 * time.Second, WindowBuckets: 10, MinimumCalls: 10}
	for _, ahead := range []time.Duration{100 * time.Hour, 10 * time.Second, time.Duration(math.MaxInt64)} {
		b := New(cfg)
		mustAllow(t, b).DoneAt(Success, time.Now().Add(ahead))
		if m := b.Metrics(); m.WindowCalls != 1 {
			t.Fatalf("%v ahead: window %d calls after one, want 1", ahead, m.WindowCalls)
		}
		for range 9 {
			mustAllow(t, b).DoneAt(Failure, time.Now())
		}
		if m := b.Metrics(); m.State != Open || m.Failures != 9 {
			t.Fatalf("%v ahead: state %v, window %d/%d after 9 failures and 1 success, want open",
				ahead, m.State, m.WindowFailures, m.WindowCalls)
		}
	}
	// The same with the breaker's clock injected: the reading is ignored.
	b, clk := newFake(cfg)
	clk.advance(time.Hour)
	mustAllow(t, b).DoneAt(Success, time.Now().Add(100*time.Hour))
	for range 9 {
		mustAllow(t, b).Done(Failure)
	}
	if m := b.Metrics(); m.State != Open {
		t.Fatalf("injected clock: state %v, window %d/%d, want open", m.State, m.WindowFailures, m.WindowCalls)
	}
}

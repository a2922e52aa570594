package breaker

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

func TestTrip(t *testing.T) {
	var ev events
	b, clk := newFake(Config{
		Name: "db", FailureThreshold: 3, SuccessThreshold: 1,
		OpenDurationFunc: ExponentialOpenDuration(time.Second, time.Minute, 2),
		OnStateChange:    ev.listen,
	})
	mustAllow(t, b).Done(Failure) // a run of one, ended by the trip
	b.Trip()
	if got := b.State(); got != Open {
		t.Fatalf("State after Trip = %v, want open", got)
	}
	oe := mustReject(t, b)
	if !errors.Is(oe, resilience.ErrCircuitOpen) || oe.Remaining() != time.Second {
		t.Fatalf("rejection %v remaining %v, want ErrCircuitOpen, 1s", oe, oe.Remaining())
	}
	b.Trip() // already open: nothing
	clk.advance(time.Second)
	p := mustAllow(t, b) // half-open probe
	b.Trip()             // half-open: opens again, for the next open duration
	p.Done(Success)      // the probe's generation is over: discarded
	if m := b.Metrics(); m.State != Open || m.ConsecutiveOpens != 2 || m.OpenRemaining != 2*time.Second || m.Discarded != 1 {
		t.Fatalf("after a trip in half-open: %+v; want open for 2s, 2 opens, 1 discarded", m)
	}
	b.ForceOpen()
	b.Trip()
	if b.Mode() != ForcedOpen {
		t.Fatalf("Trip changed a forced-open breaker's mode to %v", b.Mode())
	}
	b.ForceClosed()
	b.Trip()
	if b.State() != Closed || b.Mode() != ForcedClosed {
		t.Fatalf("Trip on a forced-closed breaker: %v %v, want closed, forced-closed", b.State(), b.Mode())
	}
	assertEvents(t, ev.list, []StateChange{
		{Name: "db", From: Closed, To: Open, Reason: ReasonTripped, OpenFor: time.Second},
		{Name: "db", From: Open, To: HalfOpen, Reason: ReasonTimeoutElapsed},
		{Name: "db", From: HalfOpen, To: Open, Reason: ReasonTripped, OpenFor: 2 * time.Second},
		{Name: "db", From: Open, To: Open, Mode: ForcedOpen, Reason: ReasonForcedOpen},
		{Name: "db", From: Open, To: Closed, Mode: ForcedClosed, Reason: ReasonForcedClosed},
	})
	if got := ReasonTripped.String(); got != "tripped" {
		t.Errorf("ReasonTripped.String() = %q", got)
	}
}

// gate is an AllowHalfOpen function whose answer the test sets, counting
// its calls.
type gate struct {
	allow atomic.Bool
	calls atomic.Int64
}

func (g *gate) check() bool { g.calls.Add(1); return g.allow.Load() }

func TestAllowHalfOpenGatesHalfOpen(t *testing.T) {
	b, clk := newFake(Config{FailureThreshold: 1, SuccessThreshold: 1, Timeout: time.Second})
	var g gate
	b.Coordinate(Coordinator{AllowHalfOpen: g.check})

	run(t, b, Success, 10)
	if n := g.calls.Load(); n != 0 {
		t.Fatalf("AllowHalfOpen called %d times in the closed state, want 0", n)
	}
	run(t, b, Failure, 1)
	mustReject(t, b)
	if n := g.calls.Load(); n != 0 {
		t.Fatalf("AllowHalfOpen called %d times before the open duration ran out, want 0", n)
	}

	clk.advance(time.Hour)
	oe := mustReject(t, b)
	if oe.State() != Open || oe.Remaining() != 0 {
		t.Fatalf("gated rejection: state %v remaining %v, want open, 0", oe.State(), oe.Remaining())
	}
	if got := b.State(); got != Open {
		t.Fatalf("State with the gate shut = %v, want open", got)
	}
	if m := b.Metrics(); m.State != Open || m.OpenRemaining != 0 {
		t.Fatalf("Metrics with the gate shut: state %v remaining %v, want open, 0", m.State, m.OpenRemaining)
	}
	if n := g.calls.Load(); n < 3 {
		t.Fatalf("AllowHalfOpen called %d times, want it asked on every look", n)
	}

	g.allow.Store(true)
	p := mustAllow(t, b)
	if p.State() != HalfOpen {
		t.Fatalf("permit state %v, want a half-open probe", p.State())
	}
	p.Done(Success)
	if got := b.State(); got != Closed {
		t.Fatalf("State after the probe = %v, want closed", got)
	}
}

func TestCoordinatorsAllMustAllow(t *testing.T) {
	b, clk := newFake(Config{FailureThreshold: 1, Timeout: time.Second})
	var g1, g2 gate
	g1.allow.Store(true)
	detach1 := b.Coordinate(Coordinator{AllowHalfOpen: g1.check})
	detach2 := b.Coordinate(Coordinator{AllowHalfOpen: g2.check})
	b.Coordinate(Coordinator{}) // no gate: allows
	run(t, b, Failure, 1)
	clk.advance(time.Second)
	mustReject(t, b)
	detach2()
	detach2() // idempotent
	if got := b.State(); got != HalfOpen {
		t.Fatalf("State after detaching the shut gate = %v, want half-open", got)
	}
	detach1()
	b.Reset()
	run(t, b, Failure, 1)
	clk.advance(time.Second)
	if got := b.State(); got != HalfOpen {
		t.Fatalf("State with no gate = %v, want half-open", got)
	}
}

func TestCoordinatorHearsStateChanges(t *testing.T) {
	var order []string
	b, _ := newFake(Config{FailureThreshold: 1, OnStateChange: func(StateChange) { order = append(order, "config") }})
	var got []StateChange
	detach := b.Coordinate(Coordinator{OnStateChange: func(ev StateChange) {
		order = append(order, "coordinator")
		got = append(got, ev)
		if ev.Reason == ReasonConsecutiveFailures {
			_ = b.State() // may call back: no lock held
			b.Reset()     // delivered after this call returns
		}
	}})
	run(t, b, Failure, 1)
	assertEvents(t, got, []StateChange{
		{From: Closed, To: Open, Reason: ReasonConsecutiveFailures, OpenFor: DefaultTimeout},
		{From: Open, To: Closed, Reason: ReasonReset},
	})
	if want := []string{"config", "coordinator", "config", "coordinator"}; len(order) != 4 || order[0] != want[0] || order[1] != want[1] || order[3] != want[3] {
		t.Fatalf("delivery order %v, want %v", order, want)
	}
	detach()
	b.Trip()
	if len(got) != 2 {
		t.Fatalf("a detached coordinator heard %v", got[2:])
	}

	// Without a Config listener, a coordinator alone hears the changes.
	var alone []StateChange
	b2, _ := newFake(Config{FailureThreshold: 1})
	b2.Coordinate(Coordinator{OnStateChange: func(ev StateChange) { alone = append(alone, ev) }})
	b2.Trip()
	assertEvents(t, alone, []StateChange{{From: Closed, To: Open, Reason: ReasonTripped, OpenFor: DefaultTimeout}})
}

// Attaching a coordinator leaves the closed path, and the rejections it
// causes, allocation-free.
func TestCoordinatedClosedPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	b := New(Config{})
	b.Coordinate(Coordinator{OnStateChange: func(StateChange) {}, AllowHalfOpen: func() bool { return false }})
	if n := testing.AllocsPerRun(1000, func() {
		p, _ := b.Allow()
		p.Done(Success)
	}); n != 0 {
		t.Fatalf("closed Allow+Done allocates %v times, want 0", n)
	}
	b.Trip()
	b2, clk := newFake(Config{FailureThreshold: 1, Timeout: time.Second})
	b2.Coordinate(Coordinator{AllowHalfOpen: func() bool { return false }})
	b2.Trip()
	clk.advance(time.Hour)
	if n := testing.AllocsPerRun(1000, func() { _, _ = b2.Allow() }); n != 0 {
		t.Fatalf("a rejection held by the gate allocates %v times, want 0", n)
	}
}

// Coordinators come and go while calls run, trips and resets happen and
// the gate flips: no race, no lost state.
func TestCoordinateConcurrent(t *testing.T) {
	b := New(Config{FailureThreshold: 1, SuccessThreshold: 1, Timeout: time.Nanosecond})
	var heard atomic.Int64
	var g gate
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 500 {
				switch (i + j) % 4 {
				case 0:
					detach := b.Coordinate(Coordinator{
						OnStateChange: func(StateChange) { heard.Add(1) },
						AllowHalfOpen: g.check,
					})
					detach()
				case 1:
					b.Trip()
				case 2:
					g.allow.Store(j%3 == 0)
					if p, err := b.Allow(); err == nil {
						p.Done(Outcome(j % 3))
					}
				default:
					b.Reset()
				}
			}
		})
	}
	wg.Wait()
	b.Reset()
	if got := b.State(); got != Closed {
		t.Fatalf("State after Reset = %v", got)
	}
}

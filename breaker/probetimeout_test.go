package breaker

import (
	"testing"
	"time"
)

// A half-open probe whose permit is lost (never recorded) gives its slot
// back after ProbeTimeout, so the breaker admits a new probe and can close;
// the lost probe's late outcome is discarded.
func TestLostProbeSlotIsReclaimed(t *testing.T) {
	var results []Result
	b, clk := newFake(Config{FailureThreshold: 1, Timeout: time.Second, SuccessThreshold: 1, MaxHalfOpenProbes: 1,
		OnResult: func(r Result) { results = append(results, r) }})
	run(t, b, Failure, 1)
	clk.advance(time.Second)
	lost := mustAllow(t, b) // its caller never records it
	if lost.State() != HalfOpen {
		t.Fatalf("permit state %v, want half-open", lost.State())
	}
	// The default ProbeTimeout is max(Timeout, DefaultProbeTimeout) = 10s.
	clk.advance(DefaultProbeTimeout - 1)
	if oe := mustReject(t, b); oe.State() != HalfOpen {
		t.Fatalf("rejection in %v, want half-open", oe.State())
	}
	clk.advance(1)
	probe := mustAllow(t, b)
	if m := b.Metrics(); m.HalfOpenProbes != 1 {
		t.Fatalf("HalfOpenProbes = %d, want 1: the reclaimed slot still counts", m.HalfOpenProbes)
	}
	mustReject(t, b) // one slot, taken by the new probe

	lost.Done(Failure) // late: must not reopen the breaker nor free a slot
	if b.State() != HalfOpen {
		t.Fatalf("the late outcome of a reclaimed probe moved the breaker to %v", b.State())
	}
	mustReject(t, b)
	if last := results[len(results)-1]; !last.Discarded {
		t.Fatalf("late outcome reported as %+v, want Discarded", last)
	}
	probe.Done(Success)
	if b.State() != Closed {
		t.Fatalf("state %v after the new probe succeeded, want closed", b.State())
	}
	if m := b.Metrics(); m.Discarded != 1 || m.Failures != 1 || m.Successes != 1 {
		t.Fatalf("metrics %+v: want 1 discarded, 1 failure, 1 success", m)
	}
}

// An explicit ProbeTimeout reclaims each expired slot and only those, in
// the order the probes were admitted.
func TestProbeTimeoutReclaimsOnlyExpiredSlots(t *testing.T) {
	b, clk := newFake(Config{FailureThreshold: 1, Timeout: time.Second, SuccessThreshold: 3, MaxHalfOpenProbes: 2, ProbeTimeout: 5 * time.Second})
	run(t, b, Failure, 1)
	clk.advance(time.Second)
	first := mustAllow(t, b)
	clk.advance(2 * time.Second)
	second := mustAllow(t, b)
	mustReject(t, b)
	clk.advance(3 * time.Second) // first held 5s: expired; second 3s
	third := mustAllow(t, b)
	mustReject(t, b)
	second.Done(Success) // still holds its slot: counts and frees it
	fourth := mustAllow(t, b)
	first.Done(Success) // reclaimed: discarded, frees nothing
	mustReject(t, b)
	third.Done(Success)
	if b.State() != HalfOpen {
		t.Fatalf("state %v after 2 counted successes of 3, want half-open", b.State())
	}
	fourth.Done(Success)
	if b.State() != Closed {
		t.Fatalf("state %v after 3 counted successes, want closed", b.State())
	}
	if m := b.Metrics(); m.Discarded != 1 {
		t.Fatalf("Discarded = %d, want 1", m.Discarded)
	}
}

// A probe recorded in time frees its slot as before, whatever the
// timeout, and a new half-open period starts with no slot held.
func TestProbeTimeoutDoesNotOutliveItsPeriod(t *testing.T) {
	b, clk := newFake(Config{FailureThreshold: 1, Timeout: time.Second, SuccessThreshold: 1, MaxHalfOpenProbes: 1, ProbeTimeout: time.Hour})
	run(t, b, Failure, 1)
	clk.advance(time.Second)
	mustAllow(t, b).Done(Failure) // reopens
	clk.advance(time.Second)
	p := mustAllow(t, b) // a fresh period: the slot is free
	if m := b.Metrics(); m.HalfOpenProbes != 1 {
		t.Fatalf("HalfOpenProbes = %d, want 1", m.HalfOpenProbes)
	}
	p.Done(Success)
	if b.State() != Closed {
		t.Fatalf("state %v, want closed", b.State())
	}
}

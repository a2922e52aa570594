package breaker

import (
	"testing"
	"time"
)

// Peek reads an open breaker whose open duration ran out without
// half-opening it; Metrics (like State) half-opens it.
func TestPeekDoesNotHalfOpen(t *testing.T) {
	b, clk := newFake(Config{FailureThreshold: 1, Timeout: time.Second})
	mustAllow(t, b).Done(Failure)
	clk.advance(2 * time.Second)
	for range 3 {
		m := b.Peek()
		if m.State != Open || m.OpenRemaining != 0 || m.HalfOpenProbes != 0 {
			t.Fatalf("Peek = %v, %v remaining, %d probes; want open, 0, 0", m.State, m.OpenRemaining, m.HalfOpenProbes)
		}
	}
	if m := b.Peek(); m.Transitions != 1 || m.Failures != 1 {
		t.Fatalf("Peek counts %+v, want one transition and one failure", m)
	}
	if m := b.Metrics(); m.State != HalfOpen {
		t.Fatalf("Metrics after the open duration = %v, want half-open", m.State)
	}
	p := mustAllow(t, b)
	if m := b.Peek(); m.State != HalfOpen || m.HalfOpenProbes != 1 {
		t.Fatalf("Peek with a probe in flight = %v, %d probes; want half-open, 1", m.State, m.HalfOpenProbes)
	}
	p.Done(Success)
}

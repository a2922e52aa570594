package breaker

import (
	"testing"
	"time"
)

func TestListenerOrder(t *testing.T) {
	var ev events
	b, clk := newFake(Config{FailureThreshold: 2, SuccessThreshold: 1, Timeout: time.Second, OnStateChange: ev.listen})
	run(t, b, Failure, 2)
	clk.advance(time.Second)
	mustAllow(t, b).Done(Failure)
	clk.advance(time.Second)
	mustAllow(t, b).Done(Success)
	b.ForceOpen()
	b.ForceClosed()
	b.Reset()
	assertEvents(t, ev.list, []StateChange{
		{From: Closed, To: Open, Reason: ReasonConsecutiveFailures, OpenFor: time.Second},
		{From: Open, To: HalfOpen, Reason: ReasonTimeoutElapsed},
		{From: HalfOpen, To: Open, Reason: ReasonProbeFailed, OpenFor: time.Second},
		{From: Open, To: HalfOpen, Reason: ReasonTimeoutElapsed},
		{From: HalfOpen, To: Closed, Reason: ReasonProbesSucceeded},
		{From: Closed, To: Open, Mode: ForcedOpen, Reason: ReasonForcedOpen},
		{From: Open, To: Closed, Mode: ForcedClosed, Reason: ReasonForcedClosed},
		{From: Closed, To: Closed, Reason: ReasonReset},
	})
}

// A listener may call back into the breaker: it is never called with the
// lock held (State, Metrics and ForceOpen would deadlock otherwise), and the
// transitions it causes are delivered after it returns, in order.
func TestListenerReentrant(t *testing.T) {
	var (
		b      *Breaker
		got    []StateChange
		states []State
	)
	b, _ = newFake(Config{Name: "db", FailureThreshold: 1, OnStateChange: func(ev StateChange) {
		got = append(got, ev)
		states = append(states, b.State())
		_ = b.Metrics()
		if ev.To == Open && ev.Mode == Auto {
			b.ForceOpen() // escalate: isolate at once
		}
	}})
	run(t, b, Failure, 1)
	assertEvents(t, got, []StateChange{
		{Name: "db", From: Closed, To: Open, Reason: ReasonConsecutiveFailures, OpenFor: DefaultTimeout},
		{Name: "db", From: Open, To: Open, Mode: ForcedOpen, Reason: ReasonForcedOpen},
	})
	if len(states) != 2 || states[0] != Open || states[1] != Open {
		t.Fatalf("states seen by the listener %v, want [open open]", states)
	}
}

func TestListenerPanicDoesNotStopDelivery(t *testing.T) {
	var got []Reason
	b, _ := newFake(Config{FailureThreshold: 1, OnStateChange: func(ev StateChange) {
		got = append(got, ev.Reason)
		if ev.Reason == ReasonConsecutiveFailures {
			panic("listener bug")
		}
	}})
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the listener's panic did not reach the caller")
			}
		}()
		run(t, b, Failure, 1)
	}()
	b.Reset()
	if len(got) != 2 || got[1] != ReasonReset {
		t.Fatalf("reasons delivered %v, want the reset after the panic", got)
	}
}

func TestRejectAndResultListenersMayCallTheBreaker(t *testing.T) {
	var b *Breaker
	var rejectedIn, resultIn []State
	b, _ = newFake(Config{
		FailureThreshold: 1,
		OnReject:         func(*OpenError) { rejectedIn = append(rejectedIn, b.Metrics().State) },
		OnResult:         func(Result) { resultIn = append(resultIn, b.State()) },
	})
	run(t, b, Failure, 1)
	mustReject(t, b)
	if len(rejectedIn) != 1 || rejectedIn[0] != Open || len(resultIn) != 1 || resultIn[0] != Open {
		t.Fatalf("listeners saw reject %v result %v, want [open] [open]", rejectedIn, resultIn)
	}
}

package breaker

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// New's real clock, driven by the fake time of a synctest bubble: the
// breaker half-opens exactly when its timeout ran out and measures slow
// calls. Sleeping inside the bubble advances the fake clock at once; no
// real time passes.
func TestRealClockInSynctestBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(Config{FailureThreshold: 1, SuccessThreshold: 1, Timeout: time.Minute, SlowCallDuration: time.Second})
		err := b.Execute(context.Background(), func(ctx context.Context) error {
			time.Sleep(2 * time.Second) // a slow call, in fake time
			return context.DeadlineExceeded
		})
		if err == nil || b.State() != Open {
			t.Fatalf("Execute = %v, state %v; want the error, open", err, b.State())
		}
		if m := b.Metrics(); m.SlowCalls != 1 || m.OpenRemaining != time.Minute {
			t.Fatalf("slow calls %d, open remaining %v; want 1, 1m", m.SlowCalls, m.OpenRemaining)
		}
		time.Sleep(time.Minute - time.Nanosecond)
		if got := b.State(); got != Open {
			t.Fatalf("State 1ns before the timeout = %v, want open", got)
		}
		time.Sleep(time.Nanosecond)
		if got := b.State(); got != HalfOpen {
			t.Fatalf("State at the timeout = %v, want half-open", got)
		}
		if err := b.Execute(context.Background(), func(context.Context) error { return nil }); err != nil || b.State() != Closed {
			t.Fatalf("probe = %v, state %v; want nil, closed", err, b.State())
		}
	})
}

// A registry's breakers get the real clock too.
func TestRegistryRealClockInSynctestBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(RegistryConfig{Breaker: Config{FailureThreshold: 1, Timeout: time.Second}, MaxKeys: 1})
		b := r.Get("x")
		p, _ := b.Allow()
		p.Done(Failure)
		time.Sleep(time.Second)
		if got := b.State(); got != HalfOpen {
			t.Fatalf("State = %v, want half-open", got)
		}
	})
}

package breaker

import (
	"testing"
	"time"
)

// call is one step of a window scenario: an outcome, whether it is slow, and
// how long to advance the clock before it.
type call struct {
	o     Outcome
	slow  bool
	after time.Duration
}

func calls(o Outcome, n int) []call {
	c := make([]call, n)
	for i := range c {
		c[i].o = o
	}
	return c
}

func seq(parts ...[]call) []call {
	var all []call
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

func TestThresholds(t *testing.T) {
	const sec = time.Second
	tests := []struct {
		name   string
		cfg    Config
		calls  []call
		want   State
		reason Reason
	}{
		{"failure rate reached at minimum calls",
			Config{FailureRateThreshold: 50, MinimumCalls: 4, WindowSize: 10},
			seq(calls(Success, 2), calls(Failure, 2)), Open, ReasonFailureRate},
		{"failure rate below threshold",
			Config{FailureRateThreshold: 50, MinimumCalls: 4, WindowSize: 10},
			seq(calls(Success, 3), calls(Failure, 2)), Closed, 0},
		{"failure rate above threshold but too few calls",
			Config{FailureRateThreshold: 50, MinimumCalls: 4, WindowSize: 10},
			calls(Failure, 3), Closed, 0},
		{"a success reaching the minimum trips a high rate",
			Config{FailureRateThreshold: 50, MinimumCalls: 4, WindowSize: 10},
			seq(calls(Failure, 3), calls(Success, 1)), Open, ReasonFailureRate},
		{"ignored calls are not in the window",
			Config{FailureRateThreshold: 50, MinimumCalls: 4, WindowSize: 10},
			seq(calls(Failure, 3), calls(Ignored, 5)), Closed, 0},
		{"rate alone disables the consecutive default",
			Config{FailureRateThreshold: 100, MinimumCalls: 10, WindowSize: 10},
			calls(Failure, 9), Closed, 0},
		{"consecutive and rate together: consecutive first",
			Config{FailureThreshold: 2, FailureRateThreshold: 100, MinimumCalls: 10, WindowSize: 10},
			calls(Failure, 2), Open, ReasonConsecutiveFailures},
		{"old failures leave a count window",
			Config{FailureRateThreshold: 50, MinimumCalls: 4, WindowSize: 4},
			seq(calls(Failure, 1), calls(Success, 3), calls(Success, 1), calls(Failure, 1), calls(Success, 1), calls(Failure, 1)), Open, ReasonFailureRate},
		{"count window rate stays below after eviction",
			Config{FailureRateThreshold: 75, MinimumCalls: 4, WindowSize: 4},
			seq(calls(Failure, 2), calls(Success, 2), calls(Failure, 2)), Closed, 0},
		{"slow-call rate",
			Config{SlowCallDuration: sec, SlowCallRateThreshold: 50, MinimumCalls: 2, WindowSize: 10},
			[]call{{o: Success}, {o: Success, slow: true}}, Open, ReasonSlowCallRate},
		{"slow failures count as slow and failed",
			Config{SlowCallDuration: sec, SlowCallRateThreshold: 100, FailureRateThreshold: 100, MinimumCalls: 2, WindowSize: 10},
			[]call{{o: Failure, slow: true}, {o: Failure, slow: true}}, Open, ReasonFailureRate},
		{"slow-call rate below threshold",
			Config{SlowCallDuration: sec, SlowCallRateThreshold: 50, MinimumCalls: 3, WindowSize: 10},
			[]call{{o: Success}, {o: Success}, {o: Success, slow: true}}, Closed, 0},
		{"slow calls without a rate threshold never trip",
			Config{SlowCallDuration: sec, FailureThreshold: 1},
			[]call{{o: Success, slow: true}, {o: Success, slow: true}}, Closed, 0},
		{"time window holds calls within the period",
			Config{WindowType: TimeWindow, WindowPeriod: 10 * sec, WindowBuckets: 10, FailureRateThreshold: 50, MinimumCalls: 4},
			[]call{{o: Failure}, {o: Failure, after: 3 * sec}, {o: Success, after: 3 * sec}, {o: Success, after: 3 * sec}}, Open, ReasonFailureRate},
		{"time window forgets expired buckets",
			Config{WindowType: TimeWindow, WindowPeriod: 10 * sec, WindowBuckets: 10, FailureRateThreshold: 50, MinimumCalls: 4},
			[]call{{o: Failure}, {o: Failure}, {o: Success, after: 10 * sec}, {o: Success}, {o: Failure}}, Closed, 0},
		{"time window minimum calls counts unexpired calls only",
			Config{WindowType: TimeWindow, WindowPeriod: 10 * sec, WindowBuckets: 5, FailureRateThreshold: 50, MinimumCalls: 3},
			[]call{{o: Failure}, {o: Failure}, {o: Failure, after: 10 * sec}}, Closed, 0},
		{"time window consecutive failures still trip",
			Config{WindowType: TimeWindow, FailureThreshold: 3, FailureRateThreshold: 90, MinimumCalls: 100},
			calls(Failure, 3), Open, ReasonConsecutiveFailures},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); err != nil {
				t.Fatalf("invalid test config: %v", err)
			}
			var ev events
			tt.cfg.OnStateChange = ev.listen
			b, clk := newFake(tt.cfg)
			for i, c := range tt.calls {
				clk.advance(c.after)
				if s := b.State(); s != Closed {
					t.Fatalf("call %d: state %v before the last call", i, s)
				}
				p := mustAllow(t, b)
				d := time.Duration(0)
				if c.slow {
					d = time.Second
				}
				p.DoneDuration(c.o, d)
			}
			if got := b.State(); got != tt.want {
				t.Fatalf("State = %v, want %v (metrics %+v)", got, tt.want, b.Metrics())
			}
			if tt.want == Open && (len(ev.list) != 1 || ev.list[0].Reason != tt.reason) {
				t.Fatalf("events %+v, want one for %v", ev.list, tt.reason)
			}
		})
	}
}

func TestSlowCallMeasuredFromAllow(t *testing.T) {
	b, clk := newFake(Config{SlowCallDuration: time.Second, SlowCallRateThreshold: 100, MinimumCalls: 1, WindowSize: 5})
	p := mustAllow(t, b)
	clk.advance(time.Second - 1)
	p.Done(Success)
	if got := b.State(); got != Closed {
		t.Fatalf("State = %v after a call 1ns under the slow duration, want closed", got)
	}
	p = mustAllow(t, b)
	clk.advance(time.Second)
	p.Done(Success)
	// 1 slow call of 2 = 50%, below 100%.
	if m := b.Metrics(); m.SlowCalls != 1 || m.WindowSlowCalls != 1 || m.SlowCallRate != 50 {
		t.Fatalf("metrics slow %d window slow %d rate %v, want 1, 1, 50", m.SlowCalls, m.WindowSlowCalls, m.SlowCallRate)
	}
}

func TestTimeWindowExpiry(t *testing.T) {
	const bucket = time.Second
	w := newTimeWindow(bucket, 4, nil)
	tests := []struct {
		at                    time.Duration
		add                   bool // record a failure at this time
		calls, failures, slow int64
	}{
		{0, true, 1, 1, 0},
		{bucket - 1, true, 2, 2, 0},
		{bucket, true, 3, 3, 0},
		{4*bucket - 1, false, 3, 3, 0}, // epochs 0..3: everything is in
		{4 * bucket, false, 1, 1, 0},   // epoch 0 left, epoch 1 remains
		{5 * bucket, false, 0, 0, 0},   // epoch 1 left
		{5 * bucket, true, 1, 1, 0},    // reusing the bucket of epoch 1: starts from zero
		{100 * bucket, false, 0, 0, 0}, // a long pause forgets everything
	}
	for _, tt := range tests {
		var c, f, s int64
		if tt.add {
			c, f, s = w.add(true, false, tt.at)
		} else {
			c, f, s = w.counts(tt.at)
		}
		if c != tt.calls || f != tt.failures || s != tt.slow {
			t.Fatalf("at %v: calls %d failures %d slow %d, want %d %d %d", tt.at, c, f, s, tt.calls, tt.failures, tt.slow)
		}
	}
}

func TestCountWindowEviction(t *testing.T) {
	w := newCountWindow(3)
	tests := []struct {
		failed, slow           bool
		calls, failures, slows int64
	}{
		{true, true, 1, 1, 1},
		{false, false, 2, 1, 1},
		{true, false, 3, 2, 1},
		{false, false, 3, 1, 0}, // evicts the first (failed, slow)
		{false, true, 3, 1, 1},  // evicts a success
		{false, false, 3, 0, 1}, // evicts the second failure
	}
	for i, tt := range tests {
		c, f, s := w.add(tt.failed, tt.slow, 0)
		if c != tt.calls || f != tt.failures || s != tt.slows {
			t.Fatalf("add %d: calls %d failures %d slow %d, want %d %d %d", i, c, f, s, tt.calls, tt.failures, tt.slows)
		}
	}
}

func TestMetricsWindowRates(t *testing.T) {
	b, _ := newFake(Config{FailureRateThreshold: 90, WindowSize: 8, MinimumCalls: 8})
	run(t, b, Failure, 1)
	run(t, b, Success, 3)
	m := b.Metrics()
	if m.WindowCalls != 4 || m.WindowFailures != 1 || m.FailureRate != 25 || m.Calls != 4 || m.State != Closed {
		t.Fatalf("metrics %+v, want 4 calls, 1 failure, 25%%", m)
	}
}

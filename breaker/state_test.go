package breaker

import (
	"context"
	"errors"
	"testing"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

func TestClosedToOpenConsecutiveFailures(t *testing.T) {
	tests := []struct {
		name      string
		threshold int
		calls     []Outcome
		want      State
	}{
		{"default threshold not reached", 0, []Outcome{Failure, Failure, Failure, Failure}, Closed},
		{"default threshold reached", 0, []Outcome{Failure, Failure, Failure, Failure, Failure}, Open},
		{"success resets the run", 3, []Outcome{Failure, Failure, Success, Failure, Failure}, Closed},
		{"ignored does not reset the run", 3, []Outcome{Failure, Failure, Ignored, Failure}, Open},
		{"threshold one", 1, []Outcome{Success, Failure}, Open},
		{"only successes", 1, []Outcome{Success, Success, Success}, Closed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev events
			b, _ := newFake(Config{FailureThreshold: tt.threshold, OnStateChange: ev.listen})
			for _, o := range tt.calls {
				mustAllow(t, b).Done(o)
			}
			if got := b.State(); got != tt.want {
				t.Fatalf("State = %v, want %v", got, tt.want)
			}
			if tt.want == Open {
				want := []StateChange{{From: Closed, To: Open, Reason: ReasonConsecutiveFailures, OpenFor: DefaultTimeout}}
				assertEvents(t, ev.list, want)
			} else if len(ev.list) != 0 {
				t.Fatalf("events %v, want none", ev.list)
			}
		})
	}
}

func TestOpenRejectsUntilTimeout(t *testing.T) {
	const timeout = 10 * time.Second
	var rejected []*OpenError
	b, clk := newFake(Config{FailureThreshold: 1, Timeout: timeout, OnReject: func(e *OpenError) { rejected = append(rejected, e) }})
	mustAllow(t, b).Done(Failure)

	clk.advance(timeout - time.Nanosecond)
	oe := mustReject(t, b)
	if !errors.Is(oe, resilience.ErrCircuitOpen) {
		t.Errorf("errors.Is(%v, ErrCircuitOpen) = false", oe)
	}
	if oe.State() != Open || oe.Forced() {
		t.Errorf("OpenError state %v forced %v, want open, not forced", oe.State(), oe.Forced())
	}
	if got := oe.Remaining(); got != time.Nanosecond {
		t.Errorf("Remaining = %v, want 1ns", got)
	}
	if len(rejected) != 1 || rejected[0] != oe {
		t.Errorf("OnReject got %v, want the rejection's error once", rejected)
	}
	if got := b.State(); got != Open {
		t.Fatalf("State 1ns before the timeout = %v, want open", got)
	}

	clk.advance(time.Nanosecond)
	if got := b.State(); got != HalfOpen {
		t.Fatalf("State at the timeout = %v, want half-open", got)
	}
	if got := oe.Remaining(); got != 0 {
		t.Errorf("Remaining after half-open = %v, want 0", got)
	}
	if m := b.Metrics(); m.Rejections != 1 {
		t.Errorf("Metrics.Rejections = %d, want 1", m.Rejections)
	}
}

func TestHalfOpen(t *testing.T) {
	type step struct {
		outcome Outcome
		slow    bool
	}
	tests := []struct {
		name   string
		cfg    Config
		probes []step // recorded one after the other
		want   State
		reason Reason
	}{
		{"success threshold closes", Config{SuccessThreshold: 2}, []step{{Success, false}, {Success, false}}, Closed, ReasonProbesSucceeded},
		{"one success of two stays half-open", Config{SuccessThreshold: 2}, []step{{Success, false}}, HalfOpen, ReasonTimeoutElapsed},
		{"failure reopens", Config{SuccessThreshold: 2}, []step{{Success, false}, {Failure, false}}, Open, ReasonProbeFailed},
		{"ignored counts nothing", Config{SuccessThreshold: 1}, []step{{Ignored, false}}, HalfOpen, ReasonTimeoutElapsed},
		{"ignored then success closes", Config{SuccessThreshold: 1}, []step{{Ignored, false}, {Success, false}}, Closed, ReasonProbesSucceeded},
		{"slow success reopens with a slow-call rate", Config{SuccessThreshold: 1, SlowCallDuration: time.Second, SlowCallRateThreshold: 50, FailureThreshold: 1}, []step{{Success, true}}, Open, ReasonProbeFailed},
		{"slow success closes without a slow-call rate", Config{SuccessThreshold: 1, SlowCallDuration: time.Second}, []step{{Success, true}}, Closed, ReasonProbesSucceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev events
			tt.cfg.FailureThreshold = 1
			tt.cfg.OnStateChange = ev.listen
			b, clk := newFake(tt.cfg)
			mustAllow(t, b).Done(Failure)
			clk.advance(DefaultTimeout)
			for _, s := range tt.probes {
				p := mustAllow(t, b)
				if p.State() != HalfOpen {
					t.Fatalf("permit state %v, want half-open", p.State())
				}
				if s.slow {
					clk.advance(time.Second)
				}
				p.Done(s.outcome)
			}
			if got := b.State(); got != tt.want {
				t.Fatalf("State = %v, want %v", got, tt.want)
			}
			if last := ev.list[len(ev.list)-1]; last.Reason != tt.reason || last.To != tt.want {
				t.Fatalf("last event %+v, want to %v for %v", last, tt.want, tt.reason)
			}
		})
	}
}

func TestHalfOpenProbeLimit(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want int
	}{
		{"defaults to SuccessThreshold", Config{SuccessThreshold: 3}, 3},
		{"explicit limit", Config{SuccessThreshold: 3, MaxHalfOpenProbes: 1}, 1},
		{"more probes than needed", Config{SuccessThreshold: 1, MaxHalfOpenProbes: 4}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.FailureThreshold = 1
			b, clk := newFake(tt.cfg)
			mustAllow(t, b).Done(Failure)
			clk.advance(DefaultTimeout)
			var probes []Permit
			for range tt.want {
				probes = append(probes, mustAllow(t, b))
			}
			oe := mustReject(t, b)
			if oe.State() != HalfOpen || !errors.Is(oe, resilience.ErrCircuitOpen) {
				t.Fatalf("rejection %v in state %v, want half-open ErrCircuitOpen", oe, oe.State())
			}
			if m := b.Metrics(); m.HalfOpenProbes != tt.want {
				t.Fatalf("Metrics.HalfOpenProbes = %d, want %d", m.HalfOpenProbes, tt.want)
			}
			// Ignoring a probe frees its slot for one more.
			probes[0].Done(Ignored)
			probes[0] = mustAllow(t, b)
			mustReject(t, b)
			for _, p := range probes {
				p.Done(Ignored)
			}
		})
	}
}

func TestStaleResultsAreDiscarded(t *testing.T) {
	var results []Result
	b, clk := newFake(Config{FailureThreshold: 2, SuccessThreshold: 1, OnResult: func(r Result) { results = append(results, r) }})
	old := mustAllow(t, b)
	run(t, b, Failure, 2) // opens
	old.Done(Failure)     // from the closed generation: discarded
	clk.advance(DefaultTimeout)
	probe := mustAllow(t, b)
	old.Done(Success) // would close it if counted
	if got := b.State(); got != HalfOpen {
		t.Fatalf("State = %v after a stale success, want half-open", got)
	}
	probe.Done(Success)
	if got := b.State(); got != Closed {
		t.Fatalf("State = %v after the probe succeeded, want closed", got)
	}
	staleProbe := probe
	staleProbe.Done(Failure) // recorded twice, from an older generation: discarded
	if got := b.State(); got != Closed {
		t.Fatalf("State = %v after a stale probe failure, want closed", got)
	}
	m := b.Metrics()
	if m.Discarded != 3 || m.Failures != 2 || m.Successes != 1 {
		t.Fatalf("Metrics discarded %d failures %d successes %d, want 3, 2, 1", m.Discarded, m.Failures, m.Successes)
	}
	var discarded int
	for _, r := range results {
		if r.Discarded {
			discarded++
		}
	}
	if discarded != 3 || len(results) != 6 {
		t.Fatalf("OnResult saw %d results, %d discarded; want 6, 3", len(results), discarded)
	}
}

func TestOpenDurationGenerator(t *testing.T) {
	var ev events
	b, clk := newFake(Config{
		FailureThreshold: 1,
		SuccessThreshold: 1,
		OpenDurationFunc: ExponentialOpenDuration(time.Second, 5*time.Second, 2),
		OnStateChange:    ev.listen,
	})
	wantOpenFor := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	mustAllow(t, b).Done(Failure)
	for i, want := range wantOpenFor {
		if m := b.Metrics(); m.OpenRemaining != want || m.ConsecutiveOpens != i+1 {
			t.Fatalf("open #%d: remaining %v, consecutive opens %d; want %v, %d", i+1, m.OpenRemaining, m.ConsecutiveOpens, want, i+1)
		}
		clk.advance(want - 1)
		mustReject(t, b)
		clk.advance(1)
		mustAllow(t, b).Done(Failure) // the probe fails: opens again, longer
	}
	// A success closes it and starts over from the initial duration.
	clk.advance(5 * time.Second)
	mustAllow(t, b).Done(Success)
	mustAllow(t, b).Done(Failure)
	if m := b.Metrics(); m.OpenRemaining != time.Second || m.ConsecutiveOpens != 1 {
		t.Fatalf("after closing: remaining %v, opens %d; want 1s, 1", m.OpenRemaining, m.ConsecutiveOpens)
	}
	var got []time.Duration
	for _, e := range ev.list {
		if e.To == Open {
			got = append(got, e.OpenFor)
		}
	}
	want := append(wantOpenFor, 5*time.Second, time.Second)
	if len(got) != len(want) {
		t.Fatalf("OpenFor of the open events %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("OpenFor of the open events %v, want %v", got, want)
		}
	}
}

func TestOpenDurationNonPositiveMeansTimeout(t *testing.T) {
	b, _ := newFake(Config{FailureThreshold: 1, Timeout: 3 * time.Second, OpenDurationFunc: func(int) time.Duration { return -1 }})
	mustAllow(t, b).Done(Failure)
	if got := b.Metrics().OpenRemaining; got != 3*time.Second {
		t.Fatalf("OpenRemaining = %v, want Timeout 3s", got)
	}
}

func TestManualModes(t *testing.T) {
	tests := []struct {
		name      string
		before    func(b *Breaker, clk *fakeClock) // brings the breaker into a state
		op        func(b *Breaker)
		wantState State
		wantMode  Mode
		wantEvent *StateChange
	}{
		{"force open from closed", nil, (*Breaker).ForceOpen, Open, ForcedOpen,
			&StateChange{From: Closed, To: Open, Mode: ForcedOpen, Reason: ReasonForcedOpen}},
		{"force open from half-open", halfOpen, (*Breaker).ForceOpen, Open, ForcedOpen,
			&StateChange{From: HalfOpen, To: Open, Mode: ForcedOpen, Reason: ReasonForcedOpen}},
		{"force closed from open", open, (*Breaker).ForceClosed, Closed, ForcedClosed,
			&StateChange{From: Open, To: Closed, Mode: ForcedClosed, Reason: ReasonForcedClosed}},
		{"force closed from closed changes the mode only", nil, (*Breaker).ForceClosed, Closed, ForcedClosed,
			&StateChange{From: Closed, To: Closed, Mode: ForcedClosed, Reason: ReasonForcedClosed}},
		{"reset from open", open, (*Breaker).Reset, Closed, Auto,
			&StateChange{From: Open, To: Closed, Reason: ReasonReset}},
		{"reset from forced open", func(b *Breaker, _ *fakeClock) { b.ForceOpen() }, (*Breaker).Reset, Closed, Auto,
			&StateChange{From: Open, To: Closed, Reason: ReasonReset}},
		{"reset from forced closed", func(b *Breaker, _ *fakeClock) { b.ForceClosed() }, (*Breaker).Reset, Closed, Auto,
			&StateChange{From: Closed, To: Closed, Reason: ReasonReset}},
		{"reset from closed is silent", nil, (*Breaker).Reset, Closed, Auto, nil},
		{"force open twice is one change", func(b *Breaker, _ *fakeClock) { b.ForceOpen() }, (*Breaker).ForceOpen, Open, ForcedOpen, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev events
			b, clk := newFake(Config{FailureThreshold: 1, OnStateChange: ev.listen})
			if tt.before != nil {
				tt.before(b, clk)
			}
			n := len(ev.list)
			tt.op(b)
			if s, m := b.State(), b.Mode(); s != tt.wantState || m != tt.wantMode {
				t.Fatalf("state %v mode %v, want %v %v", s, m, tt.wantState, tt.wantMode)
			}
			got := ev.list[n:]
			if tt.wantEvent == nil {
				if len(got) != 0 {
					t.Fatalf("events %+v, want none", got)
				}
				return
			}
			assertEvents(t, got, []StateChange{*tt.wantEvent})
		})
	}
}

// open opens a breaker with FailureThreshold 1.
func open(b *Breaker, _ *fakeClock) {
	p, _ := b.Allow()
	p.Done(Failure)
}

// halfOpen half-opens a breaker with FailureThreshold 1.
func halfOpen(b *Breaker, clk *fakeClock) {
	open(b, clk)
	clk.advance(DefaultTimeout)
	b.State()
}

func TestForcedOpenRejectsForever(t *testing.T) {
	b, clk := newFake(Config{})
	p := mustAllow(t, b)
	b.ForceOpen()
	p.Done(Success) // discarded: the breaker changed state
	clk.advance(100 * DefaultTimeout)
	oe := mustReject(t, b)
	if !oe.Forced() || oe.Remaining() != 0 {
		t.Fatalf("rejection forced %v remaining %v, want forced with no end", oe.Forced(), oe.Remaining())
	}
	if got := b.State(); got != Open {
		t.Fatalf("State = %v, want open", got)
	}
	if m := b.Metrics(); m.Discarded != 1 || m.Successes != 0 {
		t.Fatalf("Metrics discarded %d successes %d, want 1, 0", m.Discarded, m.Successes)
	}
}

func TestForcedClosedNeverOpens(t *testing.T) {
	b, _ := newFake(Config{FailureThreshold: 1, FailureRateThreshold: 1, MinimumCalls: 1})
	b.ForceClosed()
	run(t, b, Failure, 50)
	if got := b.State(); got != Closed {
		t.Fatalf("State = %v, want closed", got)
	}
	if m := b.Metrics(); m.Failures != 50 || m.Mode != ForcedClosed {
		t.Fatalf("Metrics failures %d mode %v, want 50 forced-closed", m.Failures, m.Mode)
	}
	// Back to auto: counting starts afresh.
	b.Reset()
	mustAllow(t, b).Done(Failure)
	if got := b.State(); got != Open {
		t.Fatalf("State after Reset and a failure = %v, want open", got)
	}
}

func TestResetClearsCounts(t *testing.T) {
	b, _ := newFake(Config{FailureThreshold: 3, FailureRateThreshold: 50, MinimumCalls: 4, WindowSize: 4})
	run(t, b, Failure, 2)
	b.Reset()
	m := b.Metrics()
	if m.ConsecutiveFailures != 0 || m.WindowCalls != 0 || m.Failures != 2 {
		t.Fatalf("after Reset: consecutive %d window %d cumulative failures %d; want 0, 0, 2", m.ConsecutiveFailures, m.WindowCalls, m.Failures)
	}
	run(t, b, Failure, 2)
	if got := b.State(); got != Closed {
		t.Fatalf("State = %v, want closed: the failures before Reset must not count", got)
	}
}

func TestExecute(t *testing.T) {
	errBoom := errors.New("boom")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		cfg     Config
		fn      func(context.Context) error
		wantErr error
		want    Outcome // the recorded outcome
		ran     bool
	}{
		{"success", context.Background(), Config{}, func(context.Context) error { return nil }, nil, Success, true},
		{"failure", context.Background(), Config{}, func(context.Context) error { return errBoom }, errBoom, Failure, true},
		{"canceled error is ignored", context.Background(), Config{}, func(context.Context) error { return context.Canceled }, context.Canceled, Ignored, true},
		{"deadline is a failure", context.Background(), Config{}, func(context.Context) error { return context.DeadlineExceeded }, context.DeadlineExceeded, Failure, true},
		{"custom classification", context.Background(), Config{Classify: func(error) Outcome { return Ignored }}, func(context.Context) error { return errBoom }, errBoom, Ignored, true},
		{"caller already gone", canceled, Config{}, func(context.Context) error { return nil }, context.Canceled, Ignored, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []Result
			tt.cfg.OnResult = func(r Result) { got = append(got, r) }
			b, _ := newFake(tt.cfg)
			ran := false
			err := b.Execute(tt.ctx, func(ctx context.Context) error {
				ran = true
				return tt.fn(ctx)
			})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Execute = %v, want %v", err, tt.wantErr)
			}
			if ran != tt.ran {
				t.Fatalf("fn ran = %v, want %v", ran, tt.ran)
			}
			if !tt.ran {
				if len(got) != 0 {
					t.Fatalf("results %v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].Outcome != tt.want {
				t.Fatalf("results %+v, want one %v", got, tt.want)
			}
		})
	}
}

func TestExecuteCallerCancelledWhileRunning(t *testing.T) {
	b, _ := newFake(Config{FailureThreshold: 1})
	ctx, cancel := context.WithCancel(context.Background())
	err := b.Execute(ctx, func(context.Context) error {
		cancel()
		return errors.New("call aborted") // whatever fn makes of it
	})
	if err == nil || b.State() != Closed {
		t.Fatalf("Execute = %v, state %v; want the error, still closed", err, b.State())
	}
	if m := b.Metrics(); m.Ignored != 1 || m.Failures != 0 {
		t.Fatalf("ignored %d failures %d, want 1, 0", m.Ignored, m.Failures)
	}
}

func TestExecuteRejects(t *testing.T) {
	b, _ := newFake(Config{FailureThreshold: 1})
	b.Execute(context.Background(), func(context.Context) error { return errors.New("down") })
	ran := false
	err := b.Execute(context.Background(), func(context.Context) error { ran = true; return nil })
	var oe *OpenError
	if ran || !errors.Is(err, resilience.ErrCircuitOpen) || !errors.As(err, &oe) {
		t.Fatalf("Execute on an open breaker: ran %v, err %v; want not run, *OpenError", ran, err)
	}
}

func TestExecutePanicIsAFailure(t *testing.T) {
	b, _ := newFake(Config{FailureThreshold: 1})
	func() {
		defer func() {
			if r := recover(); r != "kaboom" {
				t.Fatalf("recovered %v, want the panic to propagate", r)
			}
		}()
		b.Execute(context.Background(), func(context.Context) error { panic("kaboom") })
	}()
	if got := b.State(); got != Open {
		t.Fatalf("State = %v after a panic, want open", got)
	}
}

func TestZeroPermitIsInert(t *testing.T) {
	var p Permit
	p.Done(Failure)
	p.Record(errors.New("x"))
	p.DoneDuration(Success, time.Second)
	if p.State() != Closed {
		t.Fatalf("zero permit state %v", p.State())
	}
}

func TestOutOfRangeOutcomeIsAFailure(t *testing.T) {
	b, _ := newFake(Config{FailureThreshold: 1})
	mustAllow(t, b).Done(Outcome(42))
	if got := b.State(); got != Open {
		t.Fatalf("State = %v, want open", got)
	}
}

func TestOpenErrorText(t *testing.T) {
	tests := []struct {
		name string
		mk   func(b *Breaker) *OpenError
		want string
	}{
		{"", func(b *Breaker) *OpenError { return b.errOpen }, "breaker: circuit open"},
		{"users", func(b *Breaker) *OpenError { return b.errOpen }, `breaker "users": circuit open`},
		{"users", func(b *Breaker) *OpenError { return b.errForced }, `breaker "users": circuit forced open`},
		{"users", func(b *Breaker) *OpenError { return b.errProbes }, `breaker "users": circuit half-open, every probe slot taken`},
	}
	for _, tt := range tests {
		b, _ := newFake(Config{Name: tt.name})
		e := tt.mk(b)
		if e.Error() != tt.want || e.Name() != tt.name {
			t.Errorf("Error() = %q name %q, want %q %q", e.Error(), e.Name(), tt.want, tt.name)
		}
	}
}

func TestStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{Closed.String(), "closed"}, {Open.String(), "open"}, {HalfOpen.String(), "half-open"}, {State(9).String(), "State(9)"},
		{Auto.String(), "auto"}, {ForcedOpen.String(), "forced-open"}, {ForcedClosed.String(), "forced-closed"}, {Mode(9).String(), "Mode(9)"},
		{Success.String(), "success"}, {Failure.String(), "failure"}, {Ignored.String(), "ignored"}, {Outcome(9).String(), "Outcome(9)"},
		{ReasonConsecutiveFailures.String(), "consecutive-failures"}, {ReasonReset.String(), "reset"}, {Reason(0).String(), "Reason(0)"}, {Reason(99).String(), "Reason(99)"},
		{CountWindow.String(), "count"}, {TimeWindow.String(), "time"}, {WindowType(9).String(), "WindowType(9)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("String() = %q, want %q", tt.got, tt.want)
		}
	}
}

func assertEvents(t *testing.T, got, want []StateChange) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("events %+v, want %+v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestZeroOpenError(t *testing.T) {
	var e OpenError
	if e.Error() != "breaker: circuit open" || e.Name() != "" || e.Remaining() != 0 || !errors.Is(&e, resilience.ErrCircuitOpen) {
		t.Fatalf("zero OpenError: %q %q %v", e.Error(), e.Name(), e.Remaining())
	}
}

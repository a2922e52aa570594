package throttle

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// always and never are draws that make every rejection happen or none.
func always() float64 { return 0 }
func never() float64  { return 1 }

func TestProbabilityMatchesFormula(t *testing.T) {
	for _, tc := range []struct {
		name             string
		k                float64
		accepts, rejects int
		want             float64
	}{
		{"all accepted", 2, 100, 0, 0},
		{"half refused, K 2", 2, 50, 50, 0},
		{"half refused, K 1.5", 1.5, 50, 50, (100 - 75) / 101.0},
		{"all refused", 2, 0, 100, 100 / 101.0},
		{"one in ten accepted, K 2", 2, 10, 90, (100 - 20) / 101.0},
		{"K 1 with a failure", 1, 99, 1, 1 / 101.0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			th, _ := newFake(Config{K: tc.k, MinRequests: 1}, never)
			record(t, th, Accepted, tc.accepts)
			record(t, th, Rejected, tc.rejects)
			m := th.Metrics()
			if m.Requests != uint64(tc.accepts+tc.rejects) || m.Accepts != uint64(tc.accepts) {
				t.Fatalf("counts %d/%d, want %d/%d", m.Requests, m.Accepts, tc.accepts+tc.rejects, tc.accepts)
			}
			if math.Abs(m.Probability-tc.want) > 1e-12 || math.Abs(th.Probability()-tc.want) > 1e-12 {
				t.Fatalf("probability %v (Metrics) %v (Probability), want %v", m.Probability, th.Probability(), tc.want)
			}
		})
	}
}

func TestRejectsAgainstTheDraw(t *testing.T) {
	draw := 0.5
	th, clk := newFake(Config{MinRequests: 1}, func() float64 { return draw })
	record(t, th, Rejected, 9) // p = 9/10
	clk.advance(time.Millisecond)
	// The first rejection of all is the pass: the throttle has let none
	// through against the odds yet.
	if _, err := th.Allow(); err != nil {
		t.Fatalf("first draw against the odds: %v, want the pass", err)
	}
	_, err := th.Allow()
	if !errors.Is(err, resilience.ErrThrottled) {
		t.Fatalf("Allow = %v, want ErrThrottled", err)
	}
	if re, ok := errors.AsType[*RejectedError](err); !ok || re.Probability != 0.9 {
		t.Fatalf("Allow = %#v, want a *RejectedError drawn against 0.9", err)
	}
	m := th.Metrics()
	if m.Rejected != 1 || m.Requests != 10 {
		t.Fatalf("Rejected %d Requests %d, want 1 and 10: a rejection counts as a request", m.Rejected, m.Requests)
	}
	draw = 0.95 // above p = 10/11
	if _, err := th.Allow(); err != nil {
		t.Fatalf("draw above the probability rejected: %v", err)
	}
}

func TestMinRequests(t *testing.T) {
	th, _ := newFake(Config{}, always)
	record(t, th, Rejected, DefaultMinRequests-1)
	if p := th.Probability(); p != 0 {
		t.Fatalf("probability %v with %d requests, want 0 below MinRequests", p, DefaultMinRequests-1)
	}
	record(t, th, Rejected, 1)
	if p := th.Probability(); p <= 0 {
		t.Fatalf("probability %v at MinRequests, want > 0", p)
	}
}

func TestPassInterval(t *testing.T) {
	th, clk := newFake(Config{MinRequests: 1, PassInterval: time.Second}, always)
	record(t, th, Rejected, 50)
	if _, err := th.Allow(); err != nil {
		t.Fatalf("first pass: %v", err)
	}
	for i := range 10 {
		clk.advance(50 * time.Millisecond)
		if _, err := th.Allow(); err == nil {
			t.Fatalf("request %d passed within the pass interval", i)
		}
	}
	clk.advance(500 * time.Millisecond) // 1s since the pass
	if _, err := th.Allow(); err != nil {
		t.Fatalf("no pass after the interval: %v", err)
	}
}

func TestWindowSlides(t *testing.T) {
	th, clk := newFake(Config{Window: time.Second, Buckets: 10, MinRequests: 1}, never)
	record(t, th, Rejected, 100)
	for range 9 {
		clk.advance(100 * time.Millisecond)
		record(t, th, Accepted, 10)
	}
	m := th.Metrics()
	if m.Requests != 190 || m.Accepts != 90 {
		t.Fatalf("after 0.9s: %d/%d, want 190/90", m.Requests, m.Accepts)
	}
	clk.advance(100 * time.Millisecond) // the failures' bucket leaves
	m = th.Metrics()
	if m.Requests != 90 || m.Accepts != 90 || m.Probability != 0 {
		t.Fatalf("after 1s: %+v, want 90/90 and probability 0", m)
	}
	clk.advance(time.Second)
	if m = th.Metrics(); m.Requests != 0 {
		t.Fatalf("after 2s: %d requests, want an empty window", m.Requests)
	}
	if m.Window != time.Second || m.K != DefaultK || m.MinRequests != 1 {
		t.Fatalf("settings %v %v %v", m.Window, m.K, m.MinRequests)
	}
}

func TestEmptyWindow(t *testing.T) {
	th, clk := newFake(Config{}, always)
	for range 3 {
		if p := th.Probability(); p != 0 {
			t.Fatalf("probability %v of an empty window", p)
		}
		if !th.Idle() {
			t.Fatal("a throttle with no traffic is not idle")
		}
		record(t, th, Accepted, 1)
		clk.advance(time.Hour)
	}
}

func TestClockJumps(t *testing.T) {
	th, clk := newFake(Config{MinRequests: 1}, always)
	clk.set(5 * time.Second)
	record(t, th, Rejected, 30)
	clk.advance(1000 * time.Hour) // forward: everything is old
	if p := th.Probability(); p != 0 {
		t.Fatalf("probability %v after a jump forward, want 0", p)
	}
	record(t, th, Rejected, 30)
	clk.set(-3 * time.Hour) // backward, below the start
	if p := th.Probability(); p != 0 {
		t.Fatalf("probability %v after a jump back, want 0: the future does not count", p)
	}
	// Counting resumes in the past without panicking, and the window
	// fills again.
	th.rnd = never
	record(t, th, Rejected, 30)
	if p := th.Probability(); !(p > 0 && p < 1) {
		t.Fatalf("probability %v after refilling, want in (0, 1)", p)
	}
	clk.set(math.MaxInt64 - 1)
	record(t, th, Accepted, 1)
	clk.set(math.MinInt64 + 1)
	record(t, th, Accepted, 1)
}

func TestIgnoredCountsNothing(t *testing.T) {
	th, _ := newFake(Config{}, nil)
	record(t, th, Ignored, 100)
	Permit{}.Done(Rejected) // the zero permit does nothing
	if m := th.Metrics(); m.Requests != 0 || m.Accepts != 0 {
		t.Fatalf("counts %d/%d after ignored outcomes", m.Requests, m.Accepts)
	}
	record(t, th, Outcome(9), 1) // unknown outcomes are refusals
	if m := th.Metrics(); m.Requests != 1 || m.Accepts != 0 {
		t.Fatalf("counts %d/%d after an unknown outcome", m.Requests, m.Accepts)
	}
}

func TestExecute(t *testing.T) {
	th, _ := newFake(Config{MinRequests: 1}, always)
	boom := errors.New("boom")
	if err := th.Execute(context.Background(), func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := th.Execute(context.Background(), func(context.Context) error { return boom }); err != boom {
		t.Fatalf("Execute = %v, want fn's error unchanged", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	if err := th.Execute(ctx, func(context.Context) error { called = true; return nil }); err != context.Canceled || called {
		t.Fatalf("Execute on a done ctx = %v (called %v)", err, called)
	}
	func() {
		defer func() { _ = recover() }()
		_ = th.Execute(context.Background(), func(context.Context) error { panic("fn") })
	}()
	m := th.Metrics()
	if m.Requests != 3 || m.Accepts != 1 {
		t.Fatalf("counts %d/%d, want 3/1 (a panic is a refusal)", m.Requests, m.Accepts)
	}
	// 3 requests, 1 accept: p = 1/4; the pass was not used yet.
	if err := th.Execute(context.Background(), func(context.Context) error { return boom }); err != boom {
		t.Fatalf("pass: %v", err)
	}
	if err := th.Execute(context.Background(), func(context.Context) error { t.Fatal("ran"); return nil }); !errors.Is(err, resilience.ErrThrottled) {
		t.Fatalf("Execute = %v, want ErrThrottled", err)
	}
}

func TestExecuteCanceledIsIgnored(t *testing.T) {
	th, _ := newFake(Config{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	_ = th.Execute(ctx, func(ctx context.Context) error { cancel(); return errors.New("gave up") })
	_ = th.Execute(context.Background(), func(context.Context) error { return context.Canceled })
	if m := th.Metrics(); m.Requests != 0 {
		t.Fatalf("%d requests counted for calls their caller gave up", m.Requests)
	}
}

func TestOnReject(t *testing.T) {
	var got []float64
	th, _ := newFake(Config{MinRequests: 1, OnReject: func(p float64) { got = append(got, p) }}, always)
	record(t, th, Rejected, 9)
	_, _ = th.Allow() // the pass
	_, _ = th.Allow()
	if len(got) != 1 || got[0] != 9/10.0 {
		t.Fatalf("OnReject heard %v, want [0.9]", got)
	}
}

func TestValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	err := Config{K: 0.5, Window: -1, Buckets: -2, MinRequests: -3, PassInterval: -4}.Validate()
	want := []string{"K", "Buckets", "Window", "MinRequests", "PassInterval"}
	fes := resilience.FieldErrors(err)
	if len(fes) != len(want) {
		t.Fatalf("Validate = %v, want %d field errors", err, len(want))
	}
	for i, fe := range fes {
		if fe.Field != want[i] {
			t.Errorf("error %d on %s, want %s", i, fe.Field, want[i])
		}
	}
	for _, c := range []Config{{K: math.NaN()}, {K: math.Inf(1)}, {K: MaxK * 2}, {Buckets: MaxBuckets + 1}, {Window: 10 * time.Millisecond}, {Window: time.Second, Buckets: 2000}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
	// New treats invalid fields as their defaults.
	m := New(Config{K: -1, Window: time.Nanosecond, Buckets: -1, MinRequests: -1}).Metrics()
	if m.K != DefaultK || m.Window != DefaultWindow || m.MinRequests != DefaultMinRequests {
		t.Fatalf("New with invalid fields: %+v", m)
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{Accepted: "accepted", Rejected: "rejected", Ignored: "ignored", 7: "Outcome(7)"} {
		if o.String() != want {
			t.Errorf("%d.String() = %q, want %q", o, o.String(), want)
		}
	}
}

func TestAcceptPathAllocatesNothing(t *testing.T) {
	th, _ := newFake(Config{}, nil)
	record(t, th, Accepted, 1) // the first bucket
	if n := testing.AllocsPerRun(1000, func() {
		p, _ := th.Allow()
		p.Done(Accepted)
	}); n != 0 {
		t.Fatalf("Allow + Done(Accepted): %v allocations, want 0", n)
	}
	th2, _ := newFake(Config{MinRequests: 1}, always)
	record(t, th2, Rejected, 10)
	_, _ = th2.Allow() // the pass
	if n := testing.AllocsPerRun(1000, func() { _, _ = th2.Allow() }); n > 1 {
		t.Fatalf("a rejection: %v allocations, want its error alone", n)
	}
}

// TestConcurrentCounts checks, under -race, that concurrent records across
// bucket boundaries lose nothing outside the boundary and the probability
// stays in range.
func TestConcurrentCounts(t *testing.T) {
	th, clk := newFake(Config{Window: 10 * time.Hour, Buckets: 10}, nil)
	const goroutines, each = 8, 2000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				p, err := th.Allow()
				if err != nil {
					continue
				}
				if (g+i)%2 == 0 {
					p.Done(Accepted)
				} else {
					p.Done(Rejected)
				}
				if p := th.Probability(); !(p >= 0 && p < 1) {
					t.Errorf("probability %v", p)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			clk.advance(5 * time.Minute) // 100 of them stay within the window: nothing leaves
			_ = th.Metrics()
		}
	})
	wg.Wait()
	// A record racing with its bucket's replacement may land in the dead
	// bucket; with 100 replacements at most a few hundred go missing.
	if m := th.Metrics(); m.Requests+m.Rejected < goroutines*each-goroutines*100 || m.Requests > goroutines*each {
		t.Fatalf("requests %d, want about %d", m.Requests, goroutines*each)
	}
}

func TestLateOutcome(t *testing.T) {
	th, clk := newFake(Config{Window: time.Second, Buckets: 10, MinRequests: 1}, never)
	p, err := th.Allow()
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(2 * time.Second) // the permit's bucket has left the window
	for range 5 {                // in the bucket that took the permit's slot
		q, err := th.Allow()
		if err != nil {
			t.Fatal(err)
		}
		q.Done(Accepted)
	}
	p.Done(Rejected)
	if m := th.Metrics(); m.Requests != 6 || m.Accepts != 5 {
		t.Fatalf("counts %d/%d, want 6/5: a late outcome counts in the newer bucket without replacing it", m.Requests, m.Accepts)
	}
}

// TestStaleReaderKeepsCurrentBucket: a call that read the clock just
// before a bucket boundary and sums the window after it must not move the
// cached sums back, or the current bucket would look like one from a
// clock that went back and a late outcome would replace it.
func TestStaleReaderKeepsCurrentBucket(t *testing.T) {
	th, clk := newFake(Config{Window: time.Second, Buckets: 10, MinRequests: 1}, never)
	old := Permit{t: th, epoch: 0} // granted a window ago, in the slot of epoch 10
	clk.set(time.Second)           // epoch 10
	_ = th.Metrics()
	record(t, th, Accepted, 50)
	_, _ = th.counts(9) // a call that read the clock in epoch 9
	old.Done(Rejected)
	if m := th.Metrics(); m.Requests != 51 || m.Accepts != 50 {
		t.Fatalf("counts %d/%d, want 51/50: the current bucket was replaced", m.Requests, m.Accepts)
	}
	// A clock that goes back by a window or more still starts afresh.
	clk.set(-time.Second)
	if m := th.Metrics(); m.Requests != 0 {
		t.Fatalf("%d requests after the clock went back a window, want 0", m.Requests)
	}
	record(t, th, Rejected, 5)
	if m := th.Metrics(); m.Requests != 5 {
		t.Fatalf("%d requests after refilling, want 5", m.Requests)
	}
}

// TestLateOutcomeShowsAtOnce: an outcome recorded after its bucket
// completed counts in the window at once, not a bucket later.
func TestLateOutcomeShowsAtOnce(t *testing.T) {
	th, clk := newFake(Config{Window: time.Second, Buckets: 10, MinRequests: 1}, never)
	var permits []Permit
	for range 30 {
		p, err := th.Allow()
		if err != nil {
			t.Fatal(err)
		}
		permits = append(permits, p)
	}
	clk.advance(150 * time.Millisecond) // the permits' bucket is completed
	if m := th.Metrics(); m.Requests != 0 {
		t.Fatalf("%d requests before any outcome", m.Requests)
	}
	for i, p := range permits {
		if i%3 == 0 {
			p.Done(Accepted)
		} else {
			p.Done(Rejected)
		}
	}
	if m := th.Metrics(); m.Requests != 30 || m.Accepts != 10 || m.Probability == 0 {
		t.Fatalf("%+v, want 30 requests, 10 accepts and a probability above 0 at once", m)
	}
	clk.advance(100 * time.Millisecond) // recomputed: counted once
	if m := th.Metrics(); m.Requests != 30 || m.Accepts != 10 {
		t.Fatalf("after the next bucket: %d/%d, want 30/10", m.Requests, m.Accepts)
	}
	clk.advance(time.Second) // a late outcome out of the window counts nowhere visible
	permits[0].Done(Rejected)
	if m := th.Metrics(); m.Requests > 1 {
		t.Fatalf("%d requests after the window passed", m.Requests)
	}
}

// TestBucketSaturates: a full bucket counts no more, and its accepts
// never carry into its requests.
func TestBucketSaturates(t *testing.T) {
	th, _ := newFake(Config{MinRequests: 1}, never)
	b := &bucket{epoch: 0}
	b.counts.Store(uint64(MaxBucketCount-1)<<32 | (MaxBucketCount - 1))
	th.slot(0).Store(b)
	for range 3 {
		Permit{t: th}.Done(Accepted)
	}
	m := th.Metrics()
	if m.Requests != MaxBucketCount || m.Accepts != MaxBucketCount {
		t.Fatalf("%d/%d, want both saturated at %d", m.Requests, m.Accepts, uint64(MaxBucketCount))
	}
}

// TestOneSumPerBoundary: at a bucket boundary, one call recomputes the
// window's sums while the others use the previous sums and the bucket
// just completed; the counts agree.
func TestOneSumPerBoundary(t *testing.T) {
	th, clk := newFake(Config{Window: time.Second, Buckets: 10, MinRequests: 1}, never)
	for range 9 {
		record(t, th, Accepted, 3)
		record(t, th, Rejected, 1)
		clk.advance(100 * time.Millisecond)
		_ = th.Metrics()
	}
	record(t, th, Accepted, 3)
	clk.advance(100 * time.Millisecond)
	th.summing.Store(true) // as if another call were summing
	r, a := th.counts(th.epoch(clk.now()))
	th.summing.Store(false)
	// The stand-in still holds the bucket that is leaving: one bucket's
	// worth more than the exact sums.
	if r != 39 || a != 30 {
		t.Fatalf("stand-in counts %d/%d, want 39/30", r, a)
	}
	if m := th.Metrics(); m.Requests != 35 || m.Accepts != 27 {
		t.Fatalf("exact counts %d/%d, want 35/27", m.Requests, m.Accepts)
	}
	if n := testing.AllocsPerRun(100, func() {
		th.summing.Store(true)
		_, _ = th.counts(th.epoch(clk.now()) + 1)
		th.summing.Store(false)
	}); n != 0 {
		t.Fatalf("the stand-in allocates %v, want 0", n)
	}
}

package ratelimit

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

func TestZeroConfigAdmitsEverything(t *testing.T) {
	l, _ := newFake(Config{})
	for range 1000 {
		if !l.Allow() {
			t.Fatal("the zero Config refused a request")
		}
	}
	if !l.AllowN(time.Now(), 1<<40) {
		t.Fatal("the zero Config refused a large request")
	}
	if got := l.Tokens(); !math.IsInf(got, 1) {
		t.Fatalf("Tokens() = %v, want +Inf", got)
	}
	if l.Rate() != 0 || l.Burst() != 0 {
		t.Fatalf("Rate, Burst = %v, %v; want 0, 0", l.Rate(), l.Burst())
	}
	if m := l.Metrics(); m.Admitted != 1001 || m.Limited != 0 {
		t.Fatalf("Metrics = %+v", m)
	}
}

func TestDefaultBurstIsOneSecond(t *testing.T) {
	for _, tc := range []struct {
		rate  float64
		burst int
	}{{10, 10}, {0.5, 1}, {2.5, 3}, {MaxRate, 1e9}, {2 * MaxRate, 1e9}} {
		l := New(Config{Rate: tc.rate})
		if l.Burst() != tc.burst {
			t.Errorf("Rate %v: Burst() = %d, want %d", tc.rate, l.Burst(), tc.burst)
		}
	}
}

// A full limiter grants Burst permits at one instant and then refuses,
// saying exactly how long until the next one.
func TestBurstAtOneInstant(t *testing.T) {
	l, c := newFake(Config{Rate: 10, Burst: 5})
	c.set(time.Hour)
	for i := range 5 {
		if !l.Allow() {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, d := l.decide(l.clk.now(), 1)
	if ok || d != 100*time.Millisecond {
		t.Fatalf("6th request: ok %v, retry after %v; want refused, 100ms", ok, d)
	}
	c.advance(100*time.Millisecond - time.Nanosecond)
	if l.Allow() {
		t.Fatal("granted 1ns before the retry time")
	}
	c.advance(time.Nanosecond)
	if !l.Allow() {
		t.Fatal("refused at the retry time")
	}
	// Idle for a long time: full again, but never more than Burst.
	c.advance(time.Hour)
	if got := l.Tokens(); got != 5 {
		t.Fatalf("Tokens() after an hour idle = %v, want 5", got)
	}
	if !l.AllowN(l.clk.time(l.clk.now()), 5) || l.Allow() {
		t.Fatal("an idle limiter did not grant exactly Burst")
	}
}

// The number of permits granted over a long run is rate×time + burst,
// within 1%, for rates from below one per second to 10^8 per second.
func TestRateAccuracy(t *testing.T) {
	const decisions = 100_000
	for _, rate := range []float64{0.37, 1, 10, 333, 1e4, 123457, 1e6, 3.3e7, 1e8} {
		// A burst of 1 tolerates no jitter: each grant waits for the
		// first request at or after its time, so evenly spaced requests
		// lose up to one step per grant. Larger bursts absorb that.
		for _, burst := range []int{2, 10, 100} {
			l, c := newFake(Config{Rate: rate, Burst: burst})
			// Offer twice the rate, evenly spaced.
			step := time.Duration(float64(time.Second) / rate / 2)
			admitted := 0
			for range decisions {
				if l.Allow() {
					admitted++
				}
				c.advance(step)
			}
			elapsed := time.Duration(c.t.Load()) - step // the last decision's time
			want := rate*elapsed.Seconds() + float64(burst)
			if math.Abs(float64(admitted)-want) > 0.01*want+1 {
				t.Errorf("rate %v burst %d: admitted %d over %v, want %.1f ±1%%", rate, burst, admitted, elapsed, want)
			}
		}
	}
}

func TestRetryAfterIsExact(t *testing.T) {
	l, c := newFake(Config{Rate: 3, Burst: 2})
	c.set(time.Second)
	l.AllowN(l.clk.time(l.clk.now()), 2)
	ok, d := l.decide(l.clk.now(), 2)
	if ok {
		t.Fatal("granted from an empty limiter")
	}
	c.advance(d - time.Nanosecond)
	if l.AllowN(l.clk.time(l.clk.now()), 2) {
		t.Fatalf("granted before RetryAfter %v", d)
	}
	c.advance(time.Nanosecond)
	if !l.AllowN(l.clk.time(l.clk.now()), 2) {
		t.Fatalf("refused at RetryAfter %v", d)
	}
}

func TestClockBackwardsGrantsNoMore(t *testing.T) {
	l, c := newFake(Config{Rate: 1, Burst: 3})
	c.set(time.Minute)
	for l.Allow() {
	}
	// The clock steps back by an hour: nothing more is granted than at
	// the later time, and time must pass again from there.
	c.set(time.Minute - time.Hour)
	if l.Allow() {
		t.Fatal("granted after the clock stepped back")
	}
	c.set(time.Minute + time.Second)
	if !l.Allow() {
		t.Fatal("refused once the clock caught up")
	}
}

func TestRequestAboveBurstIsNeverGranted(t *testing.T) {
	var hooked []time.Duration
	l, _ := newFake(Config{Rate: 100, Burst: 4, OnLimited: func(d time.Duration) { hooked = append(hooked, d) }})
	if l.AllowN(time.Now(), 5) {
		t.Fatal("granted 5 permits with a burst of 4")
	}
	err := l.WaitN(context.Background(), 5)
	var rl *resilience.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 0 || !errors.Is(err, resilience.ErrRateLimited) {
		t.Fatalf("WaitN(5) = %v, want a RateLimitedError with RetryAfter 0", err)
	}
	if r := l.ReserveN(time.Now(), 5); r.OK() || r.Delay() != math.MaxInt64 {
		t.Fatalf("ReserveN(5): OK %v, Delay %v", r.OK(), r.Delay())
	}
	if len(hooked) != 3 || hooked[0] != 0 || hooked[1] != 0 || hooked[2] != 0 {
		t.Fatalf("OnLimited got %v, want three calls with 0", hooked)
	}
	if m := l.Metrics(); m.Limited != 3 || m.Admitted != 0 || m.Tokens != 4 {
		t.Fatalf("Metrics = %+v", m)
	}
}

func TestNonPositiveNIsGrantedAndTakesNothing(t *testing.T) {
	l, _ := newFake(Config{Rate: 1, Burst: 1})
	if !l.AllowN(time.Now(), 0) || !l.AllowN(time.Now(), -5) {
		t.Fatal("n <= 0 refused")
	}
	if l.Tokens() != 1 {
		t.Fatalf("Tokens() = %v after n <= 0, want 1", l.Tokens())
	}
}

func TestReservation(t *testing.T) {
	l, c := newFake(Config{Rate: 10, Burst: 2})
	now := func() time.Time { return l.clk.time(l.clk.now()) }
	r1, r2 := l.Reserve(), l.Reserve()
	if r1.Delay() != 0 || r2.Delay() != 0 {
		t.Fatalf("burst reservations delayed: %v, %v", r1.Delay(), r2.Delay())
	}
	r3 := l.ReserveN(now(), 1)
	r4 := l.ReserveN(now(), 1)
	if !r3.OK() || r3.Delay() != 100*time.Millisecond || r4.Delay() != 200*time.Millisecond {
		t.Fatalf("delays %v, %v; want 100ms, 200ms", r3.Delay(), r4.Delay())
	}
	if l.Tokens() != -2 {
		t.Fatalf("Tokens() = %v with two pending reservations, want -2", l.Tokens())
	}
	// Cancelling the last reservation gives its permit back in full.
	r4.Cancel()
	if l.Tokens() != -1 {
		t.Fatalf("Tokens() = %v after cancelling the last reservation, want -1", l.Tokens())
	}
	// A reservation followed by others gives back only what they did not
	// rely on: here nothing, since r4's permit is back already.
	r5 := l.Reserve()
	if r5.Delay() != 200*time.Millisecond {
		t.Fatalf("r5 delay %v, want 200ms", r5.Delay())
	}
	r3.Cancel()
	if l.Tokens() != -2 {
		t.Fatalf("Tokens() = %v after cancelling a reservation others follow, want -2", l.Tokens())
	}
	// Once due, a reservation cannot be cancelled.
	c.advance(time.Second)
	r5.Cancel()
	if l.Tokens() != 2 {
		t.Fatalf("Tokens() = %v, want 2", l.Tokens())
	}
	if d := r5.DelayFrom(now()); d != 0 {
		t.Fatalf("DelayFrom after the time = %v", d)
	}
	var zero Reservation
	zero.Cancel()
	if zero.OK() {
		t.Fatal("the zero Reservation is OK")
	}
}

func TestTakeAndDecision(t *testing.T) {
	l, _ := newFake(Config{Rate: 1, Burst: 1})
	var s Store = l
	d, err := s.Take(context.Background(), "ignored", 1)
	if err != nil || !d.Allowed || d.Err() != nil {
		t.Fatalf("first Take = %+v, %v", d, err)
	}
	d, _ = s.Take(context.Background(), "ignored", 1)
	if d.Allowed || d.RetryAfter != time.Second {
		t.Fatalf("second Take = %+v, want refused for 1s", d)
	}
	var rl *resilience.RateLimitedError
	if err := d.Err(); !errors.Is(err, resilience.ErrRateLimited) || !errors.As(err, &rl) || rl.RetryAfter != time.Second {
		t.Fatalf("Decision.Err() = %v", err)
	}
}

// Extreme settings never panic and keep their meaning.
func TestExtremeSettings(t *testing.T) {
	t.Run("tiny rate grants one permit then nothing", func(t *testing.T) {
		l, c := newFake(Config{Rate: 1e-300, Burst: 3})
		if l.Burst() != 1 {
			t.Fatalf("Burst() = %d, want 1 (the most that fits in the range of time)", l.Burst())
		}
		if !l.Allow() {
			t.Fatal("first request refused")
		}
		c.set(1 << 62)
		if l.Allow() {
			t.Fatal("a rate of 1e-300/s granted a second permit")
		}
	})
	t.Run("max rate", func(t *testing.T) {
		l, c := newFake(Config{Rate: MaxRate, Burst: 1})
		n := 0
		for range 1000 {
			if l.Allow() {
				n++
			}
			c.advance(time.Nanosecond)
		}
		if n != 1000 {
			t.Fatalf("granted %d of 1000 requests 1ns apart at 1e9/s", n)
		}
	})
	t.Run("huge burst", func(t *testing.T) {
		l, _ := newFake(Config{Rate: 1, Burst: math.MaxInt})
		// 36 years' worth of permits at 1/s.
		if want := int(math.MaxInt64 / (8 * time.Second)); l.Burst() != want {
			t.Fatalf("Burst() = %d, want %d", l.Burst(), want)
		}
		if !l.AllowN(time.Now(), l.Burst()) || l.AllowN(time.Now(), 1) {
			t.Fatal("a burst of MaxInt did not grant exactly Burst() at once")
		}
	})
	t.Run("end of time", func(t *testing.T) {
		l, c := newFake(Config{Rate: 1000, Burst: 1})
		c.set(math.MaxInt64)
		if l.Allow() {
			t.Fatal("granted beyond the limiter's range of time")
		}
		if ok, d := l.decide(l.clk.now(), 1); ok || d != 0 {
			t.Fatalf("beyond the range: ok %v, RetryAfter %v; want refused, 0", ok, d)
		}
	})
}

func TestValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	if err := (KeyedConfig{}).Validate(); err != nil {
		t.Fatalf("zero KeyedConfig: %v", err)
	}
	if err := (Config{Rate: MaxRate, Burst: math.MaxInt}).Validate(); err != nil {
		t.Fatalf("largest valid Config: %v", err)
	}
	for _, rate := range []float64{-1, math.NaN(), math.Inf(1), math.Inf(-1), MaxRate * 1.01} {
		err := (KeyedConfig{Rate: rate, Burst: -1, MaxKeys: -1}).Validate()
		fes := resilience.FieldErrors(err)
		if len(fes) != 3 || fes[0].Field != "Rate" || fes[1].Field != "Burst" || fes[2].Field != "MaxKeys" {
			t.Errorf("Rate %v: %v", rate, err)
		}
	}
	// New clamps what Validate rejects: an invalid rate means no limit,
	// a rate above MaxRate is MaxRate, a negative burst the default.
	if l := New(Config{Rate: -5}); l.Rate() != 0 || !l.Allow() {
		t.Fatal("a negative rate did not count as 0")
	}
	if l := New(Config{Rate: 1e12, Burst: -3}); l.Rate() != MaxRate || l.Burst() != 1e9 {
		t.Fatalf("Rate 1e12, Burst -3 gave %v, %d", l.Rate(), l.Burst())
	}
}

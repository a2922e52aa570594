package micro

import (
	"testing"
	"time"

	fsratelimiter "github.com/failsafe-go/failsafe-go/ratelimiter"
	uberratelimit "go.uber.org/ratelimit"
	"golang.org/x/time/rate"

	"github.com/engineeringlabs/grpc-resilience/ratelimit"
)

// Rate limiters compared on the decision of one permit, each reading its
// own clock on every call, as a caller would:
//
//   - ours: ratelimit.Limiter.Allow, one monotonic clock read and, when it
//     grants, one compare-and-swap on the limiter's word;
//   - x-time-rate: golang.org/x/time/rate.Limiter.Allow, which reads
//     time.Now (the wall and the monotonic clock) and decides under a
//     mutex;
//   - failsafe-go: the smooth rate limiter's TryAcquirePermit, which reads
//     the monotonic clock and decides under a mutex, the clock read
//     included;
//   - uber-ratelimit: go.uber.org/ratelimit's Take, which reads time.Now
//     and compare-and-swaps one word. It has no non-blocking form: Take
//     sleeps until the permit's time. It is compared only where it never
//     sleeps, at a rate of 10^9 per second (its interval of 1ns is shorter
//     than a call), so that it measures its decision, not a sleep; it has
//     no refused or saturated case.
//
// The comparison is of like with like: every library reads the clock and
// writes its state on every granted call (none takes a path that skips
// either), and every case gives each library the same rate and burst.
//
//   - Granted: a rate of 10^9 per second and a burst of 2^40 (failsafe-go's
//     smooth limiter has no burst; uber's has a slack of 10 intervals).
//     Calls take longer than the 1ns interval, so every limiter is full at
//     every call and grants it: each call moves the limiter's state from
//     the current time, which under RunParallel means every call writes
//     the one shared word (or lock) that the other goroutines read.
//   - Refused: an empty limiter with a rate of one permit per 1000s and a
//     burst of 1: every call is refused.
//   - Saturated: a rate of 10^6 per second and a burst of 1, asked for
//     permits far faster than that, the state of a limiter shedding load:
//     each library grants about 10^6 calls a second and refuses the rest
//     (about 19 calls in 20 at 50ns a call; a faster library refuses a
//     larger share of its larger number of calls, the grants per second
//     being the same).

const (
	grantRate  = 1e9
	grantBurst = 1 << 40
)

func grantingLimiters() []op {
	ours := ratelimit.New(ratelimit.Config{Rate: grantRate, Burst: grantBurst})
	xt := rate.NewLimiter(grantRate, grantBurst)
	fs := fsratelimiter.NewSmoothWithMaxRate[any](time.Nanosecond)
	ub := uberratelimit.New(int(grantRate))
	return []op{
		{"ours", func() error {
			if !ours.Allow() {
				return errRejected
			}
			return nil
		}},
		{"x-time-rate", func() error {
			if !xt.Allow() {
				return errRejected
			}
			return nil
		}},
		{"failsafe-go", func() error {
			if !fs.TryAcquirePermit() {
				return errRejected
			}
			return nil
		}},
		{"uber-ratelimit", func() error {
			ub.Take()
			return nil
		}},
	}
}

// refusingLimiters returns empty limiters; each op returns errRejected
// when the limiter wrongly grants.
func refusingLimiters() []op {
	ours := ratelimit.New(ratelimit.Config{Rate: 1e-3, Burst: 1})
	ours.Allow()
	xt := rate.NewLimiter(1e-3, 1)
	xt.Allow()
	fs := fsratelimiter.NewSmoothWithMaxRate[any](1000 * time.Second)
	fs.TryAcquirePermit()
	return []op{
		{"ours", func() error {
			if ours.Allow() {
				return errRejected
			}
			return nil
		}},
		{"x-time-rate", func() error {
			if xt.Allow() {
				return errRejected
			}
			return nil
		}},
		{"failsafe-go", func() error {
			if fs.TryAcquirePermit() {
				return errRejected
			}
			return nil
		}},
	}
}

// saturatingRate is the rate of the saturated limiters: one permit per
// microsecond, far fewer than the calls asked.
const saturatingRate = 1e6

// saturatedDeciders return limiters asked for more than their rate, as
// functions that report whether they granted.
func saturatedDeciders() map[string]func() bool {
	ours := ratelimit.New(ratelimit.Config{Rate: saturatingRate, Burst: 1})
	xt := rate.NewLimiter(saturatingRate, 1)
	fs := fsratelimiter.NewSmoothWithMaxRate[any](time.Second / saturatingRate)
	return map[string]func() bool{
		"ours":        ours.Allow,
		"x-time-rate": xt.Allow,
		"failsafe-go": fs.TryAcquirePermit,
	}
}

// saturatedLimiters returns the ops of saturatedDeciders, in a fixed
// order; they accept both answers.
func saturatedLimiters() []op {
	d := saturatedDeciders()
	var ops []op
	for _, lib := range []string{"ours", "x-time-rate", "failsafe-go"} {
		allow := d[lib]
		ops = append(ops, op{lib, func() error { allow(); return nil }})
	}
	return ops
}

// explicitTimeLimiters decide at a time the caller passes, for the
// libraries that take one: the decision without the clock read.
func explicitTimeLimiters() []op {
	ours := ratelimit.New(ratelimit.Config{Rate: grantRate, Burst: grantBurst})
	xt := rate.NewLimiter(grantRate, grantBurst)
	t0 := time.Now()
	return []op{
		{"ours", func() error {
			if !ours.AllowN(t0, 1) {
				return errRejected
			}
			return nil
		}},
		{"x-time-rate", func() error {
			if !xt.AllowN(t0, 1) {
				return errRejected
			}
			return nil
		}},
	}
}

// BenchmarkRateLimitAllow measures the decision for one permit that is
// granted, one goroutine.
func BenchmarkRateLimitAllow(b *testing.B) { serial(b, grantingLimiters()) }

// BenchmarkRateLimitAllowParallel is BenchmarkRateLimitAllow under
// RunParallel: GOMAXPROCS goroutines on one limiter.
func BenchmarkRateLimitAllowParallel(b *testing.B) { parallel(b, grantingLimiters()) }

// BenchmarkRateLimitRefused measures the decision for one permit of an
// empty limiter, one goroutine.
func BenchmarkRateLimitRefused(b *testing.B) { serial(b, refusingLimiters()) }

// BenchmarkRateLimitRefusedParallel is BenchmarkRateLimitRefused under
// RunParallel.
func BenchmarkRateLimitRefusedParallel(b *testing.B) { parallel(b, refusingLimiters()) }

// BenchmarkRateLimitSaturated measures decisions of a limiter asked for
// more than its rate, mostly refusals with a grant every microsecond, one
// goroutine.
func BenchmarkRateLimitSaturated(b *testing.B) { serial(b, saturatedLimiters()) }

// BenchmarkRateLimitSaturatedParallel is BenchmarkRateLimitSaturated
// under RunParallel.
func BenchmarkRateLimitSaturatedParallel(b *testing.B) { parallel(b, saturatedLimiters()) }

// BenchmarkRateLimitAllowAt measures AllowN at a time the caller passes,
// for the libraries that take one: the decision without the clock read.
// The time is fixed; the burst of 2^40 lasts far longer than b.N.
func BenchmarkRateLimitAllowAt(b *testing.B) { serial(b, explicitTimeLimiters()) }

// TestRateLimitersDecideAsConfigured checks that every measured operation
// takes the path its benchmark names: granted or refused.
func TestRateLimitersDecideAsConfigured(t *testing.T) {
	for name, ops := range map[string][]op{"granting": grantingLimiters(), "refusing": refusingLimiters(), "explicit time": explicitTimeLimiters()} {
		for _, o := range ops {
			for i := range 1000 {
				if err := o.run(); err != nil {
					t.Fatalf("%s/%s: run %d: %v", name, o.lib, i, err)
				}
			}
		}
	}
}

// TestSaturatedLimitersGrantAndRefuse checks that the saturated case is
// what its benchmark says: refusals, and grants at most at the rate.
func TestSaturatedLimitersGrantAndRefuse(t *testing.T) {
	for lib, allow := range saturatedDeciders() {
		var granted, refused int
		for start := time.Now(); time.Since(start) < 5*time.Millisecond; {
			if allow() {
				granted++
			} else {
				refused++
			}
		}
		// 5ms at 10^6 per second is about 5000 grants, plus the burst.
		if granted == 0 || granted > 10000 || refused == 0 {
			t.Errorf("%s: %d granted, %d refused in 5ms", lib, granted, refused)
		}
	}
}

// TestOurRateLimiterAllocatesNothing checks the zero-allocation goal of
// the decision, granted and refused.
func TestOurRateLimiterAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	for _, ops := range [][]op{grantingLimiters(), refusingLimiters(), saturatedLimiters()} {
		if n := testing.AllocsPerRun(1000, func() { _ = ops[0].run() }); n != 0 {
			t.Errorf("ours allocates %v per decision, want 0", n)
		}
	}
}

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
// own clock, as a caller would:
//
//   - ours: ratelimit.Limiter.Allow;
//   - x-time-rate: golang.org/x/time/rate.Limiter.Allow;
//   - failsafe-go: the smooth rate limiter's TryAcquirePermit;
//   - uber-ratelimit: go.uber.org/ratelimit's Take. It has no
//     non-blocking form: Take sleeps until the permit's time. It is
//     compared only where it never sleeps, at a rate of 10^9 per second
//     (its interval of 1ns is shorter than a call), so that it measures
//     its decision, not a sleep; it has no refused case.
//
// The granted benchmarks use a rate of 10^9 per second and a burst of 2^40
// (failsafe-go's smooth limiter has no burst: an interval of 1ns), so that
// every request is granted; the refused ones use an empty limiter with a
// rate of one permit per 1000s.

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

// TestOurRateLimiterAllocatesNothing checks the zero-allocation goal of
// the decision, granted and refused.
func TestOurRateLimiterAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	for _, ops := range [][]op{grantingLimiters(), refusingLimiters()} {
		if n := testing.AllocsPerRun(1000, func() { _ = ops[0].run() }); n != 0 {
			t.Errorf("ours allocates %v per decision, want 0", n)
		}
	}
}

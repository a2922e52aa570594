package throttle

import (
	"math"
	"testing"
	"time"
)

// FuzzProbability checks that the formula stays in [0, 1) and is never NaN,
// whatever the counts and settings.
func FuzzProbability(f *testing.F) {
	f.Add(uint64(100), uint64(50), 2.0, 20.0)
	f.Add(uint64(0), uint64(0), 0.0, 0.0)
	f.Add(uint64(math.MaxUint64), uint64(0), 1.0, 1.0)
	f.Add(uint64(1), uint64(math.MaxUint64), math.MaxFloat64, 0.0)
	f.Fuzz(func(t *testing.T, requests, accepts uint64, k, minRequests float64) {
		p := probability(requests, accepts, k, minRequests)
		if !(p >= 0 && p <= 1) {
			t.Fatalf("probability(%d, %d, %v, %v) = %v", requests, accepts, k, minRequests, p)
		}
	})
}

// FuzzClock drives a throttle with arbitrary clock readings, settings and
// outcomes, some recorded late and some sums taken by a reader whose clock
// reading is stale: it never panics, and its probability stays in [0, 1).
func FuzzClock(f *testing.F) {
	f.Add(int64(0), int64(time.Second), int64(-time.Hour), 2.0, int64(10*time.Second), 40, []byte{0, 1, 2, 1})
	f.Add(int64(math.MaxInt64), int64(math.MinInt64), int64(1), 1.0, int64(time.Millisecond), 1, []byte{1, 1, 1})
	f.Fuzz(func(t *testing.T, t0, t1, t2 int64, k float64, window int64, buckets int, outcomes []byte) {
		clk := &fakeClock{}
		th := newThrottle(Config{K: k, Window: time.Duration(window), Buckets: buckets, MinRequests: 1}, clk.now)
		times := []int64{t0, t1, t2}
		var late []Permit
		for i, o := range outcomes {
			clk.t.Store(times[i%3] + int64(i))
			if p, err := th.Allow(); err == nil {
				switch {
				case o >= 0xf0:
					late = append(late, p)
				case o >= 0xe0:
					_, _ = th.counts(th.epoch(clk.now()) - int64(o-0xe0))
					p.Done(Accepted)
				default:
					p.Done(Outcome(o % 4))
				}
			}
			if o&1 == 0 && len(late) > 0 {
				late[0].Done(Outcome(o % 4))
				late = late[1:]
			}
			m := th.Metrics()
			if !(m.Probability >= 0 && m.Probability < 1) || m.Accepts > m.Requests {
				t.Fatalf("after %d outcomes: %+v", i+1, m)
			}
		}
	})
}

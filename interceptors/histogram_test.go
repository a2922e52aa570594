package interceptors

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	for i := range histBuckets {
		lo, hi := bucketBounds(i)
		if lo >= hi {
			t.Fatalf("bucket %d: [%v, %v)", i, lo, hi)
		}
		if got := bucketOf(lo); got != i {
			t.Errorf("bucketOf(%v) = %d, want %d", lo, got, i)
		}
		if i < histBuckets-1 {
			if got := bucketOf(hi - 1); got != i {
				t.Errorf("bucketOf(%v) = %d, want %d", hi-1, got, i)
			}
			if next, _ := bucketBounds(i + 1); next != hi {
				t.Errorf("bucket %d ends at %v, next starts at %v", i, hi, next)
			}
		}
	}
	if bucketOf(-time.Second) != 0 || bucketOf(time.Duration(math.MaxInt64)) != histBuckets-1 {
		t.Error("out-of-range latencies not clamped")
	}
}

func TestQuantile(t *testing.T) {
	var h latencyHistogram
	if _, ok := h.quantile(0.5, 0); ok {
		t.Error("an empty histogram gave a quantile")
	}
	for i := 1; i <= 100; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	if _, ok := h.quantile(0.5, 101); ok {
		t.Error("quantile given before MinSamples")
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.9, 90 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {0, time.Millisecond}} {
		got, ok := h.quantile(tc.q, 10)
		// The bucket's upper bound: never below the true value, at most a
		// quarter above it.
		if !ok || got < tc.want || got > tc.want*5/4+time.Microsecond {
			t.Errorf("quantile(%v) = %v, %v; want in [%v, %v]", tc.q, got, ok, tc.want, tc.want*5/4)
		}
	}
}

func TestHistogramHalvesAndForgets(t *testing.T) {
	var h latencyHistogram
	for range histHalveAt * 4 {
		h.record(time.Second)
	}
	for range histHalveAt * 2 {
		h.record(time.Millisecond)
	}
	// The old, slow samples have been halved twice: the median is fast.
	if got, _ := h.quantile(0.5, 1); got > 2*time.Millisecond {
		t.Errorf("median %v, want the recent 1ms", got)
	}
}

func TestHistogramConcurrent(t *testing.T) {
	var h latencyHistogram
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 3000 {
				h.record(time.Duration(g*1000+i) * time.Microsecond)
				if i%100 == 0 {
					h.quantile(0.9, 1)
				}
			}
		})
	}
	wg.Wait()
	if _, ok := h.quantile(0.5, 1); !ok {
		t.Error("no quantile after concurrent records")
	}
}

// FuzzLatencyBucket checks the bucket arithmetic for any latency: the
// bucket holds the latency, is in range, and buckets grow with latency.
func FuzzLatencyBucket(f *testing.F) {
	for _, d := range []int64{-1, 0, 1, 999, 1000, 15999, 16000, 1 << 40, math.MaxInt64} {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, n int64) {
		d := time.Duration(n)
		i := bucketOf(d)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketOf(%v) = %d out of range", d, i)
		}
		lo, hi := bucketBounds(i)
		if c := max(d, 0); c < lo && i > 0 || c >= hi && i < histBuckets-1 {
			t.Fatalf("bucketOf(%v) = %d holds [%v, %v)", d, i, lo, hi)
		}
		if n < math.MaxInt64 && bucketOf(d+1) < i {
			t.Fatalf("bucketOf(%v) < bucketOf(%v)", d+1, d)
		}
	})
}

// FuzzQuantile checks that a quantile lies within the recorded range (to
// the buckets' precision) and grows with q.
func FuzzQuantile(f *testing.F) {
	f.Add(int64(1000), int64(5_000_000), int64(70), 0.5, 0.9)
	f.Add(int64(0), int64(math.MaxInt64), int64(-5), 0.0, 1.0)
	f.Add(int64(-3), int64(12), int64(1<<45), math.NaN(), -1.0)
	f.Fuzz(func(t *testing.T, a, b, c int64, q1, q2 float64) {
		var h latencyHistogram
		lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
		for _, n := range []int64{a, b, c} {
			d := max(time.Duration(n), 0)
			h.record(d)
			lo, hi = min(lo, d), max(hi, d)
		}
		v1, ok1 := h.quantile(q1, 3)
		v2, ok2 := h.quantile(q2, 3)
		if !ok1 || !ok2 {
			t.Fatal("no quantile with 3 samples")
		}
		_, loUpper := bucketBounds(bucketOf(lo))
		_, hiUpper := bucketBounds(bucketOf(hi))
		for _, v := range []time.Duration{v1, v2} {
			if v < loUpper || v > hiUpper {
				t.Fatalf("quantile %v outside [%v, %v]", v, loUpper, hiUpper)
			}
		}
		norm := func(q float64) float64 {
			if !(q <= 1) {
				return 1
			}
			return max(q, 0)
		}
		if norm(q1) <= norm(q2) && v1 > v2 {
			t.Fatalf("quantile(%v) = %v > quantile(%v) = %v", q1, v1, q2, v2)
		}
	})
}

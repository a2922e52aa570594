package interceptors

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The latency histogram has log-linear buckets of microseconds: one bucket
// per microsecond below 16µs, then four buckets per power of two up to
// 2^32µs (about 71 minutes); longer latencies fall into the last bucket.
// A bucket's upper bound is at most 25% above its lower bound.
const (
	histLinear   = 16 // buckets 0..15: one microsecond each
	histSubBits  = 2  // 4 buckets per power of two
	histSub      = 1 << histSubBits
	histMinExp   = 4  // 2^4 = histLinear
	histMaxExp   = 31 // the last power of two with buckets
	histBuckets  = histLinear + (histMaxExp-histMinExp+1)*histSub
	histHalveAt  = 2048 // samples between two halvings of every count
	histMaxMicro = uint64(1) << (histMaxExp + 1)
)

// latencyHistogram counts latencies in log-linear buckets, lock-free: a
// record is two atomic additions. Every histHalveAt samples the counts are
// halved, so recent latencies weigh more than old ones. It is safe for
// concurrent use; its zero value is empty and ready.
type latencyHistogram struct {
	counts [histBuckets]atomic.Uint64
	since  atomic.Uint64 // samples since the last halving
}

// bucketOf returns the bucket of latency d; a negative d counts as zero.
func bucketOf(d time.Duration) int {
	if d < 0 {
		d = 0
	}
	u := uint64(d / time.Microsecond)
	if u < histLinear {
		return int(u)
	}
	if u >= histMaxMicro {
		return histBuckets - 1
	}
	e := bits.Len64(u) - 1 // histMinExp <= e <= histMaxExp
	sub := int(u>>(e-histSubBits)) & (histSub - 1)
	return histLinear + (e-histMinExp)*histSub + sub
}

// bucketBounds returns the latencies bucket i holds: [lower, upper). The
// last bucket's upper bound is the largest Duration.
func bucketBounds(i int) (lower, upper time.Duration) {
	if i < histLinear {
		return time.Duration(i) * time.Microsecond, time.Duration(i+1) * time.Microsecond
	}
	j := i - histLinear
	e := uint(j/histSub + histMinExp)
	sub := uint64(j % histSub)
	lo := uint64(1)<<e + sub<<(e-histSubBits)
	hi := lo + uint64(1)<<(e-histSubBits)
	if i == histBuckets-1 {
		return time.Duration(lo) * time.Microsecond, time.Duration(math.MaxInt64)
	}
	return time.Duration(lo) * time.Microsecond, time.Duration(hi) * time.Microsecond
}

// record counts one latency.
func (h *latencyHistogram) record(d time.Duration) {
	h.counts[bucketOf(d)].Add(1)
	if h.since.Add(1) == histHalveAt {
		h.since.Store(0)
		// Halving races with concurrent records; each bucket is halved
		// atomically, so a concurrent record is never lost, at worst
		// halved with the rest.
		for i := range h.counts {
			c := &h.counts[i]
			for {
				v := c.Load()
				if v == 0 || c.CompareAndSwap(v, v/2) {
					break
				}
			}
		}
	}
}

// quantile returns the latency below which a fraction q (clamped to
// [0, 1]; NaN counts as 1) of the recorded latencies lie, as the upper bound
// of the bucket that holds it, so that it errs on the long side. It reports
// false while fewer than minSamples latencies are counted. Concurrent
// records may or may not be seen.
func (h *latencyHistogram) quantile(q float64, minSamples int) (time.Duration, bool) {
	var counts [histBuckets]uint64
	var total uint64
	for i := range h.counts {
		counts[i] = h.counts[i].Load()
		total += counts[i]
	}
	if total == 0 || total < uint64(max(minSamples, 0)) {
		return 0, false
	}
	if !(q <= 1) { // NaN too
		q = 1
	}
	q = max(q, 0)
	// The rank of the sample sought, from 1: ceil(q*total), at least 1.
	rank := uint64(math.Ceil(q * float64(total)))
	rank = min(max(rank, 1), total)
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			_, upper := bucketBounds(i)
			return upper, true
		}
	}
	_, upper := bucketBounds(histBuckets - 1)
	return upper, true
}

package throttle

import (
	"testing"
	"time"
)

// BenchmarkThrottleAccept is the common path: the backend accepts, the
// probability is zero.
func BenchmarkThrottleAccept(b *testing.B) {
	th := New(Config{})
	b.ReportAllocs()
	for b.Loop() {
		p, _ := th.Allow()
		p.Done(Accepted)
	}
}

// BenchmarkThrottleAcceptParallel is the common path from every P at once.
func BenchmarkThrottleAcceptParallel(b *testing.B) {
	th := New(Config{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, _ := th.Allow()
			p.Done(Accepted)
		}
	})
}

// BenchmarkThrottleOverload is a backend that refuses nine in ten: the
// throttle draws, rejects most requests, and records the rest.
func BenchmarkThrottleOverload(b *testing.B) {
	th := New(Config{})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if p, err := th.Allow(); err == nil {
			if i%10 == 0 {
				p.Done(Accepted)
			} else {
				p.Done(Rejected)
			}
		}
	}
}

// BenchmarkThrottleOverloadParallel is BenchmarkThrottleOverload from
// every P at once.
func BenchmarkThrottleOverloadParallel(b *testing.B) {
	th := New(Config{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if p, err := th.Allow(); err == nil {
				if i%10 == 0 {
					p.Done(Accepted)
				} else {
					p.Done(Rejected)
				}
			}
		}
	})
}

// BenchmarkThrottleBoundary is the common path with the largest window,
// 4096 buckets of 1ms, from every P at once: a bucket boundary every
// millisecond, where the window's sums are recomputed.
func BenchmarkThrottleBoundary(b *testing.B) {
	th := New(Config{Window: MaxBuckets * time.Millisecond, Buckets: MaxBuckets})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, _ := th.Allow()
			p.Done(Accepted)
		}
	})
}

// BenchmarkThrottleLateOutcome records outcomes one bucket late, as
// requests that outlive their bucket do.
func BenchmarkThrottleLateOutcome(b *testing.B) {
	th := New(Config{Window: time.Second, Buckets: 1000})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var prev Permit
		for pb.Next() {
			p, _ := th.Allow()
			prev.Done(Accepted)
			prev = p
		}
		prev.Done(Accepted)
	})
}

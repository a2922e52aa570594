package breaker

import (
	"math"
	"testing"
	"time"
)

// The open-duration generator stays within [initial, ceiling] (after the
// documented clamping), never decreases as opens accumulate, and never
// overflows.
func FuzzExponentialOpenDuration(f *testing.F) {
	f.Add(int64(time.Second), int64(time.Minute), 2.0, 3)
	f.Add(int64(0), int64(0), 0.0, 0)
	f.Add(int64(1), int64(math.MaxInt64), 1e300, 1<<30)
	f.Add(int64(-5), int64(10), math.NaN(), -1)
	f.Add(int64(time.Millisecond), int64(time.Hour), 1.0000001, 1<<20)
	f.Fuzz(func(t *testing.T, initial, ceiling int64, mult float64, opens int) {
		gen := ExponentialOpenDuration(time.Duration(initial), time.Duration(ceiling), mult)
		lo := time.Duration(initial)
		if lo <= 0 {
			lo = DefaultTimeout
		}
		hi := max(time.Duration(ceiling), lo)
		d, next := gen(opens), gen(opens+1)
		if opens == math.MaxInt {
			next = d
		}
		if d < lo || d > hi {
			t.Fatalf("gen(%d) = %v, outside [%v, %v]", opens, d, lo, hi)
		}
		if next < d {
			t.Fatalf("gen(%d) = %v < gen(%d) = %v: not monotonic", opens+1, next, opens, d)
		}
		if opens <= 1 && d != lo {
			t.Fatalf("gen(%d) = %v, want initial %v", opens, d, lo)
		}
	})
}

// The open deadline (now + open duration) saturates instead of wrapping.
func FuzzAddSat(f *testing.F) {
	f.Add(int64(0), int64(time.Minute))
	f.Add(int64(math.MaxInt64-1), int64(2))
	f.Add(int64(math.MinInt64), int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, now, d int64) {
		if d < 0 {
			d = -(d + 1) // addSat's contract: d is not negative
		}
		got := addSat(time.Duration(now), time.Duration(d))
		if got < time.Duration(now) {
			t.Fatalf("addSat(%d, %d) = %d wrapped around", now, d, got)
		}
		if now <= math.MaxInt64-d && got != time.Duration(now+d) {
			t.Fatalf("addSat(%d, %d) = %d, want the exact sum", now, d, got)
		}
		if now > math.MaxInt64-d && got != math.MaxInt64 {
			t.Fatalf("addSat(%d, %d) = %d, want saturation", now, d, got)
		}
	})
}

// A bucket index is in range, the epoch contains the time, and the window
// of n buckets ending at that epoch holds exactly the n latest epochs.
func FuzzBucketIndex(f *testing.F) {
	f.Add(int64(0), int64(time.Second), 10)
	f.Add(int64(math.MaxInt64), int64(1), 1)
	f.Add(int64(-7), int64(3), MaxWindowBuckets)
	f.Add(int64(59*time.Second+999), int64(6*time.Second), 10)
	f.Fuzz(func(t *testing.T, now, bucketDur int64, n int) {
		if bucketDur <= 0 || n <= 0 || n > MaxWindowBuckets {
			t.Skip()
		}
		epoch, idx := bucketIndex(time.Duration(now), time.Duration(bucketDur), n)
		if idx < 0 || idx >= n {
			t.Fatalf("index %d outside [0, %d)", idx, n)
		}
		at := max(now, 0)
		if epoch < 0 || at/bucketDur != epoch || at-epoch*bucketDur >= bucketDur {
			t.Fatalf("epoch %d does not contain %d (bucket %d)", epoch, at, bucketDur)
		}
		if !inWindow(epoch, epoch, n) || inWindow(epoch-int64(n), epoch, n) || inWindow(epoch+1, epoch, n) {
			t.Fatalf("window of %d ending at %d has the wrong edges", n, epoch)
		}
		if !inWindow(epoch-int64(n)+1, epoch, n) {
			t.Fatalf("window of %d ending at %d misses its oldest epoch", n, epoch)
		}
	})
}

// A time window's bucket duration is positive whenever it is accepted, and
// the buckets never cover more than the period.
func FuzzBucketDuration(f *testing.F) {
	f.Add(int64(time.Minute), 10)
	f.Add(int64(5), 10)
	f.Add(int64(0), 0)
	f.Add(int64(math.MaxInt64), MaxWindowBuckets)
	f.Fuzz(func(t *testing.T, period int64, buckets int) {
		d, ok := bucketDuration(time.Duration(period), buckets)
		p := time.Duration(period)
		if p <= 0 {
			p = DefaultWindowPeriod
		}
		n := buckets
		if n <= 0 || n > MaxWindowBuckets {
			n = DefaultWindowBuckets
		}
		if ok != (d > 0) {
			t.Fatalf("bucketDuration(%d, %d) = %v, %v: ok must mean positive", period, buckets, d, ok)
		}
		if ok && (d*time.Duration(n) > p || p-d*time.Duration(n) >= time.Duration(n)) {
			t.Fatalf("%d buckets of %v do not tile %v", n, d, p)
		}
		cfg := Config{WindowType: TimeWindow, WindowPeriod: time.Duration(period), WindowBuckets: buckets, FailureRateThreshold: 50}
		if s := cfg.settings(); s.bucketDur <= 0 {
			t.Fatalf("settings gave a bucket of %v", s.bucketDur)
		}
	})
}

// A time window fed a random sequence of calls and clock steps agrees with
// a naive list of timestamped calls.
func FuzzTimeWindow(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 200, 5, 6, 255, 7}, uint8(4))
	f.Add([]byte{}, uint8(1))
	f.Add([]byte{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9}, uint8(3))
	f.Fuzz(func(t *testing.T, ops []byte, nb uint8) {
		const bucket = 10 * time.Millisecond
		n := int(nb%16) + 1
		w := newTimeWindow(bucket, n, nil)
		type entry struct {
			at           time.Duration
			failed, slow bool
		}
		var list []entry
		var now time.Duration
		for _, op := range ops {
			now += time.Duration(op>>3) * time.Millisecond // 0 to 31ms
			failed, slow := op&1 != 0, op&2 != 0
			var c, fl, s int64
			if op&4 != 0 {
				list = append(list, entry{now, failed, slow})
				c, fl, s = w.add(failed, slow, now)
			} else {
				c, fl, s = w.counts(now)
			}
			var wc, wf, ws int64
			cur := int64(now / bucket)
			for _, e := range list {
				if ep := int64(e.at / bucket); ep > cur-int64(n) && ep <= cur {
					wc++
					if e.failed {
						wf++
					}
					if e.slow {
						ws++
					}
				}
			}
			if c != wc || fl != wf || s != ws {
				t.Fatalf("at %v: window %d/%d/%d, want %d/%d/%d", now, c, fl, s, wc, wf, ws)
			}
		}
	})
}

// A count window fed a random sequence of calls agrees with the last n
// entries of a list.
func FuzzCountWindow(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 1, 1, 1, 0}, uint8(3))
	f.Add([]byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, ops []byte, nb uint8) {
		n := int(nb%32) + 1
		w := newCountWindow(n)
		var list []byte
		for _, op := range ops {
			list = append(list, op)
			c, fl, s := w.add(op&1 != 0, op&2 != 0, 0)
			var wf, ws int64
			last := list[max(0, len(list)-n):]
			for _, e := range last {
				wf += int64(e & 1)
				ws += int64(e >> 1 & 1)
			}
			if c != int64(len(last)) || fl != wf || s != ws {
				t.Fatalf("window %d/%d/%d, want %d/%d/%d", c, fl, s, len(last), wf, ws)
			}
		}
	})
}

// DoneAt maps any reading of the caller's clock onto the breaker's: the
// measured duration is never negative, the call is slow exactly when it
// reaches SlowCallDuration, and the outcome is counted.
func FuzzDoneAt(f *testing.F) {
	f.Add(int64(0), int64(time.Second), false)
	f.Add(int64(2*time.Second), int64(time.Second), true)
	f.Add(int64(math.MinInt64), int64(1), false)
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64), true)
	f.Add(int64(-time.Hour), int64(time.Millisecond), true)
	f.Fuzz(func(t *testing.T, offset, slowDur int64, wall bool) {
		if slowDur <= 0 {
			slowDur = 1
		}
		var got Result
		b := New(Config{
			WindowType: TimeWindow, FailureRateThreshold: 100, MinimumCalls: 1 << 20,
			SlowCallDuration: time.Duration(slowDur), OnResult: func(r Result) { got = r },
		})
		p, err := b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		at := time.Now()
		if wall {
			at = at.Round(0) // no monotonic reading: the wall clock decides
		}
		p.DoneAt(Success, at.Add(time.Duration(offset)))
		if got.Duration < 0 {
			t.Fatalf("offset %v: duration %v", time.Duration(offset), got.Duration)
		}
		if got.Slow != (got.Duration >= time.Duration(slowDur)) {
			t.Fatalf("offset %v: duration %v, slow %v, threshold %v", time.Duration(offset), got.Duration, got.Slow, time.Duration(slowDur))
		}
		if m := b.Peek(); m.Successes != 1 || m.SlowCalls > 1 {
			t.Fatalf("offset %v: metrics %+v, want 1 success", time.Duration(offset), m)
		}
	})
}

package console

import (
	"math"
	"time"
	"unicode/utf8"
)

// MaxNameLen is the most bytes of a name (target, method, key, pipeline)
// the console shows; longer names are cut at a character boundary and end
// with "…".
const MaxNameLen = 200

// ellipsis ends a name that was cut.
const ellipsis = "…"

// clip returns s cut to at most MaxNameLen bytes, at a character
// boundary, ending with an ellipsis when cut. Invalid UTF-8 is kept as it
// is up to the cut; the JSON encoder replaces it.
func clip(s string) string {
	if len(s) <= MaxNameLen {
		return s
	}
	cut := MaxNameLen - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// ring keeps the latest items, at most max. Its storage grows with the
// items, so that a ring that sees few costs little. It is not safe for
// concurrent use.
type ring[T any] struct {
	items []T
	max   int
	next  int // where the next item goes, once items holds max
}

func newRing[T any](limit int) *ring[T] {
	return &ring[T]{max: limit}
}

// add appends v, dropping the oldest item when full.
func (r *ring[T]) add(v T) {
	if len(r.items) < r.max {
		if len(r.items) == cap(r.items) {
			// Grow by doubling, never past max.
			grown := make([]T, len(r.items), min(r.max, max(8, 2*cap(r.items))))
			copy(grown, r.items)
			r.items = grown
		}
		r.items = append(r.items, v)
		return
	}
	r.items[r.next] = v
	r.next = (r.next + 1) % len(r.items)
}

// len returns the number of items kept.
func (r *ring[T]) len() int { return len(r.items) }

// each calls f with the items, oldest first.
func (r *ring[T]) each(f func(T)) {
	for i := range r.items {
		f(r.items[(r.next+i)%len(r.items)])
	}
}

// newestFirst returns a copy of the items, newest first.
func (r *ring[T]) newestFirst() []T {
	out := make([]T, len(r.items))
	i := len(out)
	r.each(func(v T) {
		i--
		out[i] = v
	})
	return out
}

// rate returns the rate per second of a counter that went from prev to
// cur over elapsed: zero when the counter went back (it was replaced, as a
// breaker that was evicted and created again), when elapsed is not
// positive, or when the result would not be finite.
func rate(prev, cur uint64, elapsed time.Duration) float64 {
	if cur < prev || elapsed <= 0 {
		return 0
	}
	r := float64(cur-prev) / elapsed.Seconds()
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return 0
	}
	return r
}

// finite returns v, or 0 when v is NaN or infinite, so that the JSON
// encoder never meets a value it cannot write.
func finite(v float64) float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0
	}
	return v
}

// point is one sample of a row's history as the console keeps it: 24
// bytes, the precision the page draws with.
type point struct {
	timeMS                              int64
	failing, inFlight, refused, retries float32
}

func pointOf(s Sample) point {
	return point{timeMS: s.TimeMS, failing: float32(s.Failing), inFlight: float32(s.InFlight), refused: float32(s.Refused), retries: float32(s.Retries)}
}

// exportHistory copies the points of h into a History.
func exportHistory(h *ring[point]) *History {
	n := h.len()
	out := &History{
		TimeMS:   make([]int64, 0, n),
		Failing:  make([]float32, 0, n),
		InFlight: make([]float32, 0, n),
		Refused:  make([]float32, 0, n),
		Retries:  make([]float32, 0, n),
	}
	h.each(func(p point) {
		out.TimeMS = append(out.TimeMS, p.timeMS)
		out.Failing = append(out.Failing, p.failing)
		out.InFlight = append(out.InFlight, p.inFlight)
		out.Refused = append(out.Refused, p.refused)
		out.Retries = append(out.Retries, p.retries)
	})
	return out
}

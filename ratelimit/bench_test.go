package ratelimit

import (
	"strconv"
	"testing"
	"time"
	"unsafe"
)

// The benchmarks use a rate high enough that every request is granted,
// so that they measure the grant path (a compare-and-swap that succeeds),
// except the Refused ones, which measure a limiter that is empty.

const benchRate = 1e9 // one permit per nanosecond: never refuses

func BenchmarkAllow(b *testing.B) {
	l := New(Config{Rate: benchRate, Burst: 1 << 40})
	b.ReportAllocs()
	for b.Loop() {
		l.Allow()
	}
}

func BenchmarkAllowParallel(b *testing.B) {
	l := New(Config{Rate: benchRate, Burst: 1 << 40})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow()
		}
	})
}

func BenchmarkAllowRefused(b *testing.B) {
	l := New(Config{Rate: 1e-3, Burst: 1})
	l.Allow()
	b.ReportAllocs()
	for b.Loop() {
		if l.Allow() {
			b.Fatal("granted")
		}
	}
}

func BenchmarkAllowRefusedParallel(b *testing.B) {
	l := New(Config{Rate: 1e-3, Burst: 1})
	l.Allow()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow()
		}
	})
}

// BenchmarkAllowN passes the time, as callers that read the clock once
// for several decisions do: it measures the decision alone.
func BenchmarkAllowN(b *testing.B) {
	l := New(Config{Rate: benchRate, Burst: 1 << 40})
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Nanosecond)
		l.AllowN(now, 1)
	}
}

func BenchmarkWaitGranted(b *testing.B) {
	l := New(Config{Rate: benchRate, Burst: 1 << 40})
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeyedAllow(b *testing.B) {
	k := NewKeyed(KeyedConfig{Rate: benchRate, Burst: 1 << 40})
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = "caller-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k.Allow(keys[i&63])
		i++
	}
}

func BenchmarkKeyedAllowParallel(b *testing.B) {
	k := NewKeyed(KeyedConfig{Rate: benchRate, Burst: 1 << 40})
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = "caller-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k.Allow(keys[i&63])
			i++
		}
	})
}

// TestAllocations checks the zero-allocation goal of the decision paths.
func TestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	l := New(Config{Rate: benchRate, Burst: 1 << 40})
	empty := New(Config{Rate: 1e-3, Burst: 1})
	k := NewKeyed(KeyedConfig{Rate: benchRate, Burst: 1 << 40})
	k.Allow("a")
	ctx := t.Context()
	for name, f := range map[string]func(){
		"Allow":         func() { l.Allow() },
		"Allow refused": func() { empty.Allow() },
		"AllowN":        func() { l.AllowN(time.Now(), 1) },
		"Reserve":       func() { l.Reserve() },
		"Take":          func() { _, _ = l.Take(ctx, "", 1) },
		"Wait granted":  func() { _ = l.Wait(ctx) },
		"Keyed.Allow":   func() { k.Allow("a") },
		"Keyed.Take":    func() { _, _ = k.Take(ctx, "a", 1) },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s allocates %v per call, want 0", name, n)
		}
	}
}

// TestLayout checks that the words that decisions write are on cache
// lines of their own: the TAT, and each stripe of counters, apart from
// each other and from the settings every decision reads.
func TestLayout(t *testing.T) {
	var l Limiter
	var k Keyed
	const line = 64
	if off := unsafe.Offsetof(l.counts); off < 2*line || off%line != 0 {
		t.Errorf("Limiter.counts at %d: not on a line of its own after the TAT", off)
	}
	if off := unsafe.Offsetof(l.p); off < unsafe.Offsetof(l.counts)+unsafe.Sizeof(l.counts) {
		t.Errorf("Limiter.p at %d: within the counters", off)
	}
	if off := unsafe.Offsetof(k.counts); off%line != 0 {
		t.Errorf("Keyed.counts at %d: not at the start of a line", off)
	}
	if s := unsafe.Sizeof(stripe{}); s%(2*line) != 0 {
		t.Errorf("stripe is %d bytes, not a multiple of two lines", s)
	}
}

// TestPickKeepsAGoroutinesStripe checks the premise of stripes.pick: a
// goroutine that calls it again gets the same stripe.
func TestPickKeepsAGoroutinesStripe(t *testing.T) {
	var s stripes
	first := s.pick()
	for range 1000 {
		if s.pick() != first {
			t.Fatal("pick moved a goroutine to another stripe")
		}
	}
}

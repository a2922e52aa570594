package breaker

import (
	"context"
	"errors"
	"testing"
	"time"
)

var benchConfigs = []struct {
	name string
	cfg  Config
}{
	{"Consecutive", Config{}},
	{"CountWindow", Config{FailureThreshold: 5, FailureRateThreshold: 50, WindowSize: 100}},
	{"TimeWindowSlowCalls", Config{WindowType: TimeWindow, FailureRateThreshold: 50, SlowCallRateThreshold: 50, SlowCallDuration: time.Second}},
}

func hotPaths() []struct {
	name string
	op   func(b *Breaker)
} {
	ctx := context.Background()
	ok := func(context.Context) error { return nil }
	return []struct {
		name string
		op   func(b *Breaker)
	}{
		{"Allow+Done", func(b *Breaker) {
			p, err := b.Allow()
			if err == nil {
				p.Done(Success)
			}
		}},
		{"Allow+DoneAt", func(b *Breaker) {
			p, err := b.Allow()
			if err == nil {
				p.DoneAt(Success, time.Now())
			}
		}},
		{"Allow+Record", func(b *Breaker) {
			p, err := b.Allow()
			if err == nil {
				p.Record(nil)
			}
		}},
		{"Execute", func(b *Breaker) { _ = b.Execute(ctx, ok) }},
	}
}

// The hot path allocates nothing: a closed breaker's Allow and record, and
// Execute, in every window configuration; a rejection; a registry lookup.
func TestHotPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	for _, c := range benchConfigs {
		for _, hp := range hotPaths() {
			b := New(c.cfg)
			if n := testing.AllocsPerRun(1000, func() { hp.op(b) }); n != 0 {
				t.Errorf("%s %s: %v allocs per run, want 0", c.name, hp.name, n)
			}
		}
	}
	open := New(Config{FailureThreshold: 1, OnReject: func(*OpenError) {}})
	open.Execute(context.Background(), func(context.Context) error { return errors.New("down") })
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := open.Allow(); err == nil {
			t.Fatal("open breaker granted a permit")
		}
	}); n != 0 {
		t.Errorf("rejection: %v allocs per run, want 0", n)
	}
	r := NewRegistry(RegistryConfig{MaxKeys: 10})
	r.Get("users")
	if n := testing.AllocsPerRun(1000, func() { r.Get("users") }); n != 0 {
		t.Errorf("Registry.Get of an existing breaker: %v allocs per run, want 0", n)
	}
	lst := New(Config{OnResult: func(Result) {}})
	allowDone := hotPaths()[0].op
	if n := testing.AllocsPerRun(1000, func() { allowDone(lst) }); n != 0 {
		t.Errorf("with an OnResult listener: %v allocs per run, want 0", n)
	}
}

func BenchmarkAllowClosed(b *testing.B) {
	for _, c := range benchConfigs {
		b.Run(c.name, func(b *testing.B) {
			br := New(c.cfg)
			b.ReportAllocs()
			for b.Loop() {
				p, err := br.Allow()
				if err != nil {
					b.Fatal(err)
				}
				p.Done(Success)
			}
		})
	}
}

func BenchmarkAllowClosedParallel(b *testing.B) {
	for _, c := range benchConfigs {
		b.Run(c.name, func(b *testing.B) {
			br := New(c.cfg)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p, err := br.Allow()
					if err != nil {
						b.Error(err)
						return
					}
					p.Done(Success)
				}
			})
		})
	}
}

// BenchmarkHotPathParallel runs every closed-state hot path of every
// window configuration under RunParallel, GOMAXPROCS goroutines on one
// breaker. With the default configuration (Consecutive), a success writes
// only the calling goroutine's stripe, so ns/op falls as cores are added
// (-cpu 1,2,4); a window is written by every call.
func BenchmarkHotPathParallel(b *testing.B) {
	for _, c := range benchConfigs {
		for _, hp := range hotPaths() {
			b.Run(c.name+"/"+hp.name, func(b *testing.B) {
				br := New(c.cfg)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						hp.op(br)
					}
				})
			})
		}
	}
}

func openBreaker() *Breaker {
	br := New(Config{FailureThreshold: 1, Timeout: time.Hour})
	p, _ := br.Allow()
	p.Done(Failure)
	return br
}

func BenchmarkAllowOpen(b *testing.B) {
	br := openBreaker()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Allow(); err == nil {
			b.Fatal("permit from an open breaker")
		}
	}
}

func BenchmarkAllowOpenParallel(b *testing.B) {
	br := openBreaker()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := br.Allow(); err == nil {
				b.Error("permit from an open breaker")
				return
			}
		}
	})
}

func BenchmarkExecuteClosed(b *testing.B) {
	br := New(Config{})
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Execute(ctx, fn); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExecuteClosedParallel(b *testing.B) {
	br := New(Config{})
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := br.Execute(ctx, fn); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkExecuteOpen(b *testing.B) {
	br := openBreaker()
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Execute(ctx, fn); err == nil {
			b.Fatal("open breaker ran the call")
		}
	}
}

func BenchmarkRegistryGetParallel(b *testing.B) {
	r := NewRegistry(RegistryConfig{})
	names := []string{"a", "b", "c", "d"}
	for _, n := range names {
		r.Get(n)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			br := r.Get(names[i%len(names)])
			p, _ := br.Allow()
			p.Done(Success)
			i++
		}
	})
}

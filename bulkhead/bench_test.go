package bulkhead

import (
	"context"
	"testing"
)

func BenchmarkAcquire(b *testing.B) {
	bh := New(1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, err := bh.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		p.Release()
	}
}

func BenchmarkAcquireParallel(b *testing.B) {
	bh := New(1 << 20)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := bh.Acquire(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			p.Release()
		}
	})
}

func BenchmarkAcquireAdaptive(b *testing.B) {
	bh := NewFromConfig(Config{Limit: 10, Strategy: NewGradient(GradientConfig{})})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, err := bh.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		p.Release()
	}
}

func BenchmarkTryAcquire(b *testing.B) {
	bh := New(1)
	b.ReportAllocs()
	for b.Loop() {
		p, ok := bh.TryAcquire()
		if !ok {
			b.Fatal("rejected")
		}
		p.Release()
	}
}

// BenchmarkAcquireRejected measures the cost of shedding: every call finds
// the bulkhead full.
func BenchmarkAcquireRejected(b *testing.B) {
	bh := New(1)
	held, _ := bh.TryAcquire()
	defer held.Release()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bh.Acquire(ctx); err == nil {
			b.Fatal("admitted")
		}
	}
}

func BenchmarkExecute(b *testing.B) {
	bh := New(1)
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := bh.Execute(ctx, fn); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExecuteParallel(b *testing.B) {
	bh := New(1 << 20)
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := bh.Execute(ctx, fn); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkExecutePartitionedParallel(b *testing.B) {
	p := NewPartitioned(PartitionedConfig{MaxKeys: 16, New: func(string) *Bulkhead { return New(1 << 20) }})
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := p.Get("tenant").Execute(ctx, fn); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

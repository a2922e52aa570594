package retry

import (
	"context"
	"testing"
	"time"
)

func noop(context.Context) error { return nil }

func BenchmarkDoSuccess(b *testing.B) {
	p := New(3)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Do(ctx, noop); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDoSuccessCancelableContext(b *testing.B) {
	p := New(3, WithMaxDuration(time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Do(ctx, noop); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDoSuccessTokenBucket(b *testing.B) {
	p := New(3, WithBudget(NewTokenBucket(100, 0.1)))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Do(ctx, noop); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDoSuccessRatioBudget(b *testing.B) {
	p := New(3, WithBudget(NewRatioBudget(10*time.Second, 10, 0.2)))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Do(ctx, noop); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDoSuccessRatioBudgetParallel(b *testing.B) {
	p := New(3, WithBudget(NewRatioBudget(10*time.Second, 10, 0.2)))
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := p.Do(ctx, noop); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkDoValueSuccess(b *testing.B) {
	p := New(3)
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 42, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DoValue(ctx, p, fn); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDoAttemptSuccess(b *testing.B) {
	p := New(3)
	ctx := context.Background()
	fn := func(context.Context, Attempt) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := p.DoAttempt(ctx, fn); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDoOneRetry measures a call that fails once and then succeeds,
// with a zero wait.
func BenchmarkDoOneRetry(b *testing.B) {
	p := New(3, WithBackoff(Constant(0)), WithJitter(FullJitter), WithBudget(NewTokenBucket(100, 1)))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := p.Do(ctx, func(context.Context) error {
			n++
			if n == 1 {
				return errTransient
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRatioBudgetRecordParallel measures the deposit of a first
// attempt, clock reading included, from every P at once.
func BenchmarkRatioBudgetRecordParallel(b *testing.B) {
	rb := NewRatioBudget(10*time.Second, 10, 0.2)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rb.Record(1, Success)
		}
	})
}

// BenchmarkRatioBudgetRecordAtParallel is BenchmarkRatioBudgetRecordParallel
// with the caller's reading of the clock, as Call.NextAt passes it.
func BenchmarkRatioBudgetRecordAtParallel(b *testing.B) {
	rb := NewRatioBudget(10*time.Second, 10, 0.2)
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rb.RecordAt(1, Success, now)
		}
	})
}

// BenchmarkNextAtSuccessParallel measures a successful first attempt
// decided by Call.NextAt on a shared ratio budget, from every P at once.
func BenchmarkNextAtSuccessParallel(b *testing.B) {
	p := New(3, WithBudget(NewRatioBudgetFromConfig(RatioBudgetConfig{MinRetriesPerSecond: 1, FloorInsideRatio: true})))
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := p.Start()
			if d := c.NextAt(ctx, nil, now); d.Retry {
				b.Error("retry after a success")
				return
			}
		}
	})
}

package bulkhead

import (
	"context"
	"testing"
)

// TestHotPathAllocatesNothing checks the uncontended paths: acquiring and
// releasing a permit, with or without an adaptive strategy, through every
// entry point, allocates nothing.
func TestHotPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nop := func(context.Context) error { return nil }
	plain := New(4)
	adaptive := NewFromConfig(Config{Limit: 4, Strategy: NewGradient(GradientConfig{}), OnLimitChange: func(int, int) {}})
	aimd := NewFromConfig(Config{Limit: 4, Strategy: NewAIMD(AIMDConfig{})})
	parts := NewPartitioned(PartitionedConfig{MaxKeys: 4, New: func(string) *Bulkhead { return New(4) }})
	tests := []struct {
		name string
		fn   func()
	}{
		{"Acquire+Release", func() {
			p, _ := plain.Acquire(context.Background())
			p.Release()
		}},
		{"Acquire with a cancellable ctx", func() {
			p, _ := plain.Acquire(ctx)
			p.Release()
		}},
		{"TryAcquire+ReleaseWith", func() {
			p, _ := plain.TryAcquire()
			p.ReleaseWith(OutcomeDropped)
		}},
		{"double Release", func() {
			p, _ := plain.TryAcquire()
			p.Release()
			p.Release()
		}},
		{"Execute", func() { _ = plain.Execute(ctx, nop) }},
		{"Execute with Gradient", func() { _ = adaptive.Execute(ctx, nop) }},
		{"Execute with AIMD", func() { _ = aimd.Execute(ctx, nop) }},
		{"Partitioned.Get+Execute", func() { _ = parts.Get("tenant").Execute(ctx, nop) }},
		{"Metrics", func() { _ = plain.Metrics() }},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(1000, tt.fn); got != 0 {
			t.Errorf("%s: %v allocations per run, want 0", tt.name, got)
		}
	}
}

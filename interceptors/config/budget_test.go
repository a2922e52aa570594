package config

import (
	"strings"
	"testing"

	"github.com/engineeringlabs/grpc-resilience/retry"
)

// TestRatioBudgetFloorInsideRatio loads a target budget with and without
// floor_inside_ratio and checks how its floor and its ratio combine: after
// 1000 calls, a floor of 1 retry a second over 10s and a ratio of 0.2 allow
// 200 retries when the floor counts inside the ratio, 210 when it is added.
func TestRatioBudgetFloorInsideRatio(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want int
	}{
		{"target_budget: {kind: ratio, ttl: 10s, min_retries_per_second: 1, ratio: 0.2, floor_inside_ratio: true}\n", 200},
		{"target_budget: {kind: ratio, ttl: 10s, min_retries_per_second: 1, ratio: 0.2}\n", 210},
		// A zero ratio leaves the floor alone either way.
		{"target_budget: {kind: ratio, ttl: 10s, min_retries_per_second: 1, floor_inside_ratio: true}\n", 10},
	} {
		cfg, err := Parse([]byte(tc.doc), FormatYAML)
		if err != nil {
			t.Fatalf("%q: %v", tc.doc, err)
		}
		b, ok := cfg.ClientConfig().TargetBudget("target").(*retry.RatioBudget)
		if !ok {
			t.Fatalf("%q: target budget is not a *retry.RatioBudget", tc.doc)
		}
		for range 1000 {
			b.Record(1, retry.Success)
		}
		if got := b.Available(); got != tc.want {
			t.Errorf("%q: %d retries available after 1000 calls, want %d", tc.doc, got, tc.want)
		}
	}
}

// TestFloorInsideRatioNeedsRatioKind checks that floor_inside_ratio on a
// budget of another kind is a problem that names the budget's path, as any
// parameter the kind does not use is.
func TestFloorInsideRatioNeedsRatioKind(t *testing.T) {
	_, err := Parse([]byte("target_budget: {kind: token_bucket, max_tokens: 10, token_ratio: 0.1, floor_inside_ratio: true}\n"), FormatYAML)
	if err == nil || !strings.Contains(err.Error(), "target_budget") || !strings.Contains(err.Error(), "floor_inside_ratio set but kind is token_bucket") {
		t.Fatalf("err = %v, want a problem at target_budget naming floor_inside_ratio", err)
	}
}

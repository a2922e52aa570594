//go:build !race

package redisfleet

import (
	"testing"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/internal/redistest"
)

// A joined breaker's closed path stays free of allocations: the fleet
// reads its counts in the background.
func TestJoinedBreakerClosedPathAllocs(t *testing.T) {
	srv := redistest.Start(t)
	p := newProc(t, srv, BreakersConfig{}, breaker.Config{})
	waitSynced(t, p)
	if n := testing.AllocsPerRun(1000, func() {
		pm, _ := p.b.Allow()
		pm.Done(breaker.Success)
	}); n != 0 {
		t.Fatalf("a joined breaker's closed Allow+Done allocates %v times, want 0", n)
	}
}

package redisfleet

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/engineeringlabs/grpc-resilience/internal/redistest"
)

// TestLeaseAccounting drives one busy key with leases on: most decisions
// take no round trip, and the permits granted stay within what Redis
// handed out: rate × elapsed + burst.
func TestLeaseAccounting(t *testing.T) {
	srv := redistest.Start(t)
	l := newLimiter(t, LimiterConfig{Client: newClient(t, srv), Timeout: time.Second, LeaseWindow: 50 * time.Millisecond})
	const rate, burst = 400, 40
	q := l.Quota("lease", rate, burst)
	ctx := context.Background()
	start := time.Now()
	var admitted int
	for i := 0; i < 200_000 && time.Since(start) < time.Second; i++ {
		if d, _ := q.Take(ctx, "busy", 1); d.Allowed {
			admitted++
		}
	}
	elapsed := time.Since(start)
	m := l.Metrics()
	if m.Local != 0 || m.Errors != 0 {
		t.Fatalf("metrics %+v: local decisions against a healthy Redis", m)
	}
	if m.Leases == 0 || m.Leased < m.Shared {
		t.Fatalf("metrics %+v: want leases, and more decisions from them than round trips", m)
	}
	// Every permit granted came from Redis, once.
	if most := int(rate*elapsed.Seconds()) + burst + 1; admitted > most {
		t.Fatalf("admitted %d in %v, more than the quota allows (%d)", admitted, elapsed, most)
	}
	if least := int(0.8 * rate * elapsed.Seconds()); admitted < least {
		t.Fatalf("admitted %d in %v, want at least %d", admitted, elapsed, least)
	}
	if got := m.Admitted; got != uint64(admitted) {
		t.Fatalf("Metrics.Admitted = %d, want %d", got, admitted)
	}
	// Granted permits: plain grants + one per lease + the leased extras;
	// admitted from them is at most that.
	if uint64(admitted) > m.Leases+m.LeasedPermits+(m.Shared-m.Leases) {
		t.Fatalf("admitted %d, more than Redis granted (%+v)", admitted, m)
	}
	t.Logf("admitted %d in %v; %+v", admitted, elapsed, m)
}

// TestLeaseSlowKeyNoLease checks that a key called slowly gets no lease:
// each decision is a round trip.
func TestLeaseSlowKeyNoLease(t *testing.T) {
	srv := redistest.Start(t)
	// Each reading of the clock is 100ms after the last: five calls are
	// ten per second, whatever the machine's speed; a lease would take
	// rate × LeaseWindow = 0.2 permits.
	var clk atomic.Int64
	l, err := newLimiterClock(LimiterConfig{Client: newClient(t, srv), Timeout: time.Hour, LeaseWindow: 20 * time.Millisecond, HeartbeatInterval: time.Hour},
		func() int64 { return clk.Add(int64(100 * time.Millisecond)) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	q := l.Quota("slowkey", 1000, 100)
	for range 5 {
		q.Take(context.Background(), "k", 1)
	}
	if m := l.Metrics(); m.Leases != 0 || m.Shared != 5 {
		t.Fatalf("metrics %+v, want 5 round trips and no lease", m)
	}
}

// TestLeaseOverflow fills the lease cache with busy keys: a further key
// is decided by round trips and reported.
func TestLeaseOverflow(t *testing.T) {
	srv := redistest.Start(t)
	var overflowed []string
	l := newLimiter(t, LimiterConfig{Client: newClient(t, srv), Timeout: time.Second,
		LeaseWindow: 200 * time.Millisecond, MaxKeys: 1,
		OnOverflow: func(_, key string) { overflowed = append(overflowed, key) }})
	q := l.Quota("of", 100_000, 100_000)
	ctx := context.Background()
	start := time.Now()
	for l.Metrics().Leases == 0 && time.Since(start) < 10*time.Second {
		q.Take(ctx, "a", 1) // busy: takes a lease and holds its permits for 400ms
	}
	if m := l.Metrics(); m.Leases == 0 || m.LeasedPermits == 0 {
		t.Fatalf("no lease for a: %+v", m)
	}
	if d, _ := q.Take(ctx, "b", 1); !d.Allowed {
		t.Fatal("b refused")
	}
	if len(overflowed) != 1 || overflowed[0] != "b" || l.Metrics().Overflow != 1 {
		t.Fatalf("overflow %v, metrics %+v", overflowed, l.Metrics())
	}
}

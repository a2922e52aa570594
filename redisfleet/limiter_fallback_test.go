package redisfleet

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/engineeringlabs/grpc-resilience/internal/redistest"
)

// decisionSlack is what a decision may take beyond the Limiter's Timeout
// on a loaded machine under -race: scheduling, not waiting for Redis.
const decisionSlack = 250 * time.Millisecond

// fbTimeout is the Timeout of the fallback tests: above the default, so
// that a loaded machine does not fall back before the outage.
const fbTimeout = 25 * time.Millisecond

// TestLimiterFallback kills Redis under two limiters (two processes of one
// fleet): decisions stay within the bound, both fall back within a second
// to half the quota each, and both return to the shared quota once Redis
// is back.
func TestLimiterFallback(t *testing.T) {
	srv := redistest.Start(t)
	var fallbacks, recovers atomic.Int32
	var mu sync.Mutex
	var events []FallbackEvent
	cfg := func() LimiterConfig {
		return LimiterConfig{
			Client:            newClient(t, srv),
			Timeout:           fbTimeout,
			HeartbeatInterval: 50 * time.Millisecond,
			RetryInterval:     50 * time.Millisecond,
			OnFallback: func(e FallbackEvent) {
				fallbacks.Add(1)
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			},
			OnRecover: func(RecoverEvent) { recovers.Add(1) },
		}
	}
	a, b := newLimiter(t, cfg()), newLimiter(t, cfg())
	qa, qb := a.Quota("fb", 100, 10), b.Quota("fb", 100, 10)
	ctx := context.Background()

	// Both processes are heard of in Redis.
	poll(t, 10*time.Second, "two live processes", func() bool {
		return a.Metrics().Processes == 2 && b.Metrics().Processes == 2
	})

	srv.Kill()
	killed := time.Now()
	var worst time.Duration
	poll(t, 10*time.Second, "both in fallback", func() bool {
		for _, q := range []*Quota{qa, qb} {
			start := time.Now()
			if _, err := q.Take(ctx, "warm", 1); err != nil {
				t.Fatalf("Take returned %v", err)
			}
			worst = max(worst, time.Since(start))
		}
		return a.InFallback() && b.InFallback()
	})
	if took := time.Since(killed); took > time.Second+decisionSlack {
		t.Errorf("fallback took %v after the kill, want within 1s", took)
	}
	if bound := fbTimeout + decisionSlack; worst > bound {
		t.Errorf("slowest decision during the outage: %v, want at most %v", worst, bound)
	}
	mu.Lock()
	for _, e := range events {
		if e.Processes != 2 || e.Reason == nil {
			t.Errorf("fallback event %+v, want 2 processes and a reason", e)
		}
	}
	mu.Unlock()

	// Each process grants half the burst (5 of 10) at once to a new key,
	// plus what its half of the rate (50/s) refills meanwhile.
	for _, q := range []*Quota{qa, qb} {
		granted := 0
		began := time.Now()
		for range 20 {
			start := time.Now()
			d, _ := q.Take(ctx, "fresh", 1)
			worst = max(worst, time.Since(start))
			if d.Allowed {
				granted++
			}
		}
		most := 5 + int(math.Ceil(50*time.Since(began).Seconds()))
		if granted < 5 || granted > most {
			t.Errorf("fallback granted %d of 20 in %v, want the local share's burst, 5, and at most %d", granted, time.Since(began), most)
		}
	}
	if m := a.Metrics(); !m.InFallback || m.Local == 0 || m.Fallbacks != 1 {
		t.Errorf("metrics during the outage: %+v", m)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "both back on the shared quota", func() bool {
		qa.Take(ctx, "warm", 1)
		qb.Take(ctx, "warm", 1)
		return !a.InFallback() && !b.InFallback()
	})
	if fallbacks.Load() != 2 || recovers.Load() != 2 {
		t.Errorf("OnFallback called %d times, OnRecover %d, want 2 each", fallbacks.Load(), recovers.Load())
	}
	shared := a.Metrics().Shared
	poll(t, 10*time.Second, "a decision through Redis after recovery", func() bool {
		qa.Take(ctx, "after", 1)
		return a.Metrics().Shared > shared
	})
}

// TestLimiterSlowRedis pauses Redis' clients: decisions do not wait for it
// past the Timeout, and are decided locally.
func TestLimiterSlowRedis(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	l := newLimiter(t, LimiterConfig{Client: newClient(t, srv), HeartbeatInterval: time.Hour, Timeout: 20 * time.Millisecond})
	q := l.Quota("slow", 1000, 100)
	ctx := context.Background()
	poll(t, 10*time.Second, "a decision through Redis", func() bool {
		q.Take(ctx, "k", 1)
		return l.Metrics().Shared > 0
	})
	local := l.Metrics().Local
	if err := c.Do(ctx, c.B().ClientPause().Timeout(1500).All().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	var worst time.Duration
	for range 10 {
		start := time.Now()
		d, err := q.Take(ctx, "k", 1)
		worst = max(worst, time.Since(start))
		if err != nil || !d.Allowed {
			t.Fatalf("%+v, %v", d, err)
		}
	}
	if bound := 20*time.Millisecond + decisionSlack; worst > bound {
		t.Errorf("slowest decision while Redis is paused: %v, want at most %v", worst, bound)
	}
	if m := l.Metrics(); m.Local-local != 10 || m.Errors < failuresToFallback || !m.InFallback {
		t.Errorf("metrics %+v, want 10 local decisions and a fallback", m)
	}
	// A caller's deadline shorter than the Timeout bounds the decision.
	dctx, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	start := time.Now()
	q.Take(dctx, "k", 1)
	if took := time.Since(start); took > time.Millisecond+decisionSlack {
		t.Errorf("decision with a 1ms deadline took %v", took)
	}
}

// poll calls cond until it holds, failing t after timeout.
func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, timeout)
		}
		time.Sleep(2 * time.Millisecond) // polling an observable condition, bounded above
	}
}

// TestPresenceHostile puts a string where the live processes' sorted set
// belongs: the heartbeat replaces it, counts it, and counts the process.
func TestPresenceHostile(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	ctx := context.Background()
	if err := c.Do(ctx, c.B().Set().Key(DefaultPrefix+presenceSpace).Value("garbage").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	l := newLimiter(t, LimiterConfig{Client: c, HeartbeatInterval: 20 * time.Millisecond})
	poll(t, 10*time.Second, "the process counted", func() bool {
		m := l.Metrics()
		return m.Processes == 1 && m.Hostile >= 1
	})
	typ, err := c.Do(ctx, c.B().Type().Key(DefaultPrefix+presenceSpace).Build()).ToString()
	if err != nil || typ != "zset" {
		t.Fatalf("type %q, %v; want zset", typ, err)
	}
	// A member announced far in the future is removed, not counted.
	if err := c.Do(ctx, c.B().Zadd().Key(DefaultPrefix+presenceSpace).ScoreMember().ScoreMember(1e18, "ghost").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	hostile := l.Metrics().Hostile
	poll(t, 10*time.Second, "the ghost removed", func() bool {
		m := l.Metrics()
		return m.Hostile > hostile && m.Processes == 1
	})
}

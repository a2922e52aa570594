package redisfleet

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/engineeringlabs/grpc-resilience/internal/redistest"
)

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// count returns the number of records at level and the attribute keys of
// the last one.
func (h *logRecorder) count(level slog.Level) (n int, keys []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.Level == level {
			n++
			keys = keys[:0]
			r.Attrs(func(a slog.Attr) bool { keys = append(keys, a.Key); return true })
		}
	}
	return n, keys
}

// With the default settings (Timeout, HeartbeatInterval, RetryInterval),
// a Limiter falls back within one second of Redis going away, whether
// calls come or not, says so in one log line, and Close stays bounded.
func TestLimiterDefaultsFallBackWithinASecond(t *testing.T) {
	for _, calls := range []bool{false, true} {
		name := "idle"
		if calls {
			name = "calls"
		}
		t.Run(name, func(t *testing.T) {
			srv := redistest.Start(t)
			logs := &logRecorder{}
			l, err := NewLimiter(LimiterConfig{Client: newClient(t, srv), Logger: slog.New(logs)})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			q := l.Quota("defaults", 1000, 1000)
			ctx := context.Background()
			poll(t, 10*time.Second, "the first heartbeat", func() bool { return l.Metrics().Processes == 1 })

			srv.Kill()
			killed := time.Now()
			poll(t, 10*time.Second, "no fallback", func() bool {
				if calls {
					q.Take(ctx, "k", 1)
				}
				return l.InFallback()
			})
			took := time.Since(killed)
			t.Logf("fell back %v after the kill", took)
			if took > time.Second+decisionSlack {
				t.Errorf("fallback took %v after the kill, want within 1s", took)
			}
			// The line comes just after InFallback turns true.
			poll(t, 10*time.Second, "no Warn line", func() bool { n, _ := logs.count(slog.LevelWarn); return n > 0 })
			if n, keys := logs.count(slog.LevelWarn); n != 1 || !slicesEqual(keys, []string{"cause", "processes"}) {
				t.Errorf("%d Warn lines (attributes %v), want one with the cause and the processes", n, keys)
			}

			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
			poll(t, 10*time.Second, "no recovery", func() bool {
				if calls {
					q.Take(ctx, "k", 1)
				}
				return !l.InFallback()
			})
			poll(t, 10*time.Second, "no Info line", func() bool { n, _ := logs.count(slog.LevelInfo); return n > 0 })
			if n, _ := logs.count(slog.LevelInfo); n != 1 {
				t.Errorf("%d Info lines after the recovery, want one", n)
			}
			start := time.Now()
			_ = l.Close()
			if took, bound := time.Since(start), 2*minBeatTimeout+decisionSlack; took > bound {
				t.Errorf("Close took %v, want at most %v", took, bound)
			}
		})
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

// Error replies that say Redis cannot serve (here OOM: maxmemory reached)
// are failures: the Limiter falls back, and they are not hostile values.
func TestLimiterRedisErrorRepliesFallBack(t *testing.T) {
	srv := redistest.Start(t)
	var mu sync.Mutex
	var reason error
	l := newLimiter(t, LimiterConfig{Client: newClient(t, srv), Timeout: time.Second, OnFallback: func(e FallbackEvent) {
		mu.Lock()
		reason = e.Reason
		mu.Unlock()
	}})
	q := l.Quota("oom", 1000, 1000)
	ctx := context.Background()
	if d, _ := q.Take(ctx, "k", 1); !d.Allowed {
		t.Fatal("refused")
	}
	if _, err := srv.Do("CONFIG", "SET", "maxmemory", "1"); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "no fallback on OOM replies", func() bool {
		q.Take(ctx, "k", 1)
		return l.InFallback()
	})
	// OnFallback runs just after InFallback turns true.
	poll(t, 10*time.Second, "OnFallback was not called", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return reason != nil
	})
	mu.Lock()
	if !strings.Contains(reason.Error(), "OOM") {
		t.Errorf("fallback reason %v, want the OOM reply", reason)
	}
	mu.Unlock()
	if m := l.Metrics(); m.Hostile != 0 {
		t.Errorf("metrics %+v: OOM replies counted as hostile values", m)
	}
	if _, err := srv.Do("CONFIG", "SET", "maxmemory", "0"); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "no recovery", func() bool {
		q.Take(ctx, "k", 1)
		return !l.InFallback()
	})
}

// A single failed round trip (Redis paused) while the Limiter is not in
// fallback is decided by the key's local share, charged with what Redis
// granted: a key that used its quota is refused, not granted a fresh
// local burst.
func TestQuotaFailedRoundTripChargesShare(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	l := newLimiter(t, LimiterConfig{Client: newClient(t, srv), Timeout: 100 * time.Millisecond, HeartbeatInterval: time.Hour, Processes: 1})
	q := l.Quota("charge", 1, 3)
	ctx := context.Background()
	for i := range 3 {
		if d, _ := q.Take(ctx, "k", 1); !d.Allowed {
			t.Fatalf("permit %d refused", i)
		}
	}
	if err := c.Do(ctx, c.B().ClientPause().Timeout(1000).All().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	d, _ := q.Take(ctx, "k", 1)
	m := l.Metrics()
	if m.Local != 1 || m.InFallback {
		t.Fatalf("metrics %+v, want one local decision and no fallback", m)
	}
	if d.Allowed || d.RetryAfter <= 0 {
		t.Fatalf("a failed round trip for a key that used its quota: %+v, want refused with a RetryAfter", d)
	}
}

// Callers whose deadline is shorter than the Timeout still count towards
// the fallback when their wait lasted half the Timeout or more.
func TestQuotaShortDeadlinesFallBack(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	const timeout = 200 * time.Millisecond
	l := newLimiter(t, LimiterConfig{Client: newClient(t, srv), Timeout: timeout, HeartbeatInterval: time.Hour})
	q := l.Quota("short", 1000, 1000)
	ctx := context.Background()
	if d, _ := q.Take(ctx, "k", 1); !d.Allowed {
		t.Fatal("refused")
	}
	if err := c.Do(ctx, c.B().ClientPause().Timeout(5000).All().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	for i := 0; !l.InFallback(); i++ {
		if i == 10 {
			t.Fatalf("no fallback after %d decisions with a deadline of 0.9×Timeout: %+v", i, l.Metrics())
		}
		dctx, cancel := context.WithTimeout(ctx, timeout/10*9)
		start := time.Now()
		q.Take(dctx, "k", 1)
		if took := time.Since(start); took > timeout/10*9+decisionSlack {
			t.Errorf("decision took %v, past its deadline", took)
		}
		cancel()
	}
}

// Lowering a quota's burst keeps a used bucket empty: the stored TAT,
// beyond the new limit, counts as the new limit, not as a hostile value.
func TestQuotaLowerBurstKeepsBucketEmpty(t *testing.T) {
	srv := redistest.Start(t)
	l := newLimiter(t, LimiterConfig{Client: newClient(t, srv), Timeout: time.Second})
	ctx := context.Background()
	if d, _ := l.Quota("lower", 1, 100).Take(ctx, "k", 100); !d.Allowed {
		t.Fatal("the full burst was refused")
	}
	d, _ := l.Quota("lower", 1, 10).Take(ctx, "k", 1)
	if d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > 1100*time.Millisecond {
		t.Fatalf("after lowering the burst: %+v, want refused for about one interval (1s)", d)
	}
	if m := l.Metrics(); m.Hostile != 0 {
		t.Fatalf("metrics %+v: a TAT written under a larger burst counted as hostile", m)
	}
}

// The Redis key of a caller key holds a fixed-length digest of it, never
// the caller key itself.
func TestQuotaKeyHoldsDigest(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	l := newLimiter(t, LimiterConfig{Client: c, Timeout: time.Second})
	q := l.Quota("digest", 10, 10)
	ctx := context.Background()
	secret := strings.Repeat("sk-live-secret-", 1000)
	if d, _ := q.Take(ctx, secret, 1); !d.Allowed {
		t.Fatal("refused")
	}
	if d, _ := q.Take(ctx, secret+"x", 1); !d.Allowed {
		t.Fatal("another key shares the first one's bucket")
	}
	keys, err := c.Do(ctx, c.B().Keys().Pattern(quotaKeyBase(DefaultPrefix, "digest")+"*").Build()).AsStrSlice()
	if err != nil || len(keys) != 2 {
		t.Fatalf("KEYS: %v, %v; want two keys", keys, err)
	}
	for _, k := range keys {
		if strings.Contains(k, "secret") || len(k) != len(quotaKeyBase(DefaultPrefix, "digest"))+22 {
			t.Fatalf("Redis key %.80q holds the caller key or is not a 22-byte digest", k)
		}
	}
}

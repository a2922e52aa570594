package ratelimit

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestKeyedZeroConfigAdmitsEverything(t *testing.T) {
	k := NewKeyed(KeyedConfig{})
	for i := range 100 {
		if !k.Allow(fmt.Sprint(i % 3)) {
			t.Fatal("refused")
		}
	}
	if k.Len() != 0 {
		t.Fatalf("an unlimited Keyed keeps %d keys", k.Len())
	}
}

// Each key has its own limit: a key that used its burst does not take
// permits from another.
func TestKeyedFairness(t *testing.T) {
	k, c := newFakeKeyed(KeyedConfig{Rate: 10, Burst: 3})
	keys := []string{"a", "b", "c", "d"}
	got := map[string]int{}
	// "a" asks 100 times per period, the others once.
	for range 10 {
		for range 100 {
			if k.Allow("a") {
				got["a"]++
			}
		}
		for _, key := range keys[1:] {
			if k.Allow(key) {
				got[key]++
			}
		}
		c.advance(100 * time.Millisecond)
	}
	// a: its burst of 3 and then one per 100ms over 0.9s.
	if got["a"] != 3+9 {
		t.Errorf("a got %d permits, want 12", got["a"])
	}
	for _, key := range keys[1:] {
		if got[key] != 10 {
			t.Errorf("%s got %d of its 10 requests despite a's load", key, got[key])
		}
	}
	if m := k.Metrics(); m.Admitted != 42 || m.Limited != 1000-12 || m.Keys != 4 {
		t.Errorf("Metrics = %+v", m)
	}
}

// Evicting idle keys changes no decision: a Keyed with room for only a
// few keys decides exactly as one with room for all, when the keys it
// drops are full again.
func TestKeyedEvictionChangesNoDecision(t *testing.T) {
	var evicted []string
	small, cs := newFakeKeyed(KeyedConfig{Rate: 100, Burst: 2, MaxKeys: 16, OnEvict: func(k string) { evicted = append(evicted, k) }})
	big, cb := newFakeKeyed(KeyedConfig{Rate: 100, Burst: 2, MaxKeys: 1000})
	for step := range 20_000 {
		// 32 keys, each used in bursts of 5 requests 400µs apart, which
		// leave it busy (not full) for 20ms; so at any time at most 10
		// keys are busy, and the cache of 16 always has an idle one to
		// drop.
		key := fmt.Sprint((step / 5) % 32)
		a, b := small.Allow(key), big.Allow(key)
		if a != b {
			t.Fatalf("step %d key %s: small cache %v, unbounded %v", step, key, a, b)
		}
		cs.advance(400 * time.Microsecond)
		cb.advance(400 * time.Microsecond)
	}
	if small.Len() > 16 || len(evicted) == 0 {
		t.Fatalf("Len %d, %d evictions", small.Len(), len(evicted))
	}
	if m := small.Metrics(); m.Overflowed != 0 || m.Evicted != uint64(len(evicted)) {
		t.Fatalf("Metrics = %+v", m)
	}
}

// When every key is busy, a new key uses the shared overflow limiter and
// OnOverflow says so; a key longer than MaxKeyLen always does.
func TestKeyedOverflow(t *testing.T) {
	var overflowed []string
	k, c := newFakeKeyed(KeyedConfig{Rate: 1, Burst: 1, MaxKeys: 2, OnOverflow: func(key string) { overflowed = append(overflowed, key) }})
	k.Allow("a")
	k.Allow("b") // a and b are busy for a second
	if !k.Allow("c") || k.Allow("d") {
		t.Fatal("the overflow limiter did not grant exactly its burst")
	}
	long := strings.Repeat("x", MaxKeyLen+1)
	c.advance(10 * time.Second) // every limiter is full again
	if !k.Allow(long) || k.Allow(long) {
		t.Fatal("a long key did not use the overflow limiter")
	}
	if fmt.Sprint(overflowed) != fmt.Sprint([]string{"c", "d", long, long}) {
		t.Fatalf("OnOverflow got %q", overflowed)
	}
	if k.Len() != 2 {
		t.Fatalf("Len() = %d", k.Len())
	}
	// Now that a and b are idle, a new key takes the place of one.
	if !k.Allow("e") || len(overflowed) != 4 {
		t.Fatal("a new key overflowed although an idle key could be evicted")
	}
	if m := k.Metrics(); m.Overflowed != 4 || m.Evicted != 1 {
		t.Fatalf("Metrics = %+v", m)
	}
}

func TestKeyedMaxKeysNegativeSharesOverflow(t *testing.T) {
	k, _ := newFakeKeyed(KeyedConfig{Rate: 1, Burst: 1, MaxKeys: -1})
	if !k.Allow("a") || k.Allow("b") {
		t.Fatal("keys did not share the overflow limiter")
	}
}

func TestKeyedTake(t *testing.T) {
	k, _ := newFakeKeyed(KeyedConfig{Rate: 2, Burst: 1})
	var s Store = k
	if d, err := s.Take(context.Background(), "a", 1); err != nil || !d.Allowed {
		t.Fatalf("Take = %+v, %v", d, err)
	}
	if d, _ := s.Take(context.Background(), "a", 1); d.Allowed || d.RetryAfter != 500*time.Millisecond {
		t.Fatalf("Take = %+v, want refused for 500ms", d)
	}
	if d, _ := s.Take(context.Background(), "a", 2); d.Allowed || d.RetryAfter != 0 {
		t.Fatalf("Take of 2 = %+v, want never", d)
	}
}

// Eviction races with decisions: goroutines hammer a few keys of a tiny
// cache while others add new keys, so that idle keys are evicted while
// decisions about them run. No decision is lost on an evicted limiter: a
// hot key is never granted more than its burst at one instant.
func TestKeyedEvictionRace(t *testing.T) {
	k, c := newFakeKeyed(KeyedConfig{Rate: 1, Burst: 5, MaxKeys: 8})
	const rounds = 50
	for r := range rounds {
		c.advance(time.Minute) // every limiter is full again, so evictable
		var wg sync.WaitGroup
		counts := make([]int, 4)
		var mu sync.Mutex
		for g := range 8 {
			wg.Go(func() {
				for i := range 200 {
					if g >= 4 {
						k.Allow(fmt.Sprintf("churn-%d-%d-%d", r, g, i))
						continue
					}
					if k.Allow(fmt.Sprintf("hot-%d", i%4)) {
						mu.Lock()
						counts[i%4]++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		for key, n := range counts {
			// The round runs at one instant, so a key may be granted at
			// most its burst in it. A hot key may be evicted while idle,
			// before its first grant of the round, and come back full, or
			// land on the overflow limiter; either way never more.
			if n > 5 {
				t.Fatalf("round %d: hot-%d granted %d permits at one instant, burst 5", r, key, n)
			}
		}
	}
}

// The memory of a Keyed stays bounded whatever the number of distinct
// keys: 10^6 hostile keys (10^5 with -short) cost no more than MaxKeys
// keys.
func TestKeyedMemoryBound(t *testing.T) {
	const maxKeys = 10_000
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	if raceEnabled {
		// A new key meeting a cache full of busy keys scans up to 256
		// of them under the race detector's instrumentation: keep it
		// to three times the cap.
		n = 3 * maxKeys
	}
	// The documented bound: about 100 bytes per key plus the key, here
	// under 20 bytes; 150 leaves room for the heap's own accounting.
	const perKey = 150
	bound := uint64(maxKeys * perKey)

	for _, busy := range []bool{false, true} {
		t.Run(fmt.Sprint("busy=", busy), func(t *testing.T) {
			k, c := newFakeKeyed(KeyedConfig{Rate: 10, Burst: 1, MaxKeys: maxKeys})
			before := heap()
			buf := make([]byte, 0, 32)
			for i := range n {
				buf = fmt.Appendf(buf[:0], "hostile-key-%d", i)
				k.Allow(string(buf))
				if !busy {
					c.advance(time.Second) // each key is idle by the next
				}
			}
			after := heap()
			m := k.Metrics()
			t.Logf("%d keys seen: %d kept, %d evicted, %d overflowed decisions, heap grew by %d bytes (%d per kept key)",
				n, m.Keys, m.Evicted, m.Overflowed, after-before, (after-before)/uint64(max(m.Keys, 1)))
			if m.Keys > maxKeys {
				t.Fatalf("%d keys kept, cap %d", m.Keys, maxKeys)
			}
			if after > before && after-before > bound {
				t.Fatalf("heap grew by %d bytes for %d keys, bound %d", after-before, n, bound)
			}
			if busy && m.Overflowed != uint64(n-maxKeys) {
				t.Fatalf("%d overflowed decisions, want %d", m.Overflowed, n-maxKeys)
			}
			// An idle key that was used since the cache's clock hand
			// last passed it is spared once: a new key that meets only
			// such keys in its bounded scan overflows.
			if !busy && m.Evicted+m.Overflowed != uint64(n-maxKeys) {
				t.Fatalf("%d evictions and %d overflows, want %d in all", m.Evicted, m.Overflowed, n-maxKeys)
			}
			runtime.KeepAlive(k)
		})
	}
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// An evicted limiter is marked dead, so that a decision that looked it up
// just before the eviction decides again on the key's new limiter instead
// of granting permits on one nobody will see again.
func TestKeyedEvictedStateIsDead(t *testing.T) {
	k, c := newFakeKeyed(KeyedConfig{Rate: 1, Burst: 1, MaxKeys: 1})
	k.Allow("a")
	stale, ok := k.cache.Get("a") // a decision about "a" is under way...
	if !ok {
		t.Fatal("a not cached")
	}
	c.advance(2 * time.Second)
	k.Allow("b") // ...when "a", idle, makes room for "b"
	if k.Metrics().Evicted != 1 {
		t.Fatal("a was not evicted")
	}
	if o, _, _ := k.p.take(&stale.tat, k.clk.now(), 1, 0); o != dead {
		t.Fatalf("a decision on the evicted limiter: outcome %d, want dead", o)
	}
	k.p.giveBack(&stale.tat, 0, 1, 0, 1<<40) // giving back on it does nothing
	if stale.tat.Load() != deadTAT {
		t.Fatal("the dead mark was overwritten")
	}
}

// Range reports each key's permits left, as its limiter would, skips the
// overflow limiter, and stops when fn returns false.
func TestKeyedRange(t *testing.T) {
	k, c := newFakeKeyed(KeyedConfig{Rate: 10, Burst: 4, MaxKeys: 2})
	k.Allow("a")
	k.Allow("a")
	k.Allow("b")
	k.Allow("c") // no room: a and b are busy, so c uses the overflow limiter
	got := map[string]float64{}
	k.Range(func(key string, tokens float64) bool {
		if _, dup := got[key]; dup {
			t.Errorf("Range saw %q twice", key)
		}
		got[key] = tokens
		return true
	})
	if len(got) != 2 || got["a"] != 2 || got["b"] != 3 {
		t.Fatalf("Range saw %v, want a:2 b:3", got)
	}
	c.advance(time.Second)
	k.Range(func(key string, tokens float64) bool {
		if tokens != 4 {
			t.Errorf("after a quiet second %s has %v tokens, want the burst 4", key, tokens)
		}
		return true
	})
	n := 0
	k.Range(func(string, float64) bool { n++; return false })
	if n != 1 {
		t.Fatalf("Range went on after fn returned false: %d calls", n)
	}
	if a := testing.AllocsPerRun(100, func() { k.Range(func(string, float64) bool { return true }) }); a != 0 {
		t.Fatalf("Range: %v allocs, want 0", a)
	}
}

// Tokens reads one key's permits without creating its limiter.
func TestKeyedTokens(t *testing.T) {
	k, c := newFakeKeyed(KeyedConfig{Rate: 10, Burst: 4})
	if got := k.Tokens("a"); got != 4 || k.Len() != 0 {
		t.Fatalf("Tokens of an unseen key = %v with %d keys; want the burst 4 and no key made", got, k.Len())
	}
	k.Allow("a")
	k.Allow("a")
	k.Allow("a")
	if got := k.Tokens("a"); got != 1 {
		t.Fatalf("Tokens after 3 of 4 = %v, want 1", got)
	}
	c.advance(50 * time.Millisecond)
	if got := k.Tokens("a"); got != 1.5 {
		t.Fatalf("Tokens 50ms later at 10/s = %v, want 1.5", got)
	}
	if got := NewKeyed(KeyedConfig{}).Tokens("a"); !math.IsInf(got, 1) {
		t.Fatalf("Tokens without a limit = %v, want +Inf", got)
	}
}

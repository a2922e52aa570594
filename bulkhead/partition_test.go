package bulkhead_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/engineeringlabs/grpc-resilience/bulkhead"
)

// partHooks records a Partitioned's events; safe for concurrent use.
type partHooks struct {
	mu                 sync.Mutex
	evicted, overflows []string
}

func (h *partHooks) evict(k string) { h.mu.Lock(); h.evicted = append(h.evicted, k); h.mu.Unlock() }
func (h *partHooks) overflow(k string) {
	h.mu.Lock()
	h.overflows = append(h.overflows, k)
	h.mu.Unlock()
}
func (h *partHooks) lists() (evicted, overflows []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.evicted), slices.Clone(h.overflows)
}

func newTestPartitioned(maxKeys, limit int) (*bulkhead.Partitioned, *partHooks) {
	h := &partHooks{}
	return bulkhead.NewPartitioned(bulkhead.PartitionedConfig{
		MaxKeys: maxKeys,
		New: func(string) *bulkhead.Bulkhead {
			return bulkhead.NewFromConfig(bulkhead.Config{Limit: limit, Queue: 1})
		},
		OnEvict:    h.evict,
		OnOverflow: h.overflow,
	}), h
}

func TestPartitionedKeysAreIsolated(t *testing.T) {
	p, _ := newTestPartitioned(10, 1)
	a, b := p.Get("a"), p.Get("b")
	if a == b {
		t.Fatal("two keys share a bulkhead below the cap")
	}
	if p.Get("a") != a {
		t.Fatal("the same key got a second bulkhead")
	}
	if _, ok := a.TryAcquire(); !ok {
		t.Fatal("a: TryAcquire failed")
	}
	if _, ok := p.Get("a").TryAcquire(); ok {
		t.Error("a admitted twice with a limit of 1")
	}
	if _, ok := b.TryAcquire(); !ok {
		t.Error("a full partition a rejected work for b")
	}
}

// 100,000 distinct keys never hold more than the cap of partitions; idle
// partitions make room for new keys, so none of them overflows.
func TestPartitionedCapBoundsMemory(t *testing.T) {
	const maxKeys, keys = 64, 100_000
	var built []string
	h := &partHooks{}
	p := bulkhead.NewPartitioned(bulkhead.PartitionedConfig{
		MaxKeys: maxKeys,
		New: func(key string) *bulkhead.Bulkhead {
			built = append(built, key)
			return bulkhead.New(5)
		},
		OnEvict:    h.evict,
		OnOverflow: h.overflow,
	})
	for i := range keys {
		p.Get("tenant-" + strconv.Itoa(i))
		if p.Len() > maxKeys {
			t.Fatalf("Len() = %d after %d keys, above the cap %d", p.Len(), i+1, maxKeys)
		}
	}
	if got := p.Len(); got != maxKeys {
		t.Errorf("Len() = %d after %d distinct keys, want the cap %d", got, keys, maxKeys)
	}
	evicted, overflows := h.lists()
	if len(built) != keys+1 || len(evicted) != keys-maxKeys || len(overflows) != 0 {
		t.Errorf("%d built, %d evicted, %d overflows; want %d, %d, 0", len(built), len(evicted), len(overflows), keys+1, keys-maxKeys)
	}
	if built[0] != "" {
		t.Errorf("first New call got key %q, want the overflow key \"\"", built[0])
	}
	if p.Get("") != p.Overflow() {
		t.Error(`Get("") is not the overflow partition`)
	}
}

// A partition with a call in flight, or callers queued behind one, is
// never evicted; a full Partitioned of such partitions sends new keys to
// the overflow partition and reports them. Once a partition is idle, it
// makes room.
func TestPartitionedEvictsOnlyIdlePartitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, h := newTestPartitioned(3, 1)
		busy, queued, idle := p.Get("busy"), p.Get("queued"), p.Get("idle")
		busyPermit, _ := busy.TryAcquire()
		queuedPermit, _ := queued.TryAcquire()
		idlePermit, _ := idle.TryAcquire()
		waited := make(chan error, 1)
		go func() {
			pm, err := queued.Acquire(context.Background())
			if err == nil {
				pm.Release()
			}
			waited <- err
		}()
		synctest.Wait()
		if m := queued.Metrics(); m.InFlight != 1 || m.Waiting != 1 {
			t.Fatalf("setup: queued %+v", m)
		}

		// All three in use: nothing may go.
		if got := p.Get("new"); got != p.Overflow() {
			t.Fatal("a Partitioned of busy partitions made room")
		}
		if evicted, overflows := h.lists(); len(evicted) != 0 || fmt.Sprint(overflows) != "[new]" {
			t.Fatalf("evicted %v, overflows %v; want none, [new]", evicted, overflows)
		}

		idlePermit.Release()
		if got := p.Get("new"); got == p.Overflow() || got == idle {
			t.Fatal("the idle partition did not make room")
		}
		if evicted, _ := h.lists(); fmt.Sprint(evicted) != "[idle]" {
			t.Fatalf("evicted %v, want [idle]", evicted)
		}
		if p.Get("busy") != busy || p.Get("queued") != queued {
			t.Error("a partition in use got replaced")
		}
		busyPermit.Release()
		queuedPermit.Release()
		if err := <-waited; err != nil {
			t.Fatalf("the waiter: %v", err)
		}
	})
}

// A partition used since the clock hand last passed it gets a second
// chance: the idle one not used since is evicted first.
func TestPartitionedSecondChance(t *testing.T) {
	p, h := newTestPartitioned(2, 1)
	p.Get("a")
	p.Get("b")
	p.Get("a") // used again
	p.Get("c")
	if evicted, _ := h.lists(); fmt.Sprint(evicted) != "[b]" {
		t.Fatalf("evicted %v, want [b]: a was used after it was added", evicted)
	}
}

func TestPartitionedNilFromNew(t *testing.T) {
	calls := 0
	p := bulkhead.NewPartitioned(bulkhead.PartitionedConfig{MaxKeys: 3, New: func(key string) *bulkhead.Bulkhead {
		if key == "unknown" {
			calls++
			return nil
		}
		return bulkhead.New(1)
	}})
	if p.Get("unknown") != p.Overflow() {
		t.Fatal("a key New returned nil for did not go to the overflow partition")
	}
	if p.Get("unknown") != p.Overflow() || calls != 1 {
		t.Errorf("the key was not remembered: New called %d times", calls)
	}
	if p.Len() != 1 {
		t.Errorf("Len() = %d, want 1 (the remembered key)", p.Len())
	}
}

func TestPartitionedNoKeyedPartitions(t *testing.T) {
	h := &partHooks{}
	p := bulkhead.NewPartitioned(bulkhead.PartitionedConfig{MaxKeys: -1, New: func(string) *bulkhead.Bulkhead { return bulkhead.New(2) }, OnOverflow: h.overflow})
	if p.Get("x") != p.Overflow() || p.Len() != 0 {
		t.Error("with a negative MaxKeys, a key got its own partition")
	}
	if _, overflows := h.lists(); len(overflows) != 0 {
		t.Errorf("OnOverflow called for %v: sharing is the configuration, not an overflow", overflows)
	}
	p.Range(func(string, *bulkhead.Bulkhead) bool { t.Error("Range yielded a partition"); return true })
}

func TestPartitionedDefaultMaxKeys(t *testing.T) {
	p, h := newTestPartitioned(0, 1)
	for i := range bulkhead.DefaultMaxKeys + 1 {
		p.Get(strconv.Itoa(i))
	}
	if evicted, _ := h.lists(); p.Len() != bulkhead.DefaultMaxKeys || len(evicted) != 1 {
		t.Fatalf("Len %d, %d evicted; want %d, 1", p.Len(), len(evicted), bulkhead.DefaultMaxKeys)
	}
}

func TestNewPartitionedPanicsOnMisuse(t *testing.T) {
	tests := []struct {
		name  string
		newFn func(string) *bulkhead.Bulkhead
	}{
		{"nil New", nil},
		{"nil overflow", func(string) *bulkhead.Bulkhead { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("NewPartitioned did not panic")
				}
			}()
			bulkhead.NewPartitioned(bulkhead.PartitionedConfig{MaxKeys: 1, New: tt.newFn})
		})
	}
}

func TestPartitionedConcurrentGet(t *testing.T) {
	const maxKeys = 8
	var mu sync.Mutex
	built := map[string]int{}
	p := bulkhead.NewPartitioned(bulkhead.PartitionedConfig{MaxKeys: maxKeys, New: func(key string) *bulkhead.Bulkhead {
		mu.Lock()
		built[key]++
		mu.Unlock()
		return bulkhead.New(1)
	}})
	var wg sync.WaitGroup
	results := make([][]*bulkhead.Bulkhead, 16)
	for g := range results {
		wg.Go(func() {
			for i := range maxKeys {
				results[g] = append(results[g], p.Get(fmt.Sprint("k", i)))
			}
		})
	}
	wg.Wait()
	for key, n := range built {
		if n != 1 {
			t.Errorf("bulkhead.New(%q) called %d times, want once", key, n)
		}
	}
	for g := range results {
		for i := range results[g] {
			if results[g][i] != results[0][i] {
				t.Fatalf("goroutines %d and 0 got different bulkheads for k%d", g, i)
			}
		}
	}
	if p.Len() != maxKeys {
		t.Errorf("Len() = %d, want %d", p.Len(), maxKeys)
	}
	got := 0
	p.Range(func(key string, b *bulkhead.Bulkhead) bool {
		if p.Get(key) != b {
			t.Errorf("Range gave %q a bulkhead Get does not", key)
		}
		got++
		return got < 3
	})
	if got != 3 {
		t.Errorf("Range went on after fn returned false: %d calls", got)
	}
}

// Concurrent Gets of many keys with calls in flight never exceed the cap.
func TestPartitionedConcurrentChurn(t *testing.T) {
	const maxKeys, keys = 16, 20_000
	p, _ := newTestPartitioned(maxKeys, 1)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range keys / 8 {
				key := strconv.Itoa(g*keys/8 + i)
				b := p.Get(key)
				if b == nil {
					t.Error("Get returned nil")
					return
				}
				if pm, ok := b.TryAcquire(); ok {
					pm.Release()
				}
				if n := p.Len(); n > maxKeys {
					t.Errorf("Len %d above the cap", n)
				}
			}
		})
	}
	wg.Wait()
}

// A Partitioned keeps one bulkhead per tenant, for at most MaxKeys tenants.
// When it is full, an idle tenant's partition makes room for a new one; a
// tenant whose partition is in use keeps it, and a new tenant that finds
// no room shares the overflow partition.
func ExamplePartitioned() {
	perTenant := bulkhead.NewPartitioned(bulkhead.PartitionedConfig{
		MaxKeys:    2,
		New:        func(tenant string) *bulkhead.Bulkhead { return bulkhead.New(5) },
		OnEvict:    func(tenant string) { fmt.Println("evicted", tenant) },
		OnOverflow: func(tenant string) { fmt.Println("overflow", tenant) },
	})
	acme, globex := perTenant.Get("acme"), perTenant.Get("globex")
	fmt.Println(acme == perTenant.Get("acme"), acme == globex)

	call, _ := globex.TryAcquire() // globex is busy, acme idle
	initech := perTenant.Get("initech")
	fmt.Println(initech == perTenant.Overflow())

	_, _ = initech.TryAcquire() // initech is busy too
	umbrella := perTenant.Get("umbrella")
	fmt.Println(umbrella == perTenant.Overflow(), perTenant.Len())
	call.Release()
	// Output:
	// true false
	// evicted acme
	// false
	// overflow umbrella
	// true 2
}

// Lookup finds a key's partition without building one or marking it used;
// Range sees each keyed partition once and stops when told.
func TestPartitionedLookupAndRange(t *testing.T) {
	p := bulkhead.NewPartitioned(bulkhead.PartitionedConfig{MaxKeys: 2, New: func(string) *bulkhead.Bulkhead { return bulkhead.New(1) }})
	if _, ok := p.Lookup("a"); ok || p.Len() != 0 {
		t.Fatal("Lookup found, or built, a partition nobody asked for")
	}
	a, b := p.Get("a"), p.Get("b")
	if got, ok := p.Lookup("a"); !ok || got != a {
		t.Fatal("Lookup(a) did not return a's partition")
	}
	seen := map[string]*bulkhead.Bulkhead{}
	p.Range(func(key string, bh *bulkhead.Bulkhead) bool {
		if seen[key] != nil {
			t.Errorf("Range saw %q twice", key)
		}
		seen[key] = bh
		return true
	})
	if len(seen) != 2 || seen["a"] != a || seen["b"] != b {
		t.Fatalf("Range saw %v", seen)
	}
	n := 0
	p.Range(func(string, *bulkhead.Bulkhead) bool { n++; return false })
	if n != 1 {
		t.Fatalf("Range went on after fn returned false: %d calls", n)
	}
	none := bulkhead.NewPartitioned(bulkhead.PartitionedConfig{MaxKeys: -1, New: func(string) *bulkhead.Bulkhead { return bulkhead.New(1) }})
	if _, ok := none.Lookup("a"); ok {
		t.Fatal("Lookup found a key in a Partitioned without keyed partitions")
	}
	none.Range(func(string, *bulkhead.Bulkhead) bool {
		t.Error("Range without keyed partitions called fn")
		return true
	})
}

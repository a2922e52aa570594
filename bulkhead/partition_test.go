package bulkhead

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
)

func TestPartitionedKeysAreIsolated(t *testing.T) {
	p := NewPartitioned(10, func(string) *Bulkhead { return New(1) })
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

func TestPartitionedCapBoundsMemory(t *testing.T) {
	const maxKeys, keys = 64, 100_000
	var built []string
	p := NewPartitioned(maxKeys, func(key string) *Bulkhead {
		built = append(built, key)
		return New(5)
	})
	seen := map[*Bulkhead]bool{}
	for i := range keys {
		seen[p.Get("tenant-"+strconv.Itoa(i))] = true
	}
	if got := p.Len(); got != maxKeys {
		t.Errorf("Len() = %d after %d distinct keys, want the cap %d", got, keys, maxKeys)
	}
	// maxKeys keyed partitions plus the overflow one, whatever the number
	// of keys: newFn built the overflow ("") and one per key under the cap.
	if len(seen) != maxKeys+1 || len(built) != maxKeys+1 {
		t.Errorf("%d distinct bulkheads, %d built, want %d", len(seen), len(built), maxKeys+1)
	}
	if built[0] != "" {
		t.Errorf("first newFn call got key %q, want the overflow key \"\"", built[0])
	}
	if p.Get("tenant-"+strconv.Itoa(keys-1)) != p.Overflow() {
		t.Error("a key beyond the cap did not get the overflow partition")
	}
	if p.Get("tenant-3") == p.Overflow() {
		t.Error("a key under the cap got the overflow partition")
	}
	if p.Get("") != p.Overflow() {
		t.Error(`Get("") is not the overflow partition`)
	}
}

func TestPartitionedNilFromNewFn(t *testing.T) {
	p := NewPartitioned(3, func(key string) *Bulkhead {
		if key == "unknown" {
			return nil
		}
		return New(1)
	})
	calls := 0
	if p.Get("unknown") != p.Overflow() {
		t.Fatal("a key newFn returned nil for did not go to the overflow partition")
	}
	p.newFn = func(string) *Bulkhead { calls++; return New(1) }
	if p.Get("unknown") != p.Overflow() || calls != 0 {
		t.Errorf("the key was not remembered: newFn called %d more times", calls)
	}
	if p.Len() != 1 {
		t.Errorf("Len() = %d, want 1 (the remembered key)", p.Len())
	}
}

func TestPartitionedZeroCap(t *testing.T) {
	p := NewPartitioned(-1, func(string) *Bulkhead { return New(2) })
	if p.Get("x") != p.Overflow() || p.Len() != 0 {
		t.Error("with a cap below 1, a key got its own partition")
	}
}

func TestNewPartitionedPanicsOnMisuse(t *testing.T) {
	tests := []struct {
		name  string
		newFn func(string) *Bulkhead
	}{
		{"nil newFn", nil},
		{"nil overflow", func(string) *Bulkhead { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("NewPartitioned did not panic")
				}
			}()
			NewPartitioned(1, tt.newFn)
		})
	}
}

func TestPartitionedConcurrentGet(t *testing.T) {
	const maxKeys = 8
	var mu sync.Mutex
	built := map[string]int{}
	p := NewPartitioned(maxKeys, func(key string) *Bulkhead {
		mu.Lock()
		built[key]++
		mu.Unlock()
		return New(1)
	})
	var wg sync.WaitGroup
	results := make([][]*Bulkhead, 16)
	for g := range results {
		wg.Go(func() {
			for i := range 32 {
				results[g] = append(results[g], p.Get(fmt.Sprint("k", i)))
			}
		})
	}
	wg.Wait()
	for key, n := range built {
		if n != 1 {
			t.Errorf("newFn(%q) called %d times, want once", key, n)
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
	p.Range(func(key string, b *Bulkhead) bool {
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

package keycache

import (
	"slices"
	"strconv"
	"sync"
	"testing"
)

// TestEvictableAcceptanceEvicts checks that an entry Evictable accepts is
// the entry evicted: owners may act on an acceptance (a rate limiter marks
// its state dead), so the cache must not ask about an entry it then keeps.
// The ring holds a used entry before an unused one, and both are idle.
func TestEvictableAcceptanceEvicts(t *testing.T) {
	for _, max := range []int{2, 4 * scanLimit} {
		t.Run(strconv.Itoa(max), func(t *testing.T) {
			var mu sync.Mutex
			var accepted, evicted []string
			c := New(Config[string, *val]{
				Max: max,
				Evictable: func(v *val) bool {
					if v.busy.Load() {
						return false
					}
					mu.Lock()
					defer mu.Unlock()
					accepted = append(accepted, v.key)
					return true
				},
				OnEvict: func(k string, _ *val) {
					mu.Lock()
					defer mu.Unlock()
					evicted = append(evicted, k)
				},
			})
			for i := range max {
				v, ok := c.GetOrCreate(strconv.Itoa(i), mk(strconv.Itoa(i)))
				if !ok {
					t.Fatalf("insert %d refused", i)
				}
				// Every other entry is used, the others only inserted.
				if i%2 == 0 {
					c.Get(v.key)
				}
			}
			for i := range max {
				if _, ok := c.GetOrCreate("new"+strconv.Itoa(i), mk("new"+strconv.Itoa(i))); !ok {
					t.Fatalf("insert new%d refused although every entry is idle", i)
				}
				mu.Lock()
				a, e := slices.Clone(accepted), slices.Clone(evicted)
				mu.Unlock()
				if !slices.Equal(a, e) {
					t.Fatalf("after new%d: Evictable accepted %v, evicted %v", i, a, e)
				}
			}
		})
	}
}

// TestFallbackRechecksBusy checks that the entry an insert falls back to
// (used since the hand last passed it) is asked whether it may go right
// before it is evicted, not only when the scan passed it: an entry that
// turned busy meanwhile stays.
func TestFallbackRechecksBusy(t *testing.T) {
	const max = 4 * scanLimit
	var c *Cache[string, *val]
	var first *val
	calls := 0
	c = New(Config[string, *val]{
		Max: max,
		Evictable: func(v *val) bool {
			calls++
			if calls == 2 && first != nil {
				// A lookup takes the first entry into use while the
				// scan goes on.
				first.busy.Store(true)
			}
			return !v.busy.Load()
		},
	})
	for i := range max {
		v, _ := c.GetOrCreate(strconv.Itoa(i), mk(strconv.Itoa(i)))
		switch {
		case i == 0:
			first = v
			c.Get(v.key) // used, idle: the only candidate of the scan
		case i < scanLimit:
			v.busy.Store(true) // the rest of the scan is busy
		default:
			c.Get(v.key)
		}
	}
	calls = 0
	if _, ok := c.GetOrCreate("new", mk("new")); ok {
		t.Error("insert admitted although every entry the scan examined is busy")
	}
	if _, ok := c.Peek("0"); !ok {
		t.Fatal("entry 0, busy since the scan passed it, was evicted")
	}
}

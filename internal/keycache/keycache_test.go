package keycache

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// val is a test value whose busy flag decides whether it may be evicted.
type val struct {
	key  string
	busy atomic.Bool
}

type evicted struct {
	mu   sync.Mutex
	keys []string
}

func (e *evicted) add(k string, v *val) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if v.key != k {
		panic("OnEvict got a key and a value of different entries")
	}
	e.keys = append(e.keys, k)
}

func (e *evicted) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.keys)
}

func newTest(max int) (*Cache[string, *val], *evicted) {
	ev := &evicted{}
	c := New(Config[string, *val]{
		Max:       max,
		Evictable: func(v *val) bool { return !v.busy.Load() },
		OnEvict:   ev.add,
	})
	return c, ev
}

func mk(key string) func() *val { return func() *val { return &val{key: key} } }

func mustCreate(t *testing.T, c *Cache[string, *val], key string) *val {
	t.Helper()
	v, ok := c.GetOrCreate(key, mk(key))
	if !ok || v == nil || v.key != key {
		t.Fatalf("GetOrCreate(%q) = %v, %v", key, v, ok)
	}
	return v
}

func TestGetOrCreateReturnsTheSameValue(t *testing.T) {
	c, _ := newTest(4)
	a := mustCreate(t, c, "a")
	if v, ok := c.GetOrCreate("a", func() *val { t.Fatal("create called for a cached key"); return nil }); !ok || v != a {
		t.Fatalf("second GetOrCreate(a) = %p, %v; want %p", v, ok, a)
	}
	if v, ok := c.Get("a"); !ok || v != a {
		t.Fatalf("Get(a) = %p, %v", v, ok)
	}
	if _, ok := c.Get("b"); ok {
		t.Fatal("Get found a key never inserted")
	}
	if c.Len() != 1 {
		t.Fatalf("Len = %d, want 1", c.Len())
	}
}

// With every entry idle, a full cache evicts the first entry the hand
// reaches once it cleared the marks, and reports it to OnEvict.
func TestIdleEntriesAreEvicted(t *testing.T) {
	c, ev := newTest(3)
	for _, k := range []string{"a", "b", "c"} {
		mustCreate(t, c, k)
	}
	mustCreate(t, c, "d")
	if got := ev.list(); fmt.Sprint(got) != "[a]" {
		t.Fatalf("evicted %v, want [a]", got)
	}
	if _, ok := c.Get("a"); ok {
		t.Fatal("an evicted key is still found")
	}
	if c.Len() != 3 {
		t.Fatalf("Len = %d, want the cap 3", c.Len())
	}
	mustCreate(t, c, "e")
	if got := ev.list(); fmt.Sprint(got) != "[a b]" {
		t.Fatalf("evicted %v, want [a b]", got)
	}
}

// An entry used since the hand last passed gets a second chance: the hand
// clears its mark and evicts the next unmarked entry instead.
func TestReferencedEntriesGetASecondChance(t *testing.T) {
	c, ev := newTest(4)
	for _, k := range []string{"a", "b", "c", "d"} {
		mustCreate(t, c, k)
	}
	mustCreate(t, c, "e") // clears every mark, evicts a; the hand is at b
	c.Get("b")            // b is used again
	mustCreate(t, c, "f")
	if got := ev.list(); fmt.Sprint(got) != "[a c]" {
		t.Fatalf("evicted %v, want [a c]: b was used after the hand passed it", got)
	}
	if _, ok := c.Get("b"); !ok {
		t.Fatal("b was evicted despite its second chance")
	}
}

// Busy entries are never evicted; when every entry is busy, GetOrCreate
// refuses without calling create, and succeeds again once one is idle.
func TestBusyEntriesAreNeverEvicted(t *testing.T) {
	c, ev := newTest(3)
	vals := map[string]*val{}
	for _, k := range []string{"a", "b", "c"} {
		vals[k] = mustCreate(t, c, k)
		vals[k].busy.Store(true)
	}
	for i := range 10 {
		if v, ok := c.GetOrCreate("x"+strconv.Itoa(i), func() *val { t.Fatal("create called on a full cache"); return nil }); ok || v != nil {
			t.Fatalf("GetOrCreate on a cache of busy entries = %v, %v; want nil, false", v, ok)
		}
	}
	if len(ev.list()) != 0 || c.Len() != 3 {
		t.Fatalf("evicted %v, Len %d; want none evicted", ev.list(), c.Len())
	}
	vals["b"].busy.Store(false)
	mustCreate(t, c, "y")
	if got := ev.list(); fmt.Sprint(got) != "[b]" {
		t.Fatalf("evicted %v, want [b], the only idle entry", got)
	}
	for _, k := range []string{"a", "c", "y"} {
		if _, ok := c.Get(k); !ok {
			t.Errorf("%s is gone", k)
		}
	}
}

// A large cache scans a bounded number of entries per insert, but
// consecutive inserts cover the whole ring: a single idle entry is found.
func TestBoundedScanResumes(t *testing.T) {
	const max = 4 * scanLimit
	c, ev := newTest(max)
	var last *val
	for i := range max {
		last = mustCreate(t, c, strconv.Itoa(i))
		last.busy.Store(true)
	}
	last.busy.Store(false) // the one idle entry, at the end of the ring
	refused := 0
	for i := 0; ; i++ {
		if _, ok := c.GetOrCreate("new", mk("new")); ok {
			break
		}
		if refused++; refused > 2*max/scanLimit+1 {
			t.Fatalf("the idle entry was not found after %d inserts", refused)
		}
	}
	if got := ev.list(); len(got) != 1 || got[0] != strconv.Itoa(max-1) {
		t.Fatalf("evicted %v, want [%d]", got, max-1)
	}
	if refused == 0 {
		t.Fatal("the first insert scanned the whole ring: the scan is not bounded")
	}
}

// TestRecentlyUsedIdleEntriesMakeRoom checks that a cache larger than the
// bounded scan, whose entries were all used since the hand last passed but
// are not busy, evicts one for every new key instead of refusing it, and
// evicts the entries the scan found unmarked first.
func TestRecentlyUsedIdleEntriesMakeRoom(t *testing.T) {
	const max = 4 * scanLimit
	c, ev := newTest(max)
	for i := range max {
		mustCreate(t, c, strconv.Itoa(i))
	}
	for i := range max {
		c.Get(strconv.Itoa(i)) // every entry recently used
	}
	for i := range max {
		mustCreate(t, c, "new"+strconv.Itoa(i))
		if got := c.Len(); got > max {
			t.Fatalf("Len = %d, above the cap %d", got, max)
		}
	}
	if got := len(ev.list()); got != max {
		t.Fatalf("%d evicted for %d new keys, want one each", got, max)
	}
	// Each of the first inserts clears the marks of the scanLimit entries
	// it examines and evicts the first of them; once the hand went round,
	// the next inserts find the entries it passed unmarked, beginning with
	// the first new key, which took the first free slot and was not used.
	var want []string
	for i := 0; i < max; i += scanLimit {
		want = append(want, strconv.Itoa(i))
	}
	want = append(want, "new0", "1")
	if got := ev.list()[:len(want)]; !slices.Equal(got, want) {
		t.Fatalf("evicted %v first, want %v", got, want)
	}
}

// TestBusyEntriesSurviveConcurrentChurn checks, under concurrent lookups
// that keep marking entries and inserts that keep evicting, in a cache
// larger than the bounded scan, that no busy entry is ever evicted (also
// when an insert falls back to a marked entry), that Len never exceeds the
// cap, and that every refused insert met a scan of busy entries only.
func TestBusyEntriesSurviveConcurrentChurn(t *testing.T) {
	const max, workers, inserts = 4 * scanLimit, 4, 20_000
	var badEviction atomic.Value
	c := New(Config[string, *val]{
		Max:       max,
		Evictable: func(v *val) bool { return !v.busy.Load() },
		OnEvict: func(k string, v *val) {
			if v.busy.Load() {
				badEviction.Store(k)
			}
		},
	})
	// Every fourth entry of the initial fill is busy for the whole test.
	for i := range max {
		v, _ := c.GetOrCreate("fill"+strconv.Itoa(i), mk("fill"+strconv.Itoa(i)))
		v.busy.Store(i%4 == 0)
	}
	var wg sync.WaitGroup
	var over, refused atomic.Int64
	for w := range workers {
		wg.Go(func() {
			for i := w; i < inserts; i += workers {
				c.Get("fill" + strconv.Itoa(i%max)) // keeps marking entries
				if _, ok := c.GetOrCreate("new"+strconv.Itoa(i), mk("new"+strconv.Itoa(i))); !ok {
					refused.Add(1)
				}
				if n := c.Len(); n > max {
					over.Store(int64(n))
				}
			}
		})
	}
	wg.Wait()
	if k := badEviction.Load(); k != nil {
		t.Fatalf("busy entry %v was evicted", k)
	}
	if n := over.Load(); n != 0 {
		t.Fatalf("Len reached %d, above the cap %d", n, max)
	}
	// A quarter of the ring is busy, so a scan of scanLimit entries always
	// meets an idle one: no insert may be refused.
	if n := refused.Load(); n != 0 {
		t.Errorf("%d inserts refused although every scan met idle entries", n)
	}
	for i := 0; i < max; i += 4 {
		if _, ok := c.Peek("fill" + strconv.Itoa(i)); !ok {
			t.Fatalf("busy entry fill%d is gone", i)
		}
	}
}

func TestDelete(t *testing.T) {
	c, ev := newTest(2)
	mustCreate(t, c, "a")
	mustCreate(t, c, "b")
	a, _ := c.Peek("a")
	if v, ok := c.Delete("a"); !ok || v != a {
		t.Fatalf("Delete(a) = %v, %v, want a's value, true", v, ok)
	}
	if _, ok := c.Delete("a"); ok {
		t.Fatal("Delete(a) must report true once")
	}
	mustCreate(t, c, "c") // takes a's place without evicting
	if len(ev.list()) != 0 || c.Len() != 2 {
		t.Fatalf("evicted %v, Len %d", ev.list(), c.Len())
	}
	got := map[string]bool{}
	c.Range(func(k string, v *val) bool { got[k] = true; return true })
	if len(got) != 2 || !got["b"] || !got["c"] {
		t.Fatalf("Range saw %v, want b and c", got)
	}
	n := 0
	c.Range(func(string, *val) bool { n++; return false })
	if n != 1 {
		t.Fatalf("Range went on after fn returned false: %d calls", n)
	}
}

func TestZeroAndEmptyCaches(t *testing.T) {
	var zero Cache[string, int]
	if _, ok := zero.Get("a"); ok {
		t.Error("the zero Cache found a key")
	}
	if _, ok := zero.GetOrCreate("a", func() int { return 1 }); ok {
		t.Error("the zero Cache stored a key")
	}
	if _, ok := zero.Delete("a"); ok || zero.Len() != 0 {
		t.Error("the zero Cache is not empty")
	}
	zero.Range(func(string, int) bool { t.Error("Range on the zero Cache"); return true })
	c := New(Config[string, int]{Max: 0})
	if _, ok := c.GetOrCreate("a", func() int { t.Fatal("create called"); return 1 }); ok {
		t.Error("a cache of Max 0 stored a key")
	}
}

// OnEvict runs once the mutex is released: it may call the cache.
func TestOnEvictMayCallTheCache(t *testing.T) {
	var c *Cache[string, int]
	c = New(Config[string, int]{Max: 2, OnEvict: func(k string, _ int) {
		if k == "a" { // evicts b in turn
			c.GetOrCreate("from-"+k, func() int { return 0 })
		}
	}})
	c.GetOrCreate("a", func() int { return 1 })
	c.GetOrCreate("b", func() int { return 2 })
	c.GetOrCreate("c", func() int { return 3 })
	if _, ok := c.Get("from-a"); !ok {
		t.Fatal("OnEvict could not insert")
	}
}

// A user-supplied hash that sends every key to the same shard still works.
func TestCollidingHash(t *testing.T) {
	c := New(Config[int, int]{Max: 100, Hash: func(int) uint64 { return 7 }})
	for i := range 100 {
		c.GetOrCreate(i, func() int { return i * 2 })
	}
	for i := range 100 {
		if v, ok := c.Get(i); !ok || v != i*2 {
			t.Fatalf("Get(%d) = %d, %v", i, v, ok)
		}
	}
}

// Concurrent inserts of many distinct keys never exceed the cap, and every
// key that got an entry got exactly one value.
func TestCapUnderConcurrentInserts(t *testing.T) {
	const max, keys, workers = 1000, 100_000, 8
	var created, evictions atomic.Int64
	c := New(Config[string, *val]{
		Max:     max,
		OnEvict: func(string, *val) { evictions.Add(1) },
	})
	var wg sync.WaitGroup
	var over atomic.Int64
	for w := range workers {
		wg.Go(func() {
			for i := w; i < keys; i += workers {
				k := strconv.Itoa(i)
				v, ok := c.GetOrCreate(k, func() *val { created.Add(1); return &val{key: k} })
				if ok && v.key != k {
					t.Errorf("GetOrCreate(%s) returned the value of %s", k, v.key)
				}
				if n := c.Len(); n > max {
					over.Store(int64(n))
				}
				c.Get(strconv.Itoa(i / 2))
			}
		})
	}
	wg.Wait()
	if n := over.Load(); n != 0 {
		t.Fatalf("Len reached %d, above the cap %d", n, max)
	}
	n := 0
	c.Range(func(string, *val) bool { n++; return true })
	if c.Len() != max || n != max {
		t.Fatalf("Len %d, Range saw %d; want the cap %d", c.Len(), n, max)
	}
	if created.Load()-evictions.Load() != max {
		t.Fatalf("created %d, evicted %d: want the difference to be the cap %d", created.Load(), evictions.Load(), max)
	}
}

func TestGetAllocatesNothing(t *testing.T) {
	c, _ := newTest(100)
	key := strconv.Itoa(12345)
	mustCreate(t, c, key)
	if n := testing.AllocsPerRun(1000, func() { c.Get(key) }); n != 0 {
		t.Fatalf("Get of an existing key: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { c.GetOrCreate(key, mk(key)) }); n != 0 {
		t.Fatalf("GetOrCreate of an existing key: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { c.Get("missing") }); n != 0 {
		t.Fatalf("Get of a missing key: %v allocs, want 0", n)
	}
}

// Get marks an entry only when its mark is clear: a hot key's cache line
// stays shared between the goroutines that read it.
func TestGetWritesOnlyAClearMark(t *testing.T) {
	c, _ := newTest(2)
	mustCreate(t, c, "a")
	e := c.find(c.hash("a"), "a")
	e.ref.Store(false)
	c.Get("a")
	if !e.ref.Load() {
		t.Fatal("Get did not mark the entry used")
	}
}

// Peek finds an entry without marking it used.
func TestPeekDoesNotMark(t *testing.T) {
	c, _ := newTest(2)
	a := mustCreate(t, c, "a")
	e := c.find(c.hash("a"), "a")
	e.ref.Store(false)
	if v, ok := c.Peek("a"); !ok || v != a {
		t.Fatalf("Peek(a) = %v, %v", v, ok)
	}
	if e.ref.Load() {
		t.Fatal("Peek marked the entry used")
	}
	if _, ok := c.Peek("b"); ok {
		t.Fatal("Peek found a missing key")
	}
}

// TestWithoutEvictableAlwaysMakesRoom checks that a cache whose entries may
// all be evicted never refuses a new key, however many recently used
// entries the hand must pass first.
func TestWithoutEvictableAlwaysMakesRoom(t *testing.T) {
	const n = 1000 // more than the bounded scan looks at
	c := New(Config[int, int]{Max: n})
	for i := range n {
		c.GetOrCreate(i, func() int { return i })
	}
	for i := range n {
		c.Get(i) // every entry recently used
	}
	for i := n; i < 3*n; i++ {
		if _, ok := c.GetOrCreate(i, func() int { return i }); !ok {
			t.Fatalf("insert of key %d refused by a cache whose entries may all be evicted", i)
		}
		if got := c.Len(); got > n {
			t.Fatalf("Len = %d, above the cap %d", got, n)
		}
	}
}

// TestRangeDuringChurn checks that Range, run while other goroutines
// replace every entry many times over, sees each key at most once, never
// calls fn more than Max times, and allocates nothing.
func TestRangeDuringChurn(t *testing.T) {
	const max, workers, keys = 64, 4, 20000
	c := New(Config[string, *val]{Max: max})
	for i := range max {
		k := strconv.Itoa(i)
		c.GetOrCreate(k, func() *val { return &val{key: k} })
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < keys; i += workers {
				k := "churn" + strconv.Itoa(i)
				c.GetOrCreate(k, func() *val { return &val{key: k} })
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	seen := make(map[string]bool, max)
	for rounds := 0; ; rounds++ {
		clear(seen)
		n := 0
		c.Range(func(k string, v *val) bool {
			n++
			if seen[k] {
				t.Errorf("Range saw %q twice", k)
			}
			seen[k] = true
			if v.key != k {
				t.Errorf("Range gave key %q the value of %q", k, v.key)
			}
			return true
		})
		if n > max {
			t.Fatalf("Range called fn %d times, above the cap %d", n, max)
		}
		select {
		case <-done:
			if rounds == 0 {
				t.Log("the churn ended before the first Range")
			}
			if n := testing.AllocsPerRun(100, func() { c.Range(func(string, *val) bool { return true }) }); n != 0 {
				t.Fatalf("Range: %v allocs, want 0", n)
			}
			return
		default:
		}
	}
}

// TestRangeStopsAtMax checks the cap on fn's calls with a cache that holds
// exactly Max entries: fn runs Max times, and not once more.
func TestRangeStopsAtMax(t *testing.T) {
	c, _ := newTest(3)
	for _, k := range []string{"a", "b", "c"} {
		mustCreate(t, c, k)
	}
	n := 0
	c.Range(func(string, *val) bool { n++; return true })
	if n != 3 {
		t.Fatalf("Range called fn %d times, want 3", n)
	}
}

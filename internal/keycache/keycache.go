// Package keycache is a bounded cache for state keyed by input the library
// does not control: targets, methods, caller keys. It holds at most a fixed
// number of entries and makes room by evicting entries that have been idle,
// with the CLOCK (second-chance) algorithm; an entry its owner reports busy
// is never evicted. When the part of the cache an insert examines is full
// of busy entries, a new key is refused, and the caller sends it to a
// shared overflow entry.
//
// Lookups of existing keys take no lock and allocate nothing. Inserts and
// evictions take one mutex; an insert copies only the small shard its key
// hashes to and scans a bounded number of entries for a victim, so its cost
// does not grow with the number of keys.
package keycache

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
)

// Config configures a [Cache]. It is plain data; [New] copies it.
type Config[K comparable, V any] struct {
	// Max is the most entries the cache holds. Zero or negative: the cache
	// holds nothing, and GetOrCreate always refuses.
	Max int

	// Hash hashes a key. Nil means hash/maphash.Comparable with a seed of
	// the cache's own. It must be safe for concurrent use.
	Hash func(K) uint64

	// Evictable reports whether an entry may be evicted, for example
	// because nothing is in flight on it. Nil means every entry may be. It
	// is called with the cache's mutex held, so it must be quick and must
	// not call the cache; it may be called for any entry, concurrently with
	// lookups of it. The cache asks about an entry only right before it
	// would remove it: an entry Evictable accepts is the one evicted, so
	// Evictable may prepare the value for its eviction.
	Evictable func(V) bool

	// OnEvict, when not nil, is called after an entry was evicted to make
	// room for another, on the goroutine of the GetOrCreate that evicted
	// it, once the cache's mutex is released (it may call the cache). It
	// is not called for entries removed with Delete.
	OnEvict func(K, V)
}

// scanLimit bounds the entries an insert into a full cache examines for a
// victim. Twice the number of entries is enough to clear every reference
// bit and come back; a larger cache looks at scanLimit entries per insert,
// starting where the previous scan stopped, so the whole ring is still
// covered by consecutive inserts.
const scanLimit = 256

// maxShardLoad is the average number of entries per shard a full cache
// has; it bounds the copy an insert makes. maxShards bounds the shard
// array of very large caches.
const (
	maxShardLoad = 8
	maxShards    = 1 << 16
)

// Cache is a bounded map from K to V; see the package comment. Create one
// with [New]; the zero value holds nothing. A Cache is safe for concurrent
// use.
//
// A lookup that runs concurrently with the eviction of its key may still
// return the evicted value: the caller then uses, for that one call, a
// value no longer in the cache. Owners whose values guard something (a
// breaker, a bulkhead) make only idle values evictable, so such a value is
// one nothing depends on.
type Cache[K comparable, V any] struct {
	max       int
	hash      func(K) uint64
	evictable func(V) bool
	onEvict   func(K, V)
	shards    []atomic.Pointer[table[K, V]] // len is a power of two
	mask      uint64
	n         atomic.Int64 // entries; written under mu

	mu   sync.Mutex
	ring []*entry[K, V] // the CLOCK ring; nil slots are free
	free []int          // indexes of free slots of ring
	hand int            // next ring slot the clock examines
}

// table is the immutable content of a shard: replaced, never modified.
// Up to maxShardLoad slots live in the table itself, so that the copy an
// insert makes is one allocation.
type table[K comparable, V any] struct {
	slots  []slot[K, V]
	inline [maxShardLoad]slot[K, V]
}

// newTable returns a table for n slots, with slots set to length n.
func newTable[K comparable, V any](n int) *table[K, V] {
	t := &table[K, V]{}
	if n <= len(t.inline) {
		t.slots = t.inline[:n]
	} else {
		t.slots = make([]slot[K, V], n)
	}
	return t
}

type slot[K comparable, V any] struct {
	hash uint64
	e    *entry[K, V]
}

type entry[K comparable, V any] struct {
	key  K
	val  V
	hash uint64
	ref  atomic.Bool // used since the clock hand last passed
	idx  int         // position in the ring; guarded by Cache.mu
}

// New returns an empty cache configured by cfg.
func New[K comparable, V any](cfg Config[K, V]) *Cache[K, V] {
	c := &Cache[K, V]{
		max:       max(cfg.Max, 0),
		hash:      cfg.Hash,
		evictable: cfg.Evictable,
		onEvict:   cfg.OnEvict,
	}
	if c.hash == nil {
		seed := maphash.MakeSeed()
		c.hash = func(k K) uint64 { return maphash.Comparable(seed, k) }
	}
	n := min((c.max+maxShardLoad-1)/maxShardLoad, maxShards)
	n = 1 << bits.Len(uint(max(n, 1)-1)) // the next power of two
	c.shards = make([]atomic.Pointer[table[K, V]], n)
	c.mask = uint64(n - 1)
	return c
}

// find returns key's entry in the current table of its shard, or nil.
func (c *Cache[K, V]) find(h uint64, key K) *entry[K, V] {
	t := c.shards[h&c.mask].Load()
	if t == nil {
		return nil
	}
	for i := range t.slots {
		if s := &t.slots[i]; s.hash == h && s.e.key == key {
			return s.e
		}
	}
	return nil
}

// Get returns key's value and marks the entry used, so that the next pass
// of the clock hand spares it. It takes no lock and allocates nothing, and
// writes to the entry only when the hand cleared its mark since the last
// use, so that goroutines looking up a hot key share its cache line.
func (c *Cache[K, V]) Get(key K) (V, bool) {
	if len(c.shards) == 0 {
		var zero V
		return zero, false
	}
	e := c.find(c.hash(key), key)
	if e == nil {
		var zero V
		return zero, false
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	return e.val, true
}

// Peek returns key's value like Get, without marking the entry used.
func (c *Cache[K, V]) Peek(key K) (V, bool) {
	if len(c.shards) == 0 {
		var zero V
		return zero, false
	}
	e := c.find(c.hash(key), key)
	if e == nil {
		var zero V
		return zero, false
	}
	return e.val, true
}

// GetOrCreate returns key's value, creating it with create when the key is
// not in the cache. When the cache is full it first evicts one entry: one
// that was not used since the clock hand last passed it and that Evictable
// accepts, or, when the bounded scan finds none, the first entry of the
// scan that Evictable accepts when asked again, although it was used. Only
// when every entry the scan examined is busy (Evictable refuses it) does
// GetOrCreate return the
// zero V and false without calling create; the caller then uses a shared
// overflow value. A later insert resumes the scan where this one stopped.
// A cache without an Evictable function always makes room.
//
// create is called at most once per insert, with the cache's mutex held,
// so it must not call the cache. The insert does not count as a use: an
// entry not looked up again is evicted the first time the hand reaches
// it, so that a flood of keys seen once displaces keys seen once before
// the keys in use.
func (c *Cache[K, V]) GetOrCreate(key K, create func() V) (V, bool) {
	if len(c.shards) == 0 {
		var zero V
		return zero, false
	}
	h := c.hash(key)
	if e := c.find(h, key); e != nil {
		if !e.ref.Load() {
			e.ref.Store(true)
		}
		return e.val, true
	}
	var victim *entry[K, V]
	defer func() {
		// Deferred first, so it runs after the mutex is released, and
		// also when create panics after an eviction.
		if victim != nil && c.onEvict != nil {
			c.onEvict(victim.key, victim.val)
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.find(h, key); e != nil { // inserted while we waited
		e.ref.Store(true)
		return e.val, true
	}
	if int(c.n.Load()) >= c.max {
		if victim = c.evictLocked(); victim == nil {
			var zero V
			return zero, false
		}
	}
	e := &entry[K, V]{key: key, val: create(), hash: h}
	c.insertLocked(e)
	return e.val, true
}

// evictLocked runs the clock hand over at most scanLimit entries and
// removes and returns the first one that is unmarked and evictable; it
// clears the marks it passes. When it finds none, it goes over the same
// entries again and removes the first one Evictable accepts, so that a
// cache of recently used entries that are not busy still makes room; it
// returns nil only when every entry it examined is busy. Evictable is
// asked about an entry only right before that entry would be removed, so
// an entry it accepts is always the one removed, and an entry that turned
// busy while the scan went on is asked again. Without an Evictable
// function every entry may go, so the hand goes on until it finds one:
// within one turn of the ring it has cleared every mark, so it stops
// within two, and, as the marks it clears stay cleared, costs O(1) per
// insert on average. With one, an insert examines at most 2*scanLimit
// entries.
func (c *Cache[K, V]) evictLocked() *entry[K, V] {
	n := len(c.ring)
	if n == 0 {
		return nil
	}
	budget := min(2*n, scanLimit)
	if c.evictable == nil {
		budget = 2*n + 1
	}
	start := c.hand
	marked := false // the scan cleared a mark: the second pass has a candidate
	for range budget {
		if c.hand >= n {
			c.hand = 0
		}
		e := c.ring[c.hand]
		c.hand++
		switch {
		case e == nil:
		case e.ref.Load():
			e.ref.Store(false)
			marked = true
		case c.evictable == nil || c.evictable(e.val):
			c.removeLocked(e)
			return e
		}
	}
	if !marked {
		return nil // every entry examined is busy, and Evictable said so
	}
	// The first entry of the scan whose mark it cleared, asked now. The
	// busy entries the first pass refused are asked again on the way: one
	// that became idle meanwhile may go too.
	for i := range budget {
		e := c.ring[(start+i)%n]
		// Without Evictable the first pass can end here too: lookups may
		// mark entries again while it runs.
		if e != nil && (c.evictable == nil || c.evictable(e.val)) {
			c.removeLocked(e)
			return e
		}
	}
	return nil
}

// insertLocked adds e to its shard and to the ring.
func (c *Cache[K, V]) insertLocked(e *entry[K, V]) {
	sh := &c.shards[e.hash&c.mask]
	var n int
	old := sh.Load()
	if old != nil {
		n = len(old.slots)
	}
	t := newTable[K, V](n + 1)
	if old != nil {
		copy(t.slots, old.slots)
	}
	t.slots[n] = slot[K, V]{e.hash, e}
	sh.Store(t)
	if k := len(c.free); k > 0 {
		e.idx = c.free[k-1]
		c.free = c.free[:k-1]
		c.ring[e.idx] = e
	} else {
		e.idx = len(c.ring)
		c.ring = append(c.ring, e)
	}
	c.n.Add(1)
}

// removeLocked removes e from its shard and from the ring.
func (c *Cache[K, V]) removeLocked(e *entry[K, V]) {
	sh := &c.shards[e.hash&c.mask]
	old := sh.Load()
	if len(old.slots) == 1 {
		sh.Store(nil)
	} else {
		t := newTable[K, V](len(old.slots) - 1)
		i := 0
		for _, s := range old.slots {
			if s.e != e {
				t.slots[i] = s
				i++
			}
		}
		sh.Store(t)
	}
	c.ring[e.idx] = nil
	c.free = append(c.free, e.idx)
	c.n.Add(-1)
}

// Delete removes key's entry, whatever its state, and returns its value
// and whether it was there. OnEvict is not called.
func (c *Cache[K, V]) Delete(key K) (V, bool) {
	var zero V
	if len(c.shards) == 0 {
		return zero, false
	}
	h := c.hash(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.find(h, key)
	if e == nil {
		return zero, false
	}
	c.removeLocked(e)
	return e.val, true
}

// Len returns the number of entries; it never exceeds Config.Max.
func (c *Cache[K, V]) Len() int { return int(c.n.Load()) }

// Range calls fn for each entry, in no particular order, until fn returns
// false. It takes no lock and allocates nothing: it reads each shard's
// table once (a key always lives in the same shard), so each key is seen
// at most once, entries added or removed meanwhile may or may not be
// seen, and fn may call the cache. It calls fn at most
// Config.Max times, even while other goroutines replace entries as it
// goes. It does not mark entries used.
func (c *Cache[K, V]) Range(fn func(K, V) bool) {
	left := c.max
	for i := range c.shards {
		t := c.shards[i].Load()
		if t == nil {
			continue
		}
		for _, s := range t.slots {
			if left == 0 || !fn(s.e.key, s.e.val) {
				return
			}
			left--
		}
	}
}

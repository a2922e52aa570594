package bulkhead

import (
	"hash/maphash"

	"github.com/engineeringlabs/grpc-resilience/internal/keycache"
)

// DefaultMaxKeys is the number of keyed partitions a [Partitioned] holds
// when PartitionedConfig.MaxKeys is zero.
const DefaultMaxKeys = 1024

// PartitionedConfig configures a [Partitioned]. It is plain data:
// [NewPartitioned] copies it. New is required; every other field has a
// default for its zero value.
type PartitionedConfig struct {
	// MaxKeys bounds the number of keys with a partition of their own.
	// Zero means [DefaultMaxKeys] (1024). A negative value means no keyed
	// partitions: every key shares the overflow partition, and OnOverflow
	// is not called for it.
	MaxKeys int

	// New builds the bulkhead of a new key, and, with the key "", the
	// overflow partition, once, in [NewPartitioned]. It is called with the
	// Partitioned's lock held, so it must not call the Partitioned; each
	// call should return a new Bulkhead (in particular, with its own
	// [Strategy]). It may return nil to send a key to the overflow
	// partition; such a key still takes a place under the cap (it is
	// evicted like an idle partition), so New is not asked about it again
	// meanwhile. New is required.
	New func(key string) *Bulkhead

	// OnEvict, when not nil, is called with the key of a partition the
	// Partitioned dropped to make room for another key: one with nothing
	// in flight and nobody waiting, not used since the clock hand last
	// passed it. A later Get of the key builds a new partition. It runs on
	// the goroutine of the Get that made room, after the lock is released,
	// so it may call the Partitioned; it may be called concurrently.
	OnEvict func(key string)

	// OnOverflow, when not nil, is called with a key that found every
	// place under the cap taken by partitions in use, for every such Get;
	// that Get returns the overflow partition. It runs on the goroutine of
	// that Get, holding no lock; it may be called concurrently and must be
	// quick.
	OnOverflow func(key string)
}

// Partitioned keeps one [Bulkhead] per key (a method, a tenant, a caller),
// so that one key's load cannot take the slots of another.
//
// # Bounded state
//
// It holds at most PartitionedConfig.MaxKeys keyed partitions, so that a
// flood of distinct, possibly untrusted keys costs bounded memory. When it
// is full, a new key takes the place of an idle partition: nothing in
// flight, nobody waiting, and not used since the clock hand last passed it
// (CLOCK, or second-chance, eviction). A partition in use is never
// evicted, so its in-flight accounting holds for as long as it matters.
// When no partition can be evicted, the key shares the overflow partition
// with every other such key, and OnOverflow says so.
//
// A Partitioned is safe for concurrent use. Create it with
// [NewPartitioned]; the zero value is not usable.
type Partitioned struct {
	parts      *keycache.Cache[string, *Bulkhead] // nil: no keyed partitions
	newFn      func(key string) *Bulkhead
	overflow   *Bulkhead
	onOverflow func(key string)
}

// NewPartitioned returns an empty Partitioned configured by cfg, with its
// overflow partition cfg.New("") built at once.
//
// NewPartitioned panics if cfg.New is nil or cfg.New("") returns nil: both
// are programming errors that no request could fix.
func NewPartitioned(cfg PartitionedConfig) *Partitioned {
	if cfg.New == nil {
		panic("bulkhead: NewPartitioned: PartitionedConfig.New is nil")
	}
	overflow := cfg.New("")
	if overflow == nil {
		panic(`bulkhead: NewPartitioned: PartitionedConfig.New("") returned nil; the overflow partition must be a Bulkhead`)
	}
	p := &Partitioned{newFn: cfg.New, overflow: overflow, onOverflow: cfg.OnOverflow}
	if cfg.MaxKeys < 0 {
		return p
	}
	maxKeys := cfg.MaxKeys
	if maxKeys == 0 {
		maxKeys = DefaultMaxKeys
	}
	var onEvict func(string, *Bulkhead)
	if f := cfg.OnEvict; f != nil {
		onEvict = func(key string, _ *Bulkhead) { f(key) }
	}
	seed := maphash.MakeSeed()
	p.parts = keycache.New(keycache.Config[string, *Bulkhead]{
		Max:       maxKeys,
		Hash:      func(s string) uint64 { return maphash.String(seed, s) },
		Evictable: p.idle,
		OnEvict:   onEvict,
	})
	return p
}

// idle reports whether a partition may be evicted: nothing in flight and
// nobody waiting. A key that New sent to the overflow partition holds
// nothing of its own.
func (p *Partitioned) idle(b *Bulkhead) bool {
	if b == p.overflow {
		return true
	}
	return b.idle()
}

// Get returns key's bulkhead, building it with PartitionedConfig.New on
// first use, and the overflow partition when every place under the cap is
// taken by a partition in use (it then calls OnOverflow). Get("") returns
// the overflow partition. It never returns nil, and it takes no lock and
// allocates nothing once key has its partition.
func (p *Partitioned) Get(key string) *Bulkhead {
	if key == "" || p.parts == nil {
		return p.overflow
	}
	if b, ok := p.parts.Get(key); ok {
		return b
	}
	b, ok := p.parts.GetOrCreate(key, func() *Bulkhead {
		if b := p.newFn(key); b != nil {
			return b
		}
		return p.overflow
	})
	if ok {
		return b
	}
	if f := p.onOverflow; f != nil {
		f(key)
	}
	return p.overflow
}

// Lookup returns key's bulkhead if key has a place under the cap (the
// overflow partition for a key that New sent there), for metrics and
// consoles: it never builds a partition, does not count as a use of it,
// takes no lock and allocates nothing.
func (p *Partitioned) Lookup(key string) (*Bulkhead, bool) {
	if p.parts == nil {
		return nil, false
	}
	return p.parts.Peek(key)
}

// Overflow returns the partition shared by the keys that found no place
// under the cap. It is never evicted.
func (p *Partitioned) Overflow() *Bulkhead { return p.overflow }

// Len returns the number of keys with a place under the cap, those New
// sent to the overflow partition included; it never exceeds the cap.
func (p *Partitioned) Len() int {
	if p.parts == nil {
		return 0
	}
	return p.parts.Len()
}

// Range calls fn for each key with a place under the cap and its bulkhead,
// in no particular order, until fn returns false; the overflow partition
// is not included (see [Partitioned.Overflow]), though a key that New sent
// to it is, with the overflow partition as its bulkhead. It takes no lock
// and allocates nothing, so fn may call the Partitioned; it calls fn at
// most MaxKeys times and sees each key at most once; keys added or evicted
// meanwhile may or may not be seen.
func (p *Partitioned) Range(fn func(key string, b *Bulkhead) bool) {
	if p.parts != nil {
		p.parts.Range(fn)
	}
}

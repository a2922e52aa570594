package bulkhead

import "sync"

// Partitioned keeps one [Bulkhead] per key (a method, a tenant, a caller),
// so that one key's load cannot take the slots of another.
//
// It holds at most its cap of keyed partitions. Once that many keys have
// been seen, every new key shares one overflow partition, so that a flood of
// distinct, possibly untrusted keys costs bounded memory. Partitions are
// never evicted: a key keeps its partition, and its in-flight accounting,
// for the life of the Partitioned.
//
// A Partitioned is safe for concurrent use. Create it with
// [NewPartitioned]; the zero value is not usable.
type Partitioned struct {
	maxKeys  int
	newFn    func(key string) *Bulkhead
	overflow *Bulkhead

	mu    sync.RWMutex
	parts map[string]*Bulkhead
}

// NewPartitioned returns a Partitioned with at most maxKeys keyed
// partitions; a maxKeys below 1 means none, so that every key shares the
// overflow partition.
//
// newFn builds the bulkhead of a new key. It is called at most once per key,
// with a lock held, so it must not call the Partitioned; each call should
// return a new Bulkhead (in particular, with its own [Strategy]). It may
// return nil to send a key to the overflow partition; such a key still takes
// a place under the cap, so newFn is not asked about it again. The overflow partition is newFn(""), built at once;
// Get("") returns it as well.
//
// NewPartitioned panics if newFn is nil or newFn("") returns nil: both are
// programming errors that no request could fix.
func NewPartitioned(maxKeys int, newFn func(key string) *Bulkhead) *Partitioned {
	if newFn == nil {
		panic("bulkhead: NewPartitioned: newFn is nil")
	}
	overflow := newFn("")
	if overflow == nil {
		panic(`bulkhead: NewPartitioned: newFn("") returned nil; the overflow partition must be a Bulkhead`)
	}
	return &Partitioned{
		maxKeys:  max(maxKeys, 0),
		newFn:    newFn,
		overflow: overflow,
		parts:    make(map[string]*Bulkhead),
	}
}

// Get returns key's bulkhead, building it with newFn on first use while
// fewer than the cap of keys have partitions, and the overflow partition
// otherwise. It never returns nil, and allocates nothing once key has its
// partition or the cap is reached.
func (p *Partitioned) Get(key string) *Bulkhead {
	if key == "" {
		return p.overflow
	}
	p.mu.RLock()
	b, ok := p.parts[key]
	full := len(p.parts) >= p.maxKeys
	p.mu.RUnlock()
	if ok {
		return b
	}
	if full {
		return p.overflow
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	// Another goroutine may have added key, or filled the last place,
	// between the two locks.
	if b, ok := p.parts[key]; ok {
		return b
	}
	if len(p.parts) >= p.maxKeys {
		return p.overflow
	}
	b = p.newFn(key)
	if b == nil {
		b = p.overflow
	}
	p.parts[key] = b
	return b
}

// Overflow returns the partition shared by the keys beyond the cap.
func (p *Partitioned) Overflow() *Bulkhead { return p.overflow }

// Len returns the number of keys with a place under the cap, those newFn
// sent to the overflow partition included; it never exceeds the cap.
func (p *Partitioned) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.parts)
}

// Range calls fn for each key with a place under the cap and its bulkhead,
// in no particular order, until fn returns false; the keys beyond the cap
// are not included (see [Partitioned.Overflow]). It works on a snapshot taken under a read lock,
// so fn may call the Partitioned, and keys added meanwhile may be missed.
func (p *Partitioned) Range(fn func(key string, b *Bulkhead) bool) {
	p.mu.RLock()
	type kv struct {
		key string
		b   *Bulkhead
	}
	snap := make([]kv, 0, len(p.parts))
	for k, b := range p.parts {
		snap = append(snap, kv{k, b})
	}
	p.mu.RUnlock()
	for _, e := range snap {
		if !fn(e.key, e.b) {
			return
		}
	}
}

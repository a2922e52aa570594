package breaker

import (
	"errors"
	"hash/maphash"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/internal/keycache"
)

// DefaultMaxKeys is the bound of a [Registry] whose
// RegistryConfig.MaxKeys is zero.
const DefaultMaxKeys = 1024

// overflowName is the Config.Name of a registry's overflow breaker.
const overflowName = "(overflow)"

// RegistryConfig configures a [Registry]. It is plain data: [NewRegistry]
// copies it. Every field has a default for its zero value, so
// RegistryConfig{} is a working configuration.
type RegistryConfig struct {
	// Breaker configures every breaker of the registry, the overflow
	// breaker included; the registry sets each one's Name to its key. Its
	// listeners are shared by all the breakers: the events carry the
	// breaker's name.
	Breaker Config

	// MaxKeys bounds the number of named breakers the registry holds.
	// Zero means [DefaultMaxKeys] (1024). Negative values are invalid
	// and treated as zero.
	MaxKeys int

	// OnEvict, when not nil, is called with the name of a breaker the
	// registry dropped to make room for another: one that was closed, in
	// [Auto] mode, with no probe in flight, and not looked up since the
	// registry's clock hand last passed it. A later Get of the name
	// creates a new, closed breaker. It runs on the goroutine of the Get
	// that made room, after the registry released its lock, so it may
	// call the registry; it may be called concurrently.
	OnEvict func(name string)

	// OnOverflow, when not nil, is called with the name a Get could not
	// give a breaker of its own because the registry was full of breakers
	// it may not evict; that Get returns the overflow breaker. It runs on
	// the goroutine of that Get, holding no lock, for every such Get; it
	// may be called concurrently and must be quick.
	OnOverflow func(name string)

	// OnCreate, when not nil, is called with each named breaker the
	// registry creates, so that something can join it, such as a fleet
	// that shares breaker state (package redisfleet). It runs on the
	// goroutine of the Get that created the breaker, just after the
	// registry published it and holding no lock, so it may call the
	// registry; a concurrent Get of the same name may use the breaker a
	// moment before OnCreate returns. The release it returns, when not
	// nil, is called once when the registry drops the breaker: evicted
	// (after OnEvict) or removed. The overflow breaker, which has no name
	// of its own, is not offered.
	OnCreate func(name string, b *Breaker) (release func())
}

// Validate reports every invalid field of c, each as a
// *[resilience.FieldError] ("MaxKeys", or "Breaker.FailureThreshold"
// for the fields of Breaker), joined with [errors.Join]; nil when c is
// valid. [NewRegistry] treats an invalid field as zero.
func (c RegistryConfig) Validate() error {
	var errs []error
	for _, fe := range resilience.FieldErrors(c.Breaker.Validate()) {
		errs = append(errs, fe.Prefix("Breaker"))
	}
	if c.MaxKeys < 0 {
		errs = append(errs, &resilience.FieldError{Field: "MaxKeys", Value: c.MaxKeys, Reason: "must not be negative"})
	}
	return errors.Join(errs...)
}

// Registry is a bounded set of named breakers that share one [Config], for
// example one breaker per target, service or method, whose names may come
// from the network. Create one with [NewRegistry]; the zero value is an
// empty registry configured by RegistryConfig{}. A Registry is safe for
// concurrent use and must not be copied after first use.
//
// # Bounded state
//
// A Registry holds at most RegistryConfig.MaxKeys named breakers. When
// it is full, a new name takes the place of a breaker that is idle: closed
// in [Auto] mode with no probe in flight, and not looked up since the
// registry's clock hand last passed it (CLOCK, or second-chance,
// eviction). An open, half-open or forced breaker is a protection in force
// and is never evicted. When no breaker can be evicted, [Registry.Get]
// returns the registry's one overflow breaker, shared by every name that
// did not get its own, whose Config.Name is "(overflow)"; see
// [Registry.Overflow]. RegistryConfig.OnEvict and RegistryConfig.OnOverflow
// report both events.
//
// Looking up an existing breaker takes no lock and allocates nothing.
// Adding one takes the registry's mutex and costs the same whatever the
// number of breakers.
type Registry struct {
	cfg  RegistryConfig
	now  func() time.Duration // nil: each breaker gets the real clock
	once sync.Once
	c    *keycache.Cache[string, *Breaker] // set by once
	over *Breaker                          // set by once
}

// NewRegistry returns an empty registry configured by cfg. It never fails:
// a field that [RegistryConfig.Validate] rejects is treated as zero, that
// is, as its default.
func NewRegistry(cfg RegistryConfig) *Registry {
	r := &Registry{cfg: cfg}
	return r
}

func (r *Registry) init() {
	r.once.Do(func() {
		max := r.cfg.MaxKeys
		if max <= 0 {
			max = DefaultMaxKeys
		}
		seed := maphash.MakeSeed()
		var onEvict func(string, *Breaker)
		if f, created := r.cfg.OnEvict, r.cfg.OnCreate; f != nil || created != nil {
			onEvict = func(name string, b *Breaker) {
				if f != nil {
					f(name)
				}
				if release := b.release.Load(); release != nil {
					(*release)()
				}
			}
		}
		r.c = keycache.New(keycache.Config[string, *Breaker]{
			Max:       max,
			Hash:      func(s string) uint64 { return maphash.String(seed, s) },
			Evictable: (*Breaker).Idle,
			OnEvict:   onEvict,
		})
		r.over = r.newBreaker(overflowName)
	})
}

func (r *Registry) newBreaker(name string) *Breaker {
	cfg := r.cfg.Breaker
	cfg.Name = name
	if r.now != nil {
		return newBreaker(cfg, r.now)
	}
	return New(cfg)
}

// created runs RegistryConfig.OnCreate for b, which the registry just
// published under name, and keeps the release it returns.
func (r *Registry) created(name string, b *Breaker) {
	release := r.cfg.OnCreate(name, b)
	if release == nil {
		return
	}
	release = sync.OnceFunc(release)
	b.release.Store(&release)
	if cur, ok := r.c.Peek(name); !ok || cur != b {
		release() // dropped before its release was kept
	}
}

// Idle reports whether the breaker guards nothing at the moment: it is
// closed in [Auto] mode with no probe in flight, so that replacing it with
// a new breaker would change no decision but forget its counts. Caches of
// breakers (such as [Registry]) evict only idle breakers. Unlike
// [Breaker.State], it never changes the state and takes no lock.
func (b *Breaker) Idle() bool {
	w := b.word.Load()
	return stateOf(w) == Closed && modeOf(w) == Auto && b.probes.Load() == 0
}

// Get returns the breaker called name, creating it if the registry does not
// hold it, and marks it used. It never returns nil: when the registry is
// full and no breaker can be evicted, it calls RegistryConfig.OnOverflow
// and returns the overflow breaker (see [Registry.Overflow]). Getting an
// existing breaker takes no lock and allocates nothing.
func (r *Registry) Get(name string) *Breaker {
	r.init()
	if b, ok := r.c.Get(name); ok {
		return b
	}
	var made *Breaker
	if b, ok := r.c.GetOrCreate(name, func() *Breaker { made = r.newBreaker(name); return made }); ok {
		if b == made && r.cfg.OnCreate != nil {
			r.created(name, b)
		}
		return b
	}
	if f := r.cfg.OnOverflow; f != nil {
		f(name)
	}
	return r.over
}

// Overflow returns the breaker shared by the names that found the registry
// full; its Config.Name is "(overflow)". It is never evicted.
func (r *Registry) Overflow() *Breaker {
	r.init()
	return r.over
}

// Lookup returns the breaker called name, if the registry holds it; it
// never creates one, and does not count as a use of it.
func (r *Registry) Lookup(name string) (*Breaker, bool) {
	r.init()
	return r.c.Peek(name)
}

// Remove drops the breaker called name from the registry, whatever its
// state, making room for another, and reports whether it was there.
// Whoever still holds the breaker may keep using it; a later Get creates a
// new one. RegistryConfig.OnEvict is not called; the release that
// RegistryConfig.OnCreate returned is.
func (r *Registry) Remove(name string) bool {
	r.init()
	b, ok := r.c.Delete(name)
	if ok {
		if release := b.release.Load(); release != nil {
			(*release)()
		}
	}
	return ok
}

// Len returns the number of named breakers in the registry, the overflow
// breaker excluded; it never exceeds the bound.
func (r *Registry) Len() int {
	r.init()
	return r.c.Len()
}

// Range calls fn for each named breaker of the registry, the overflow
// breaker excluded (see [Registry.Overflow]), in no particular order,
// until fn returns false. It takes no lock and allocates nothing, calls
// fn at most RegistryConfig.MaxKeys times and sees each name at most once;
// breakers added or evicted meanwhile may or may not be seen. fn may call
// the registry. It does not count as a use of the breakers. [Registry.All]
// gives them sorted by name.
func (r *Registry) Range(fn func(name string, b *Breaker) bool) {
	r.init()
	r.c.Range(fn)
}

// All returns the registry's named breakers in the order of their names,
// the overflow breaker excluded. It takes a snapshot first: breakers added
// or removed during the iteration may or may not be seen.
func (r *Registry) All() iter.Seq2[string, *Breaker] {
	return func(yield func(string, *Breaker) bool) {
		r.init()
		type kv struct {
			name string
			b    *Breaker
		}
		var snap []kv
		r.Range(func(k string, v *Breaker) bool {
			snap = append(snap, kv{k, v})
			return true
		})
		slices.SortFunc(snap, func(a, b kv) int { return strings.Compare(a.name, b.name) })
		for _, e := range snap {
			if !yield(e.name, e.b) {
				return
			}
		}
	}
}

package throttle

import (
	"hash/maphash"
	"sync"

	"github.com/engineeringlabs/grpc-resilience/internal/keycache"
)

// DefaultMaxKeys is the bound of a [Registry] whose RegistryConfig.MaxKeys
// is zero.
const DefaultMaxKeys = 1024

// RegistryConfig configures a [Registry]. It is plain data: [NewRegistry]
// copies it. Every field has a default for its zero value.
type RegistryConfig struct {
	// Throttle configures every throttle of the registry, the overflow
	// throttle included.
	Throttle Config

	// MaxKeys bounds the number of named throttles the registry holds.
	// Zero means [DefaultMaxKeys] (1024). Negative values are treated as
	// zero.
	MaxKeys int

	// OnEvict, when not nil, is called with the name of a throttle the
	// registry dropped to make room for another: one that rejected
	// nothing ([Throttle.Idle]) and was not looked up since the registry's
	// clock hand last passed it. It runs on the goroutine of the Get that
	// made room, holding no lock; it may be called concurrently.
	OnEvict func(name string)

	// OnOverflow, when not nil, is called with the name a Get could not
	// give a throttle of its own because the registry was full of
	// throttles that are rejecting requests; that Get returns the overflow
	// throttle. It runs on the goroutine of that Get, holding no lock; it
	// may be called concurrently and must be quick.
	OnOverflow func(name string)
}

// Registry is a bounded set of named throttles that share one Config, for
// example one per target or service, whose names may come from the
// network. Create one with [NewRegistry]; the zero value is an empty
// registry configured by RegistryConfig{}. A Registry is safe for
// concurrent use and must not be copied after first use.
//
// It holds at most RegistryConfig.MaxKeys named throttles. When it is
// full, a new name takes the place of an idle throttle (one that rejects
// nothing now); when every throttle is rejecting requests, the new name
// shares one overflow throttle and RegistryConfig.OnOverflow hears of it,
// so that no name goes unprotected and none silently.
type Registry struct {
	once sync.Once
	cfg  RegistryConfig
	c    *keycache.Cache[string, *Throttle]
	over *Throttle
}

// NewRegistry returns an empty registry configured by cfg. It never fails.
func NewRegistry(cfg RegistryConfig) *Registry {
	r := &Registry{cfg: cfg}
	r.init()
	return r
}

func (r *Registry) init() {
	r.once.Do(func() {
		maxKeys := r.cfg.MaxKeys
		if maxKeys <= 0 {
			maxKeys = DefaultMaxKeys
		}
		seed := maphash.MakeSeed()
		onEvict := r.cfg.OnEvict
		r.c = keycache.New(keycache.Config[string, *Throttle]{
			Max:       maxKeys,
			Hash:      func(s string) uint64 { return maphash.String(seed, s) },
			Evictable: (*Throttle).Idle,
			OnEvict: func(name string, _ *Throttle) {
				if onEvict != nil {
					onEvict(name)
				}
			},
		})
		r.over = New(r.cfg.Throttle)
	})
}

// Get returns the throttle called name, creating it if the registry does
// not hold it. It never returns nil: when the registry is full and no
// throttle can be evicted, it calls RegistryConfig.OnOverflow and returns
// the overflow throttle. Getting an existing throttle takes no lock and
// allocates nothing.
func (r *Registry) Get(name string) *Throttle {
	r.init()
	if t, ok := r.c.Get(name); ok {
		return t
	}
	if t, ok := r.c.GetOrCreate(name, func() *Throttle { return New(r.cfg.Throttle) }); ok {
		return t
	}
	if f := r.cfg.OnOverflow; f != nil {
		f(name)
	}
	return r.over
}

// Lookup returns the throttle called name, if the registry holds it; it
// never creates one.
func (r *Registry) Lookup(name string) (*Throttle, bool) {
	r.init()
	return r.c.Peek(name)
}

// Overflow returns the throttle shared by the names that found the
// registry full. It is never evicted.
func (r *Registry) Overflow() *Throttle {
	r.init()
	return r.over
}

// Len returns the number of named throttles, the overflow one excluded.
func (r *Registry) Len() int {
	r.init()
	return r.c.Len()
}

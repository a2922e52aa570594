package breaker

import (
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"time"
)

// DefaultMaxBreakers is the bound of a [Registry] created with a
// maxBreakers of zero or less.
const DefaultMaxBreakers = 1024

// ErrRegistryFull is returned, wrapped, by [Registry.Get] when the registry
// holds its maximum number of breakers and the name is not among them.
var ErrRegistryFull = errors.New("breaker: registry full")

// Registry is a bounded set of named breakers that share one [Config], for
// example one breaker per target, service or method. Create one with
// [NewRegistry]; the zero value is an empty registry of breakers with the
// zero Config (every default) and the default bound, [DefaultMaxBreakers].
// A Registry is safe for concurrent use and must not be copied after first
// use.
//
// Looking up an existing breaker takes no lock and allocates nothing;
// creating one takes the registry's mutex.
type Registry struct {
	cfg     Config
	now     func() time.Duration // nil: each breaker gets the real clock
	max     int                  // guarded by mu
	errFull error                // built on first refusal; guarded by mu

	breakers sync.Map // string -> *Breaker; written under mu
	mu       sync.Mutex
	n        int // number of breakers; guarded by mu
}

// NewRegistry returns an empty registry whose breakers are configured by
// cfg, each with Config.Name set to its key, holding at most maxBreakers
// breakers; zero or less means [DefaultMaxBreakers] (1024). The listeners
// in cfg are shared by all the breakers: events carry the breaker's name.
func NewRegistry(cfg Config, maxBreakers int) *Registry {
	if maxBreakers <= 0 {
		maxBreakers = DefaultMaxBreakers
	}
	return &Registry{cfg: cfg, max: maxBreakers}
}

// Get returns the breaker called name, creating it if it does not exist
// yet. When the registry is full and holds no breaker of that name, Get
// returns a nil breaker and an error matching [ErrRegistryFull] (callers
// usually proceed without a breaker, or with a shared fallback one).
func (r *Registry) Get(name string) (*Breaker, error) {
	if b, ok := r.breakers.Load(name); ok {
		return b.(*Breaker), nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Created by another goroutine while we waited for the lock?
	if b, ok := r.breakers.Load(name); ok {
		return b.(*Breaker), nil
	}
	if r.max <= 0 {
		r.max = DefaultMaxBreakers // the zero Registry; guarded by mu
	}
	if r.n >= r.max {
		if r.errFull == nil {
			r.errFull = fmt.Errorf("breaker: registry of at most %d breakers: %w", r.max, ErrRegistryFull)
		}
		return nil, r.errFull
	}
	cfg := r.cfg
	cfg.Name = name
	var b *Breaker
	if r.now != nil {
		b = newBreaker(cfg, r.now)
	} else {
		b = New(cfg)
	}
	r.breakers.Store(name, b)
	r.n++
	return b, nil
}

// Lookup returns the breaker called name, if the registry holds it; it
// never creates one.
func (r *Registry) Lookup(name string) (*Breaker, bool) {
	b, ok := r.breakers.Load(name)
	if !ok {
		return nil, false
	}
	return b.(*Breaker), true
}

// Remove drops the breaker called name from the registry, making room for
// another, and reports whether it was there. Whoever still holds the
// breaker may keep using it; a later Get creates a new one.
func (r *Registry) Remove(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.breakers.LoadAndDelete(name); ok {
		r.n--
		return true
	}
	return false
}

// Len returns the number of breakers in the registry.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// All returns the registry's breakers in the order of their names. It takes
// a snapshot of the names first: breakers added or removed during the
// iteration may or may not be seen.
func (r *Registry) All() iter.Seq2[string, *Breaker] {
	return func(yield func(string, *Breaker) bool) {
		var names []string
		r.breakers.Range(func(k, _ any) bool {
			names = append(names, k.(string))
			return true
		})
		slices.Sort(names)
		for _, name := range names {
			if b, ok := r.Lookup(name); ok && !yield(name, b) {
				return
			}
		}
	}
}

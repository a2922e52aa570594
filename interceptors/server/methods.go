package server

import "strings"

// byMethod holds a value per full method and per service, with a default,
// for the stages configured per method (fault injection, rate limits). It
// is immutable once built, so lookups need no lock.
type byMethod[T any] struct {
	def      T
	methods  map[string]T // "/pkg.Service/Method"
	services map[string]T // "/pkg.Service/"
}

// set records v for pattern, a key that methodPattern accepted, in its
// canonical form: a full method, or a service with a trailing slash.
func (b *byMethod[T]) set(pattern string, v T) {
	target := &b.methods
	if strings.HasSuffix(pattern, "/") {
		target = &b.services
	}
	if *target == nil {
		*target = map[string]T{}
	}
	(*target)[pattern] = v
}

// lookup returns the value of fullMethod: its own, its service's or the
// default. It allocates nothing.
func (b *byMethod[T]) lookup(fullMethod string) T {
	if v, ok := b.methods[fullMethod]; ok {
		return v
	}
	if v, ok := b.services[serviceOf(fullMethod)]; ok {
		return v
	}
	return b.def
}

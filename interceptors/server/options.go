package server

import (
	"fmt"
	"strings"
)

// Option configures what the interceptors built by [NewDeadline],
// [NewBulkhead] and [NewChaos] share: exemptions and the observer.
type Option func(*options)

type options struct {
	exempt   []string
	observer Observer
}

// WithExempt exempts further methods from the interceptor, on top of the
// services that are always exempt: "/grpc.health.v1.Health/",
// "/grpc.reflection.v1.ServerReflection/" and
// "/grpc.reflection.v1alpha.ServerReflection/". Each entry is a
// full method name ("/pkg.Service/Method") or a whole service, written
// with a trailing slash ("/pkg.Service/"). Entries that are not of either
// form make the constructor fail. Several WithExempt options add up.
func WithExempt(methods ...string) Option {
	return func(o *options) { o.exempt = append(o.exempt, methods...) }
}

// WithObserver sends the interceptor's events to obs. The default, and what
// a nil obs selects, is an observer that does nothing.
func WithObserver(obs Observer) Option {
	return func(o *options) { o.observer = obs }
}

func buildOptions(opts []Option) (options, *exemptions, error) {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.observer == nil {
		o.observer = nopObserver{}
	}
	ex, err := newExemptions("WithExempt", o.exempt)
	return o, ex, err
}

// defaultExempt are the services that every interceptor of this package
// lets through untouched: health checking and server reflection (v1 and
// v1alpha). They cannot be removed.
var defaultExempt = [...]string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

// exemptions is a set of exempt full methods and services. It is
// immutable after construction and so safe for concurrent use.
type exemptions struct {
	methods  map[string]struct{}
	services map[string]struct{} // "/pkg.Service/"
}

// newExemptions builds the set of defaultExempt and extra; field names the
// setting in errors.
func newExemptions(field string, extra []string) (*exemptions, error) {
	e := &exemptions{methods: map[string]struct{}{}, services: map[string]struct{}{}}
	for _, s := range defaultExempt {
		e.services[s] = struct{}{}
	}
	for i, m := range extra {
		if err := checkMethodPattern(m); err != nil {
			return nil, fmt.Errorf("server: %s[%d]: %q, %v", field, i, m, err)
		}
		if strings.HasSuffix(m, "/") {
			e.services[m] = struct{}{}
		} else {
			e.methods[m] = struct{}{}
		}
	}
	return e, nil
}

// checkMethodPattern checks that p is "/pkg.Service/Method" or
// "/pkg.Service/".
func checkMethodPattern(p string) error {
	if len(p) < 3 || p[0] != '/' {
		return fmt.Errorf(`must be "/pkg.Service/Method" or "/pkg.Service/"`)
	}
	i := strings.IndexByte(p[1:], '/') + 1
	if i <= 1 || strings.IndexByte(p[i+1:], '/') >= 0 {
		return fmt.Errorf(`must be "/pkg.Service/Method" or "/pkg.Service/"`)
	}
	return nil
}

// serviceOf returns the "/pkg.Service/" prefix of a full method name, or ""
// when it has none. It never allocates.
func serviceOf(fullMethod string) string {
	i := strings.LastIndexByte(fullMethod, '/')
	if i <= 0 {
		return ""
	}
	return fullMethod[:i+1]
}

// match reports whether fullMethod is exempt. It allocates nothing.
func (e *exemptions) match(fullMethod string) bool {
	if _, ok := e.services[serviceOf(fullMethod)]; ok {
		return true
	}
	_, ok := e.methods[fullMethod]
	return ok
}

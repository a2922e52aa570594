package server

import "strings"

// defaultExempt are the services that every stage of a [Server] lets
// through untouched: health checking and server reflection (v1 and
// v1alpha). They cannot be removed.
var defaultExempt = [...]string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

// patternReason is the Reason of a FieldError for a bad method pattern.
const patternReason = `must be "pkg.Service", "/pkg.Service/" or "/pkg.Service/Method"`

// methodPattern returns p in canonical form, "/pkg.Service/Method" for a
// method or "/pkg.Service/" for a whole service, and whether p is one of
// the accepted forms: "pkg.Service", "/pkg.Service/" or
// "/pkg.Service/Method".
func methodPattern(p string) (string, bool) {
	if p == "" {
		return "", false
	}
	if p[0] != '/' {
		// A service name, as the client's Config.Services spells it.
		if strings.IndexByte(p, '/') >= 0 {
			return "", false
		}
		return "/" + p + "/", true
	}
	i := strings.IndexByte(p[1:], '/') + 1
	if i <= 1 || strings.IndexByte(p[i+1:], '/') >= 0 {
		return "", false
	}
	return p, true
}

// exemptions is a set of exempt full methods and services. It is
// immutable after construction and so safe for concurrent use.
type exemptions struct {
	methods  map[string]struct{}
	services map[string]struct{} // "/pkg.Service/"
}

// newExemptions builds the set of defaultExempt and extra; entries of
// extra that are not method patterns are skipped (Config.Validate reports
// them).
func newExemptions(extra []string) *exemptions {
	e := &exemptions{methods: map[string]struct{}{}, services: map[string]struct{}{}}
	for _, s := range defaultExempt {
		e.services[s] = struct{}{}
	}
	for _, m := range extra {
		p, ok := methodPattern(m)
		switch {
		case !ok:
		case strings.HasSuffix(p, "/"):
			e.services[p] = struct{}{}
		default:
			e.methods[p] = struct{}{}
		}
	}
	return e
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

package throttle

import (
	"fmt"
	"testing"
)

func TestRegistryBoundAndOverflow(t *testing.T) {
	var evicted, overflowed []string
	r := NewRegistry(RegistryConfig{
		Throttle:   Config{MinRequests: 1},
		MaxKeys:    2,
		OnEvict:    func(name string) { evicted = append(evicted, name) },
		OnOverflow: func(name string) { overflowed = append(overflowed, name) },
	})
	a, b := r.Get("a"), r.Get("b")
	if a == b || r.Get("a") != a {
		t.Fatal("Get does not keep one throttle per name")
	}
	// Both reject now: neither may be evicted.
	record(t, a, Rejected, 5)
	record(t, b, Rejected, 5)
	if c := r.Get("c"); c != r.Overflow() {
		t.Fatal("a full registry of rejecting throttles did not hand out the overflow throttle")
	}
	if len(overflowed) != 1 || overflowed[0] != "c" || len(evicted) != 0 {
		t.Fatalf("overflowed %v evicted %v", overflowed, evicted)
	}
	// b recovers: it becomes idle and may make room.
	record(t, b, Accepted, 50)
	for i := range 4 {
		if d := r.Get(fmt.Sprint("d", i)); d != r.Overflow() {
			break
		}
	}
	if len(evicted) != 1 || evicted[0] != "b" || r.Len() != 2 {
		t.Fatalf("evicted %v, len %d; want b evicted", evicted, r.Len())
	}
	if got, ok := r.Lookup("a"); !ok || got != a {
		t.Fatal("the rejecting throttle a was evicted")
	}
	var zero Registry
	if zero.Get("x") == nil || zero.Len() != 1 {
		t.Fatal("the zero Registry is not usable")
	}
}

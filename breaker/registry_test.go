package breaker

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

func TestRegistry(t *testing.T) {
	var names []string
	r := NewRegistry(Config{FailureThreshold: 1, OnStateChange: func(c StateChange) { names = append(names, c.Name) }}, 2)
	clk := &fakeClock{}
	r.now = clk.now

	a, err := r.Get("a")
	if err != nil || a == nil {
		t.Fatalf("Get(a) = %v, %v", a, err)
	}
	if again, _ := r.Get("a"); again != a {
		t.Fatal("Get(a) twice returned two breakers")
	}
	if _, err := r.Get("b"); err != nil {
		t.Fatalf("Get(b) = %v", err)
	}
	if b, err := r.Get("c"); b != nil || !errors.Is(err, ErrRegistryFull) {
		t.Fatalf("Get(c) on a full registry = %v, %v; want nil, ErrRegistryFull", b, err)
	}
	if got, _ := r.Get("a"); got != a {
		t.Fatal("a full registry no longer returns its breakers")
	}
	if _, ok := r.Lookup("c"); ok {
		t.Fatal("Lookup created or found c")
	}
	if r.Len() != 2 {
		t.Fatalf("Len = %d, want 2", r.Len())
	}

	p, _ := a.Allow()
	p.Done(Failure)
	if len(names) != 1 || names[0] != "a" {
		t.Fatalf("events named %v, want [a]: the shared listener must learn the breaker's name", names)
	}
	if m := a.Metrics(); m.Name != "a" || m.State != Open {
		t.Fatalf("a's metrics %+v", m)
	}

	if !r.Remove("a") || r.Remove("a") {
		t.Fatal("Remove(a) must report true once")
	}
	c, err := r.Get("c")
	if err != nil || c == nil {
		t.Fatalf("Get(c) after a removal = %v, %v", c, err)
	}
	var got []string
	for name, b := range r.All() {
		if lb, _ := r.Lookup(name); lb != b {
			t.Fatalf("All yielded a breaker for %s that Lookup does not return", name)
		}
		got = append(got, name)
	}
	if fmt.Sprint(got) != "[b c]" {
		t.Fatalf("All = %v, want [b c] in name order", got)
	}
	for range r.All() {
		break // stopping early must not panic
	}
}

func TestRegistryDefaultBound(t *testing.T) {
	r := NewRegistry(Config{}, 0)
	for i := range DefaultMaxBreakers {
		if _, err := r.Get(fmt.Sprint(i)); err != nil {
			t.Fatalf("Get #%d: %v", i, err)
		}
	}
	if _, err := r.Get("one too many"); !errors.Is(err, ErrRegistryFull) {
		t.Fatalf("Get beyond the default bound = %v, want ErrRegistryFull", err)
	}
}

// Concurrent Gets of the same names create one breaker per name and never
// exceed the bound.
func TestRegistryConcurrentGet(t *testing.T) {
	const bound = 5
	r := NewRegistry(Config{}, bound)
	var (
		mu   sync.Mutex
		seen = map[string]*Breaker{}
		full int
		wg   sync.WaitGroup
	)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				name := fmt.Sprint((g + i) % 10)
				b, err := r.Get(name)
				mu.Lock()
				switch {
				case errors.Is(err, ErrRegistryFull):
					full++
				case err != nil:
					t.Error(err)
				case seen[name] == nil:
					seen[name] = b
				case seen[name] != b:
					t.Errorf("two breakers for %s", name)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != bound || r.Len() != bound || full == 0 {
		t.Fatalf("%d names got breakers, Len %d, %d refusals; want %d, %d, some", len(seen), r.Len(), full, bound, bound)
	}
}

func TestZeroRegistry(t *testing.T) {
	var r Registry
	b, err := r.Get("x")
	if err != nil || b == nil || b.Metrics().Name != "x" {
		t.Fatalf("zero Registry Get = %v, %v", b, err)
	}
	if r.Len() != 1 {
		t.Fatalf("Len = %d, want 1", r.Len())
	}
}

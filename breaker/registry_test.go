package breaker

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// hooks records the registry's events; safe for concurrent use.
type hooks struct {
	mu                 sync.Mutex
	evicted, overflows []string
}

func (h *hooks) evict(name string) { h.mu.Lock(); h.evicted = append(h.evicted, name); h.mu.Unlock() }
func (h *hooks) overflow(name string) {
	h.mu.Lock()
	h.overflows = append(h.overflows, name)
	h.mu.Unlock()
}
func (h *hooks) lists() (evicted, overflows []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.evicted), slices.Clone(h.overflows)
}

// newTestRegistry returns a registry of at most max breakers on a fake
// clock, recording its events.
func newTestRegistry(cfg Config, max int) (*Registry, *fakeClock, *hooks) {
	h := &hooks{}
	r := NewRegistry(RegistryConfig{Breaker: cfg, MaxKeys: max, OnEvict: h.evict, OnOverflow: h.overflow})
	clk := &fakeClock{}
	r.now = clk.now
	return r, clk, h
}

func TestRegistry(t *testing.T) {
	var names []string
	r, _, _ := newTestRegistry(Config{FailureThreshold: 1, OnStateChange: func(c StateChange) { names = append(names, c.Name) }}, 2)

	a := r.Get("a")
	if a == nil || r.Get("a") != a {
		t.Fatal("Get(a) twice returned two breakers")
	}
	if b := r.Get("b"); b == nil || b == a || b == r.Overflow() {
		t.Fatalf("Get(b) = %p", b)
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
	c := r.Get("c")
	if c == r.Overflow() {
		t.Fatal("Get(c) after a removal got the overflow breaker")
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
	if r.Overflow().Metrics().Name != "(overflow)" {
		t.Fatalf("overflow breaker named %q", r.Overflow().Metrics().Name)
	}
}

// A full registry of idle breakers evicts one per new name and stays at
// its bound.
func TestRegistryDefaultBound(t *testing.T) {
	r, _, h := newTestRegistry(Config{}, 0)
	for i := range DefaultMaxKeys {
		r.Get(strconv.Itoa(i))
	}
	if r.Len() != DefaultMaxKeys {
		t.Fatalf("Len = %d, want %d", r.Len(), DefaultMaxKeys)
	}
	if b := r.Get("one more"); b == r.Overflow() {
		t.Fatal("a registry full of idle breakers sent a new name to the overflow breaker")
	}
	evicted, overflows := h.lists()
	if len(evicted) != 1 || len(overflows) != 0 || r.Len() != DefaultMaxKeys {
		t.Fatalf("evicted %v, overflows %v, Len %d", evicted, overflows, r.Len())
	}
	if _, ok := r.Lookup(evicted[0]); ok {
		t.Fatalf("the evicted breaker %s is still there", evicted[0])
	}
}

// Each state that guards calls keeps its breaker: open, half-open with a
// probe in flight, half-open without one, forced open and forced closed.
// Of the closed breakers, the one looked up since it was added gets a
// second chance; the idle one is evicted first.
func TestRegistryEvictsOnlyIdleClosedBreakers(t *testing.T) {
	r, clk, h := newTestRegistry(Config{FailureThreshold: 1, Timeout: time.Second}, 7)
	trip := func(name string) *Breaker {
		b := r.Get(name)
		mustAllow(t, b).Done(Failure)
		return b
	}
	open := trip("open")
	probing, halfOpen := trip("probing"), trip("half-open")
	r.Get("forced-open").ForceOpen()
	r.Get("forced-closed").ForceClosed()
	r.Get("used")
	idle := r.Get("idle")
	r.Get("used") // a use since the hand last passed
	clk.advance(time.Second)
	probe := mustAllow(t, probing) // half-open, probe in flight
	mustAllow(t, open).Done(Failure)
	if open.State() != Open || probing.State() != HalfOpen || halfOpen.State() != HalfOpen {
		t.Fatalf("setup: states %v %v %v", open.State(), probing.State(), halfOpen.State())
	}

	if b := r.Get("new"); b == r.Overflow() {
		t.Fatal("the idle breaker did not make room")
	}
	if evicted, _ := h.lists(); fmt.Sprint(evicted) != "[idle]" {
		t.Fatalf("evicted %v, want [idle]: used had a second chance", evicted)
	}
	if _, ok := r.Lookup("idle"); ok || idle.State() != Closed {
		t.Fatal("idle is still in the registry")
	}
	// The hand cleared used's mark: it is the next to go.
	r.Get("newer")
	if evicted, _ := h.lists(); fmt.Sprint(evicted) != "[idle used]" {
		t.Fatalf("evicted %v, want [idle used]", evicted)
	}
	for _, name := range []string{"open", "probing", "half-open", "forced-open", "forced-closed"} {
		if _, ok := r.Lookup(name); !ok {
			t.Errorf("%s was evicted", name)
		}
	}
	// Once new and newer guard calls too, nothing may go.
	r.Get("new").ForceOpen()
	trip("newer")
	if b := r.Get("newest"); b != r.Overflow() {
		t.Fatal("a registry of protections made room")
	}
	if evicted, overflows := h.lists(); len(evicted) != 2 || fmt.Sprint(overflows) != "[newest]" {
		t.Fatalf("evicted %v, overflows %v", evicted, overflows)
	}
	probe.Done(Success)
}

// A name that finds the registry full of protections gets the shared
// overflow breaker, which works as a breaker and is reported each time.
func TestRegistryOverflow(t *testing.T) {
	var changes []string
	r, _, h := newTestRegistry(Config{FailureThreshold: 1, OnStateChange: func(c StateChange) { changes = append(changes, c.Name) }}, 1)
	r.Get("a").ForceOpen()
	x, y := r.Get("x"), r.Get("y")
	if x != r.Overflow() || y != x {
		t.Fatal("names beyond the bound did not share the overflow breaker")
	}
	if _, overflows := h.lists(); fmt.Sprint(overflows) != "[x y]" {
		t.Fatalf("overflows %v, want [x y]", overflows)
	}
	mustAllow(t, x).Done(Failure)
	if mustReject(t, y).Name() != "(overflow)" {
		t.Fatal("the overflow breaker does not say its name")
	}
	if fmt.Sprint(changes) != "[a (overflow)]" {
		t.Fatalf("state changes of %v", changes)
	}
	if r.Len() != 1 {
		t.Fatalf("Len = %d: the overflow breaker counts", r.Len())
	}
	for name := range r.All() {
		if name != "a" {
			t.Fatalf("All yielded %q", name)
		}
	}
}

// Concurrent Gets of many names create one breaker per name held, never
// exceed the bound, and never return nil.
func TestRegistryConcurrentGet(t *testing.T) {
	const bound, names = 50, 10_000
	var evictions, overflows atomic.Int64
	r := NewRegistry(RegistryConfig{
		MaxKeys:    bound,
		OnEvict:    func(string) { evictions.Add(1) },
		OnOverflow: func(string) { overflows.Add(1) },
	})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range names {
				name := strconv.Itoa((g*7919 + i) % names)
				b := r.Get(name)
				if b == nil {
					t.Error("Get returned nil")
					return
				}
				if b != r.Overflow() && b.Metrics().Name != name {
					t.Errorf("Get(%s) returned %s", name, b.Metrics().Name)
				}
				if n := r.Len(); n > bound {
					t.Errorf("Len %d above the bound %d", n, bound)
				}
			}
		})
	}
	wg.Wait()
	if r.Len() != bound || evictions.Load() == 0 {
		t.Fatalf("Len %d, %d evictions; want %d, some", r.Len(), evictions.Load(), bound)
	}
}

func TestZeroRegistry(t *testing.T) {
	var r Registry
	if b := r.Get("x"); b == nil || b.Metrics().Name != "x" {
		t.Fatalf("zero Registry Get = %v", b)
	}
	if r.Len() != 1 {
		t.Fatalf("Len = %d, want 1", r.Len())
	}
}

func TestRegistryConfigValidate(t *testing.T) {
	if err := (RegistryConfig{}).Validate(); err != nil {
		t.Fatalf("zero RegistryConfig: %v", err)
	}
	err := RegistryConfig{Breaker: Config{FailureThreshold: -1}, MaxKeys: -1}.Validate()
	var got []string
	for _, fe := range resilience.FieldErrors(err) {
		got = append(got, fe.Field)
	}
	if fmt.Sprint(got) != "[Breaker.FailureThreshold MaxKeys]" {
		t.Fatalf("fields %v (%v)", got, err)
	}
}

// TestIdle checks that only a closed, automatic breaker without probes
// reports idle, and that asking never changes the state.
func TestIdle(t *testing.T) {
	b, clk := newFake(Config{FailureThreshold: 1, Timeout: time.Second, SuccessThreshold: 1})
	if !b.Idle() {
		t.Fatal("a new breaker is not idle")
	}
	p, _ := b.Allow()
	p.Done(Failure)
	if b.Idle() {
		t.Fatal("an open breaker is idle")
	}
	clk.advance(2 * time.Second)
	if b.Idle() {
		t.Fatal("an open breaker whose open duration ran out is idle")
	}
	if w := b.word.Load(); stateOf(w) != Open {
		t.Fatalf("Idle changed the state to %v", stateOf(w))
	}
	probe, err := b.Allow() // half-opens and takes the probe slot
	if err != nil || b.State() != HalfOpen || b.Idle() {
		t.Fatalf("half-open with a probe: err %v, state %v, idle %v", err, b.State(), b.Idle())
	}
	probe.Done(Success) // closes
	if !b.Idle() {
		t.Fatalf("closed again after the probe, state %v: not idle", b.State())
	}
	b.ForceClosed()
	if b.Idle() {
		t.Fatal("a forced-closed breaker is idle")
	}
}

// Range visits every named breaker once, not the overflow breaker, stops
// when fn returns false, and allocates nothing.
func TestRegistryRange(t *testing.T) {
	r, _, _ := newTestRegistry(Config{FailureThreshold: 1}, 3)
	want := map[string]*Breaker{}
	for _, name := range []string{"a", "b", "c"} {
		want[name] = r.Get(name)
	}
	r.Get("d") // the registry is full of idle breakers: d evicts one
	got := map[string]*Breaker{}
	r.Range(func(name string, b *Breaker) bool {
		if got[name] != nil {
			t.Errorf("Range saw %q twice", name)
		}
		got[name] = b
		return true
	})
	if len(got) != r.Len() || len(got) != 3 {
		t.Fatalf("Range saw %d breakers, Len is %d", len(got), r.Len())
	}
	for name, b := range got {
		if b == r.Overflow() {
			t.Fatal("Range gave the overflow breaker")
		}
		if lb, ok := r.Lookup(name); !ok || lb != b {
			t.Errorf("Range gave %q a breaker Lookup does not return", name)
		}
	}
	n := 0
	r.Range(func(string, *Breaker) bool { n++; return false })
	if n != 1 {
		t.Fatalf("Range went on after fn returned false: %d calls", n)
	}
	if a := testing.AllocsPerRun(100, func() { r.Range(func(string, *Breaker) bool { return true }) }); a != 0 {
		t.Fatalf("Range: %v allocs, want 0", a)
	}
	var zero Registry
	zero.Range(func(string, *Breaker) bool { t.Error("Range on an empty registry called fn"); return true })
}

// OnCreate hears of each named breaker the registry creates, not of the
// overflow breaker, and the release it returned runs once when the
// registry drops the breaker, by eviction or Remove, and never for a
// breaker it keeps.
func TestRegistryOnCreate(t *testing.T) {
	var mu sync.Mutex
	created := map[string]*Breaker{}
	released := map[string]int{}
	var r *Registry
	r = NewRegistry(RegistryConfig{MaxKeys: 2, OnCreate: func(name string, b *Breaker) func() {
		if got, ok := r.Lookup(name); !ok || got != b { // runs holding no lock of the registry's
			t.Errorf("OnCreate(%s) before the registry published the breaker", name)
		}
		mu.Lock()
		defer mu.Unlock()
		created[name] = b
		return func() { mu.Lock(); released[name]++; mu.Unlock() }
	}})
	a, b := r.Get("a"), r.Get("b")
	r.Get("a") // an existing breaker is not created again
	mu.Lock()
	if len(created) != 2 || created["a"] != a || created["b"] != b {
		t.Errorf("created %v, want a and b once each", created)
	}
	mu.Unlock()
	// The registry is full: c takes the place of an idle breaker, whose
	// release runs; Remove releases too, once.
	r.Get("c")
	if !r.Remove("c") || r.Remove("c") {
		t.Fatal("Remove(c) must report true once")
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for name, n := range released {
		if n != 1 {
			t.Errorf("%s released %d times, want once", name, n)
		}
		total += n
	}
	if total != 2 || released["c"] != 1 || released[overflowName] != 0 {
		t.Errorf("released %v, want the evicted breaker and c, once each", released)
	}
}

package redisfleet

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/internal/redistest"
)

// fastSync is the sync interval of the tests: short, so that they run
// quickly, long enough for a loaded machine.
const fastSync = 20 * time.Millisecond

// settle bounds every wait for a state to spread: generous, for a loaded
// 2-core machine; the tests poll and return as soon as the state shows.
const settle = 10 * time.Second

// proc is one process of a simulated fleet: its own client, its own
// Breakers, one local breaker joined as "dep".
type proc struct {
	f      *Breakers
	b      *breaker.Breaker
	leave  func()
	errs   chan error
	states chan breaker.StateChange
}

func newProc(t *testing.T, srv *redistest.Server, cfg BreakersConfig, bc breaker.Config) *proc {
	t.Helper()
	p := &proc{errs: make(chan error, 1000), states: make(chan breaker.StateChange, 1000)}
	cfg.Client = newClient(t, srv)
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = fastSync
	}
	cfg.OnError = func(_ string, err error) {
		select {
		case p.errs <- err:
		default:
		}
	}
	bc.OnStateChange = func(c breaker.StateChange) {
		select {
		case p.states <- c:
		default:
		}
	}
	f, err := NewBreakers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	p.f = f
	p.b = breaker.New(bc)
	if p.leave, err = f.Join("dep", p.b); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fail records n failed calls on b (they must be permitted).
func fail(t *testing.T, b *breaker.Breaker, n int) {
	t.Helper()
	for range n {
		p, err := b.Allow()
		if err != nil {
			t.Fatalf("Allow: %v", err)
		}
		p.Done(breaker.Failure)
	}
}

// waitSynced waits until p's Breakers completed a round trip with Redis.
func waitSynced(t *testing.T, ps ...*proc) {
	t.Helper()
	for _, p := range ps {
		n := p.f.Metrics().Syncs
		waitFor(t, settle, "no round trip with Redis", func() bool { return p.f.Metrics().Syncs > n })
	}
}

func TestBreakersConfigValidate(t *testing.T) {
	err := BreakersConfig{
		Prefix:                strings.Repeat("p", MaxPrefixLen+1),
		SyncInterval:          time.Microsecond,
		Window:                -1,
		FailureRateThreshold:  math.NaN(),
		SlowCallRateThreshold: 101,
		MinimumCalls:          -1,
		ProbeLease:            time.Millisecond,
		Timeout:               -1,
		MaxBreakers:           -1,
	}.Validate()
	want := []string{"Client", "Prefix", "SyncInterval", "Window", "FailureRateThreshold", "SlowCallRateThreshold", "MinimumCalls", "ProbeLease", "Timeout", "MaxBreakers"}
	var got []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *resilience.FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a *FieldError", e)
		}
		got = append(got, fe.Field)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("fields %v, want %v", got, want)
	}
	if _, err := NewBreakers(BreakersConfig{}); err == nil {
		t.Fatal("NewBreakers without a client succeeded")
	}
	if err := (BreakersConfig{Window: MaxFleetWindow}).settings(); err.windowSec != 3600 || err.failureRate != DefaultFleetFailureRate {
		t.Fatalf("settings: %+v", err)
	}
}

func TestBreakersJoin(t *testing.T) {
	srv := redistest.Start(t)
	f, err := NewBreakers(BreakersConfig{Client: newClient(t, srv), MaxBreakers: 2})
	if err != nil {
		t.Fatal(err)
	}
	b := breaker.New(breaker.Config{})
	for _, tc := range []struct {
		name string
		b    *breaker.Breaker
	}{{"", b}, {strings.Repeat("n", MaxBreakerNameLen+1), b}, {"x", nil}} {
		if _, err := f.Join(tc.name, tc.b); err == nil {
			t.Errorf("Join(%.10q, %p) succeeded", tc.name, tc.b)
		}
	}
	leave, err := f.Join("a", b)
	if err != nil {
		t.Fatal(err)
	}
	// A second breaker under the same name takes the first one's place;
	// the first one's leave then changes nothing.
	leave2, err := f.Join("a", breaker.New(breaker.Config{}))
	if err != nil || f.Metrics().Joined != 1 {
		t.Fatalf("a second breaker under the same name: %v, Joined %d; want it in the first one's place", err, f.Metrics().Joined)
	}
	if _, err := f.Join("b", breaker.New(breaker.Config{})); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Join("c", breaker.New(breaker.Config{})); err == nil {
		t.Error("joined more than MaxBreakers")
	}
	leave()
	leave()
	if got := f.Metrics().Joined; got != 2 {
		t.Fatalf("Joined = %d after the replaced breaker left, want 2", got)
	}
	leave2()
	if got := f.Metrics().Joined; got != 1 {
		t.Fatalf("Joined = %d after leaving, want 1", got)
	}
	if _, err := f.Join("a", b); err != nil {
		t.Fatalf("joining again after leaving: %v", err)
	}
	_ = f.Close()
	_ = f.Close()
	if _, err := f.Join("d", breaker.New(breaker.Config{})); !errors.Is(err, ErrClosed) {
		t.Fatalf("Join after Close = %v, want ErrClosed", err)
	}
}

// One process's breaker opens on its own threshold: every other process's
// breaker opens (tripped), well within 500ms on an idle machine.
func TestBreakersBroadcastOpen(t *testing.T) {
	srv := redistest.Start(t)
	bc := breaker.Config{FailureThreshold: 3, Timeout: time.Minute}
	a := newProc(t, srv, BreakersConfig{}, bc)
	b := newProc(t, srv, BreakersConfig{}, bc)
	c := newProc(t, srv, BreakersConfig{}, bc)
	waitSynced(t, a, b, c)

	fail(t, a.b, 3)
	opened := time.Now()
	waitFor(t, settle, "b and c did not open", func() bool {
		return b.b.State() == breaker.Open && c.b.State() == breaker.Open
	})
	t.Logf("the fleet opened %v after the first process", time.Since(opened))
	for _, p := range []*proc{b, c} {
		ev := <-p.states
		if ev.To != breaker.Open || ev.Reason != breaker.ReasonTripped || ev.OpenFor != time.Minute {
			t.Fatalf("state change %+v, want a trip for 1m", ev)
		}
		if m := p.f.Metrics(); m.Trips != 1 || m.Published != 0 {
			t.Fatalf("metrics %+v, want 1 trip, nothing published", m)
		}
	}
	waitFor(t, settle, "a did not publish the opening", func() bool { return a.f.Metrics().Published == 1 })
	if m := a.f.Metrics(); m.Trips != 0 {
		t.Fatalf("a tripped itself: %+v", m)
	}
	waitFor(t, settle, "the transition was not heard", func() bool { return c.f.Metrics().Received >= 1 })

	// A process joining later finds the fleet open.
	d := newProc(t, srv, BreakersConfig{}, bc)
	waitFor(t, settle, "a late joiner did not open", func() bool { return d.b.State() == breaker.Open })
}

// No process reaches its own threshold, but the fleet's failure rate over
// the window does: every process opens.
func TestBreakersFleetRateOpens(t *testing.T) {
	srv := redistest.Start(t)
	bc := breaker.Config{FailureThreshold: 1000, Timeout: time.Minute}
	cfg := BreakersConfig{FailureRateThreshold: 50, MinimumCalls: 30}
	ps := []*proc{newProc(t, srv, cfg, bc), newProc(t, srv, cfg, bc), newProc(t, srv, cfg, bc)}
	waitSynced(t, ps...)
	for _, p := range ps {
		for i := range 10 {
			pm, err := p.b.Allow()
			if err != nil {
				t.Fatal(err)
			}
			pm.Done(breaker.Outcome(i % 2)) // half succeed, half fail
		}
		pm, _ := p.b.Allow()
		pm.Done(breaker.Ignored) // not in the window
	}
	waitFor(t, settle, "the fleet's rate did not open every breaker", func() bool {
		for _, p := range ps {
			if p.b.State() != breaker.Open {
				return false
			}
		}
		return true
	})
	var published uint64
	for _, p := range ps {
		published += p.f.Metrics().Published
	}
	if published < 1 {
		t.Fatalf("no process opened the fleet")
	}
	// The window in Redis holds every process's counts, ignored calls
	// left out.
	win, _, _ := breakerKeys(DefaultPrefix, "dep")
	c := newClient(t, srv)
	h, err := c.Do(context.Background(), c.B().Hgetall().Key(win).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	sums := map[byte]int{}
	for field, v := range h {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("window field %s = %q", field, v)
		}
		sums[field[len(field)-1]] += n
	}
	if sums['c'] != 30 || sums['f'] != 15 || sums['s'] != 0 {
		t.Fatalf("window %v: calls %d failures %d slow %d, want 30, 15, 0", h, sums['c'], sums['f'], sums['s'])
	}

	// Below the rate nothing opens: a fresh prefix, 40% failures.
	cfg.Prefix = "other:"
	qs := []*proc{newProc(t, srv, cfg, bc), newProc(t, srv, cfg, bc)}
	waitSynced(t, qs...)
	for _, p := range qs {
		for i := range 20 {
			o := breaker.Success
			if i%5 < 2 {
				o = breaker.Failure
			}
			pm, _ := p.b.Allow()
			pm.Done(o)
		}
	}
	waitSynced(t, qs...)
	waitSynced(t, qs...)
	for _, p := range qs {
		if got := p.b.State(); got != breaker.Closed {
			t.Fatalf("below the fleet's rate, a breaker is %v", got)
		}
	}
}

// allOf reports whether every process's breaker is in state s.
func allOf(ps []*proc, s breaker.State) func() bool {
	return func() bool {
		for _, p := range ps {
			if p.b.State() != s {
				return false
			}
		}
		return true
	}
}

// probe polls the processes' breakers until one grants a (half-open)
// permit, and returns its index and the permit.
func probe(t *testing.T, ps []*proc) (int, breaker.Permit) {
	t.Helper()
	prober, held := -1, breaker.Permit{}
	waitFor(t, settle, "no process probed", func() bool {
		for i, p := range ps {
			if pm, err := p.b.Allow(); err == nil {
				if pm.State() != breaker.HalfOpen {
					t.Fatalf("process %d granted a %v permit, want a probe", i, pm.State())
				}
				prober, held = i, pm
				return true
			}
		}
		return false
	})
	return prober, held
}

// When the fleet's open time is over, exactly one process probes while
// the others keep rejecting, for as long as its probe runs (its lease is
// extended meanwhile); its success closes every process.
func TestBreakersOneProber(t *testing.T) {
	srv := redistest.Start(t)
	bc := breaker.Config{FailureThreshold: 1, SuccessThreshold: 1, Timeout: 300 * time.Millisecond}
	const lease = 2 * time.Second
	cfg := BreakersConfig{ProbeLease: lease}
	ps := []*proc{newProc(t, srv, cfg, bc), newProc(t, srv, cfg, bc), newProc(t, srv, cfg, bc)}
	waitSynced(t, ps...)
	fail(t, ps[0].b, 1)
	waitFor(t, settle, "the fleet did not open", allOf(ps, breaker.Open))

	for round, outcome := range []breaker.Outcome{breaker.Failure, breaker.Success} {
		prober, held := probe(t, ps)
		// The probe runs for longer than the lease: the lease must have
		// been extended meanwhile.
		began := time.Now()
		waitFor(t, settle, "the probe did not outlive the lease", func() bool {
			for j, p := range ps {
				if j == prober {
					continue
				}
				if pm, err := p.b.Allow(); err == nil {
					pm.Done(breaker.Ignored)
					t.Fatalf("round %d: process %d probed while process %d held the lease", round, j, prober)
				}
			}
			return time.Since(began) > lease*5/4
		})
		published := ps[prober].f.Metrics().Published
		held.Done(outcome)
		if outcome == breaker.Failure {
			// The probe failed: the fleet opens again, nobody probes
			// until its new open time is over.
			waitFor(t, settle, "the failed probe was not published", func() bool {
				return ps[prober].f.Metrics().Published > published
			})
			for j, p := range ps {
				if got := p.b.State(); got != breaker.Open {
					t.Fatalf("after a failed probe process %d is %v, want open", j, got)
				}
			}
			continue
		}
		waitFor(t, settle, "the fleet did not close after the probe", allOf(ps, breaker.Closed))
		var leases, resets uint64
		for j, p := range ps {
			m := p.f.Metrics()
			leases += m.ProbeLeases
			if j != prober {
				resets += m.Resets
			}
		}
		if leases < 2 || resets != 2 {
			t.Fatalf("%d leases won, %d resets; want one lease a round, the two others reset", leases, resets)
		}
	}
}

// The process holding the probe lease dies before probing: its lease runs
// out and another process probes.
func TestBreakersLeaseOfDeadProcess(t *testing.T) {
	srv := redistest.Start(t)
	bc := breaker.Config{FailureThreshold: 1, SuccessThreshold: 1, Timeout: 200 * time.Millisecond}
	cfg := BreakersConfig{ProbeLease: 200 * time.Millisecond}
	a := newProc(t, srv, cfg, bc)
	b := newProc(t, srv, cfg, bc)
	waitSynced(t, a, b)
	fail(t, a.b, 1)
	waitFor(t, settle, "the fleet did not open", allOf([]*proc{a, b}, breaker.Open))

	// Only a calls: it wins the lease and takes a probe it never finishes.
	if i, _ := probe(t, []*proc{a}); i != 0 {
		t.Fatal("a did not probe")
	}
	_ = a.f.Close() // a dies holding the lease
	died := time.Now()
	i, held := probe(t, []*proc{b})
	t.Logf("b probed %v after a died", time.Since(died))
	if i != 0 || b.f.Metrics().ProbeLeases != 1 {
		t.Fatalf("b did not take the lease: %+v", b.f.Metrics())
	}
	held.Done(breaker.Success)
	if got := b.b.State(); got != breaker.Closed {
		t.Fatalf("b is %v after its probe, want closed", got)
	}
}

// A process that left the fleet does not follow it any more.
func TestBreakersLeave(t *testing.T) {
	srv := redistest.Start(t)
	bc := breaker.Config{FailureThreshold: 1}
	a := newProc(t, srv, BreakersConfig{}, bc)
	b := newProc(t, srv, BreakersConfig{}, bc)
	waitSynced(t, a, b)
	b.leave()
	fail(t, a.b, 1)
	waitFor(t, settle, "b did not hear the transition", func() bool { return b.f.Metrics().Received >= 1 })
	if got := b.b.State(); got != breaker.Closed {
		t.Fatalf("a breaker that left the fleet is %v, want closed", got)
	}
}

// Garbage under the breaker's keys and on the channel is deleted or
// ignored and reported; the fleet keeps working.
func TestBreakersHostileValues(t *testing.T) {
	srv := redistest.Start(t)
	bc := breaker.Config{FailureThreshold: 1}
	a := newProc(t, srv, BreakersConfig{}, bc)
	b := newProc(t, srv, BreakersConfig{}, bc)
	waitSynced(t, a, b)

	win, state, lease := breakerKeys(DefaultPrefix, "dep")
	channel := DefaultPrefix + breakerSpace + breakerChannel
	pokes := [][]string{
		{"HSET", win, "garbage", "1", "1:c", "x", "99999999999:c", "5", "2:f", "-3", "3:s", "99999999999999999999"},
		{"SET", lease, "someone"}, // a lease that never expires
		{"RPUSH", state, "not", "a", "hash"},
	}
	for _, p := range pokes {
		if _, err := srv.Do(p...); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, settle, "the hostile values were not found", func() bool { return a.f.Metrics().Hostile+b.f.Metrics().Hostile >= 7 })
	for _, p := range [][]string{
		{"HSET", state, "epoch", "1e9", "state", "open", "until", "0"},
		{"DEL", win}, {"HSET", win, "1:c", "1"},
		{"SET", lease, "someone", "PX", "86400000"}, // far longer than any lease
	} {
		if _, err := srv.Do(p...); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []string{"", "garbage", "1 x open 0 id dep", "1 5 ajar 0 id dep", "2 5 open 0 id dep", "1 5 open 0 id", strings.Repeat("z", maxMessageLen+1)} {
		if _, err := srv.Do("PUBLISH", channel, m); err != nil {
			t.Fatal(err)
		}
	}
	// Nine values under the keys, each found by one process; seven
	// messages, each heard by both.
	waitFor(t, settle, "the hostile messages were not counted", func() bool { return a.f.Metrics().Hostile+b.f.Metrics().Hostile >= 9+2*7 })
	select {
	case err := <-b.errs:
		if !errors.Is(err, ErrHostileValue) {
			t.Fatalf("OnError got %v, want ErrHostileValue", err)
		}
	default:
		t.Fatal("OnError was not called")
	}
	if ty, _ := srv.Do("TYPE", state); ty != "+none" && ty != "+hash" {
		t.Fatalf("the state key is still a %s", ty)
	}
	if got := b.b.State(); got != breaker.Closed {
		t.Fatalf("hostile values moved the breaker to %v", got)
	}
	fail(t, a.b, 1)
	waitFor(t, settle, "b did not open after the hostile values", func() bool { return b.b.State() == breaker.Open })
}

// Redis goes away: each breaker runs on its own (a tripped breaker probes
// by itself) and OnFallback says so; Redis comes back (empty, without the
// scripts): OnRecover says so and the breakers share their state again.
func TestBreakersRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	var fallbacks, recoveries atomic.Int64
	cfg := BreakersConfig{
		Timeout:    200 * time.Millisecond,
		OnFallback: func(FallbackEvent) { fallbacks.Add(1) },
		OnRecover:  func(RecoverEvent) { recoveries.Add(1) },
	}
	bc := breaker.Config{FailureThreshold: 1, SuccessThreshold: 1, Timeout: 200 * time.Millisecond}
	ps := []*proc{newProc(t, srv, cfg, bc), newProc(t, srv, cfg, bc)}
	waitSynced(t, ps...)
	fail(t, ps[0].b, 1)
	waitFor(t, settle, "the fleet did not open", allOf(ps, breaker.Open))

	srv.Kill()
	waitFor(t, settle, "no fallback", func() bool { return ps[0].f.InFallback() && ps[1].f.InFallback() })
	// Both breakers probe by themselves now: no lease to wait for.
	var mu sync.Mutex
	probed := map[int]bool{}
	waitFor(t, settle, "the breakers did not probe on their own", func() bool {
		for i, p := range ps {
			if pm, err := p.b.Allow(); err == nil {
				pm.Done(breaker.Success)
				mu.Lock()
				probed[i] = true
				mu.Unlock()
			}
		}
		return len(probed) == 2
	})
	waitFor(t, settle, "OnFallback was not called in each process", func() bool { return fallbacks.Load() >= 2 })
	if fallbacks.Load() != 2 || ps[0].f.Metrics().Fallbacks != 1 {
		t.Fatalf("%d fallbacks reported, metrics %+v; want one per process", fallbacks.Load(), ps[0].f.Metrics())
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settle, "no recovery", func() bool { return !ps[0].f.InFallback() && !ps[1].f.InFallback() })
	// OnRecover runs just after InFallback turns false.
	waitFor(t, settle, "OnRecover was not called in each process", func() bool { return recoveries.Load() >= 2 })
	if recoveries.Load() != 2 {
		t.Fatalf("%d recoveries reported, want 2", recoveries.Load())
	}
	waitSynced(t, ps...)
	fail(t, ps[1].b, 1)
	waitFor(t, settle, "the fleet did not open after Redis came back", allOf(ps, breaker.Open))
}

// The scripts run by their SHA; after SCRIPT FLUSH they run by their
// source again, without an error reaching anyone.
func TestBreakersNoScript(t *testing.T) {
	srv := redistest.Start(t)
	bc := breaker.Config{FailureThreshold: 1}
	a := newProc(t, srv, BreakersConfig{}, bc)
	b := newProc(t, srv, BreakersConfig{}, bc)
	waitSynced(t, a, b)
	if _, err := srv.Do("SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	waitSynced(t, a, b)
	fail(t, a.b, 1)
	waitFor(t, settle, "b did not open", func() bool { return b.b.State() == breaker.Open })
	for _, p := range []*proc{a, b} {
		if m := p.f.Metrics(); m.SyncErrors != 0 {
			t.Fatalf("round trips failed after SCRIPT FLUSH: %+v", m)
		}
	}
}

// The slow-call rate of the fleet opens every breaker too.
func TestBreakersFleetSlowCallRate(t *testing.T) {
	srv := redistest.Start(t)
	bc := breaker.Config{FailureThreshold: 1000, SlowCallDuration: time.Second}
	cfg := BreakersConfig{SlowCallRateThreshold: 50, MinimumCalls: 10}
	ps := []*proc{newProc(t, srv, cfg, bc), newProc(t, srv, cfg, bc)}
	waitSynced(t, ps...)
	for _, p := range ps {
		for range 6 {
			pm, _ := p.b.Allow()
			pm.DoneDuration(breaker.Success, 2*time.Second)
		}
	}
	waitFor(t, settle, "the fleet's slow-call rate did not open every breaker", allOf(ps, breaker.Open))
}

// A breaker that opened while Redis was away and closed again before it
// came back does not open the fleet afterwards.
func TestBreakersOpeningMootAfterOutage(t *testing.T) {
	srv := redistest.Start(t)
	cfg := BreakersConfig{Timeout: 200 * time.Millisecond}
	bc := breaker.Config{FailureThreshold: 1, SuccessThreshold: 1, Timeout: 50 * time.Millisecond}
	a := newProc(t, srv, cfg, bc)
	b := newProc(t, srv, cfg, bc)
	waitSynced(t, a, b)
	srv.Kill()
	waitFor(t, settle, "no fallback", a.f.InFallback)
	fail(t, a.b, 1) // opens a alone; the fleet cannot hear it
	waitFor(t, settle, "a did not probe on its own", func() bool {
		pm, err := a.b.Allow()
		if err != nil {
			return false
		}
		pm.Done(breaker.Success)
		return true
	})
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settle, "no recovery", func() bool { return !a.f.InFallback() && !b.f.InFallback() })
	waitSynced(t, a, b)
	waitSynced(t, a, b)
	if m := a.f.Metrics(); m.Published != 0 || b.b.State() != breaker.Closed {
		t.Fatalf("a moot opening reached the fleet: a %+v, b %v", m, b.b.State())
	}
}

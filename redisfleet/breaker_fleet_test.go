package redisfleet

import (
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/internal/redistest"
)

// A process that won the probe lease and then makes no call lets the
// lease run out: another process with calls waiting takes it and probes,
// and the first keeps rejecting meanwhile.
func TestBreakersIdleLeaseHolder(t *testing.T) {
	srv := redistest.Start(t)
	const lease = 500 * time.Millisecond
	bc := breaker.Config{FailureThreshold: 1, SuccessThreshold: 1, Timeout: 100 * time.Millisecond}
	cfg := BreakersConfig{ProbeLease: lease}
	a := newProc(t, srv, cfg, bc)
	b := newProc(t, srv, cfg, bc)
	waitSynced(t, a, b)
	fail(t, a.b, 1)
	waitFor(t, settle, "the fleet did not open", func() bool {
		return a.b.Peek().State == breaker.Open && b.b.Peek().State == breaker.Open
	})

	// a's calls wait for the lease (rejected) until a wins it; a call
	// that comes just after is a probe, which ends at once. From then on
	// a makes no call at all.
	waitFor(t, settle, "a did not win the lease", func() bool {
		if a.f.Metrics().ProbeLeases == 1 {
			return true
		}
		if p, err := a.b.Allow(); err == nil {
			p.Done(breaker.Ignored)
		}
		return false
	})

	// b's calls wait; a's lease runs out within ProbeLease, and b probes.
	took := time.Now()
	i, held := probe(t, []*proc{b})
	t.Logf("b probed %v after a won the lease", time.Since(took))
	if i != 0 || b.f.Metrics().ProbeLeases != 1 {
		t.Fatalf("b did not take the lease: %+v", b.f.Metrics())
	}
	if got := a.b.Peek().State; got != breaker.Open {
		t.Fatalf("a is %v while b holds the lease, want open", got)
	}
	if p, err := a.b.Allow(); err == nil {
		p.Done(breaker.Ignored)
		t.Fatal("a probed while b held the lease")
	}
	held.Done(breaker.Success)
	waitFor(t, settle, "the fleet did not close", allOf([]*proc{a, b}, breaker.Closed))
}

// Error replies that say Redis cannot serve (here OOM: maxmemory reached)
// make the breakers fall back, with one Warn line, and one Info line when
// Redis serves again.
func TestBreakersRedisErrorReplies(t *testing.T) {
	srv := redistest.Start(t)
	logs := &logRecorder{}
	a := newProc(t, srv, BreakersConfig{Logger: slog.New(logs)}, breaker.Config{FailureThreshold: 1000})
	waitSynced(t, a)
	if _, err := srv.Do("CONFIG", "SET", "maxmemory", "1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settle, "no fallback on OOM replies", func() bool {
		p, err := a.b.Allow()
		if err == nil {
			p.Done(breaker.Success) // a count to write: the script writes
		}
		return a.f.InFallback()
	})
	if m := a.f.Metrics(); m.Hostile != 0 || m.Fallbacks != 1 {
		t.Fatalf("metrics %+v: want one fallback and no hostile value", m)
	}
	if _, err := srv.Do("CONFIG", "SET", "maxmemory", "0"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settle, "no recovery", func() bool { return !a.f.InFallback() })
	// The Info line comes just after InFallback turns false.
	waitFor(t, settle, "no Info line", func() bool { n, _ := logs.count(slog.LevelInfo); return n > 0 })
	if n, keys := logs.count(slog.LevelWarn); n != 1 || !slicesEqual(keys, []string{"cause", "breakers"}) {
		t.Errorf("%d Warn lines (attributes %v), want one with the cause", n, keys)
	}
	if n, _ := logs.count(slog.LevelInfo); n != 1 {
		t.Errorf("%d Info lines, want one", n)
	}
}

// An epoch at or beyond 2^53 under the state key is hostile: it is
// deleted, and the fleet shares the breaker again.
func TestBreakersHugeEpoch(t *testing.T) {
	srv := redistest.Start(t)
	bc := breaker.Config{FailureThreshold: 1}
	a := newProc(t, srv, BreakersConfig{}, bc)
	b := newProc(t, srv, BreakersConfig{}, bc)
	waitSynced(t, a, b)
	_, state, _ := breakerKeys(DefaultPrefix, "dep")
	for _, epoch := range []uint64{1<<53 - 1, 1 << 53, 1<<53 + 1, 9999999999999999} {
		if _, err := srv.Do("HSET", state, "epoch", strconv.FormatUint(epoch, 10), "state", "closed", "until", "0"); err != nil {
			t.Fatal(err)
		}
		n := a.f.Metrics().Hostile + b.f.Metrics().Hostile
		waitFor(t, settle, "the huge epoch was not found hostile", func() bool {
			return a.f.Metrics().Hostile+b.f.Metrics().Hostile > n
		})
	}
	fail(t, a.b, 1)
	waitFor(t, settle, "b did not open after the huge epochs", func() bool { return b.b.Peek().State == breaker.Open })
}

// A message on the channel is only a hint to read the fleet's state: a
// forged transition neither trips nor resets the breakers.
func TestBreakersForgedMessage(t *testing.T) {
	srv := redistest.Start(t)
	bc := breaker.Config{FailureThreshold: 1, Timeout: time.Hour}
	a := newProc(t, srv, BreakersConfig{}, bc)
	b := newProc(t, srv, BreakersConfig{}, bc)
	waitSynced(t, a, b)
	channel := DefaultPrefix + breakerSpace + breakerChannel
	until := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	syncs := b.f.Metrics().Syncs
	if _, err := srv.Do("PUBLISH", channel, "1 99 open "+until+" forger dep"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settle, "b did not read the state on the hint", func() bool {
		return b.f.Metrics().Received >= 1 && b.f.Metrics().Syncs > syncs
	})
	if got := b.b.Peek().State; got != breaker.Closed {
		t.Fatalf("a forged opening moved b to %v", got)
	}

	fail(t, a.b, 1)
	waitFor(t, settle, "the fleet did not open", func() bool { return b.b.Peek().State == breaker.Open })
	received := b.f.Metrics().Received
	if _, err := srv.Do("PUBLISH", channel, "1 999 closed 0 forger dep"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settle, "b did not hear the forged closing", func() bool { return b.f.Metrics().Received > received })
	waitSynced(t, b)
	if got := b.b.Peek().State; got != breaker.Open || b.f.Metrics().Resets != 0 {
		t.Fatalf("a forged closing moved b to %v (%+v)", got, b.f.Metrics())
	}
}

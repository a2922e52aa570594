package fleet

import (
	"context"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/engineeringlabs/grpc-resilience/internal/redistest"
	"github.com/engineeringlabs/grpc-resilience/redisfleet"
)

// The shared quota: quotaRate calls per second with a burst of
// quotaBurst, for one caller key, across three processes. The first
// process asks for 80% of the calls, the two others 10% each, in all twice
// the quota. quotaTimeout bounds each decision's round trip: generous, so
// that a loaded machine decides through Redis during the accuracy phase.
const (
	quotaRate    = 300
	quotaBurst   = 30
	quotaDemand  = 2 * quotaRate
	quotaTimeout = 100 * time.Millisecond
	quotaProcs   = 3
)

var quotaShares = [quotaProcs]float64{0.8, 0.1, 0.1}

func init() { helpers["quota"] = quotaHelper }

// quotaHelper is one process of the fleet: it decides its part of the
// demand through a redisfleet quota on each "run <duration>" command and
// prints a "result" line.
func quotaHelper() int {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{os.Getenv("REDIS_ADDR")}, DisableCache: true})
	if err != nil {
		return fail("client: %v", err)
	}
	defer c.Close()
	lease, _ := time.ParseDuration(os.Getenv("FLEET_LEASE"))
	var fallbackAt, recoverAt, fallbackProcs atomic.Int64
	l, err := redisfleet.NewLimiter(redisfleet.LimiterConfig{
		Client:            c,
		Timeout:           quotaTimeout,
		LeaseWindow:       lease,
		HeartbeatInterval: 200 * time.Millisecond,
		RetryInterval:     200 * time.Millisecond,
		OnFallback: func(e redisfleet.FallbackEvent) {
			fallbackAt.CompareAndSwap(0, time.Now().UnixNano())
			fallbackProcs.Store(int64(e.Processes))
		},
		OnRecover: func(redisfleet.RecoverEvent) { recoverAt.CompareAndSwap(0, time.Now().UnixNano()) },
	})
	if err != nil {
		return fail("limiter: %v", err)
	}
	defer l.Close()
	q := l.Quota("fleet-test", quotaRate, quotaBurst)
	demand := quotaDemand * quotaShares[helperIndex()]
	emit("ready")
	for cmd := range commands() {
		d, err := time.ParseDuration(strings.TrimPrefix(cmd, "run "))
		if err != nil {
			return fail("command %q", cmd)
		}
		fallbackAt.Store(0)
		recoverAt.Store(0)
		fallbackProcs.Store(0)
		before := l.Metrics()
		r := runQuotaLoad(l, q, demand, d)
		m := l.Metrics()
		m.Local -= before.Local
		m.Shared -= before.Shared
		emit("result admitted=%d calls=%d fbadmitted=%d maxdecision=%d fallback=%d recover=%d fbprocs=%d local=%d shared=%d procs=%d",
			r.admitted, r.calls, r.fbAdmitted, r.maxDecision, fallbackAt.Load(), recoverAt.Load(), fallbackProcs.Load(), m.Local, m.Shared, m.Processes)
	}
	return 0
}

type quotaLoad struct {
	admitted, calls, fbAdmitted int64
	maxDecision                 time.Duration
}

// runQuotaLoad asks for demand decisions per second for d, from four
// paced workers, and counts them.
func runQuotaLoad(l *redisfleet.Limiter, q *redisfleet.Quota, demand float64, d time.Duration) quotaLoad {
	const workers = 4
	var admitted, calls, fb, worst atomic.Int64
	start := time.Now()
	end := start.Add(d)
	interval := time.Duration(float64(time.Second) * workers / demand)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			next := start.Add(time.Duration(w) * interval / workers)
			for range 1_000_000 {
				now := time.Now()
				if !now.Before(end) {
					return
				}
				if next.After(now) {
					time.Sleep(next.Sub(now)) // pacing the load, not waiting for a state
				}
				next = next.Add(interval)
				t0 := time.Now()
				dec, _ := q.Take(context.Background(), "tenant", 1)
				took := int64(time.Since(t0))
				for {
					old := worst.Load()
					if took <= old || worst.CompareAndSwap(old, took) {
						break
					}
				}
				calls.Add(1)
				if dec.Allowed {
					admitted.Add(1)
					if l.InFallback() {
						fb.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	return quotaLoad{admitted.Load(), calls.Load(), fb.Load(), time.Duration(worst.Load())}
}

// quotaResult is a helper's "result" line.
type quotaResult map[string]int64

func parseQuotaResult(t *testing.T, line string) quotaResult {
	t.Helper()
	r := quotaResult{}
	for _, f := range strings.Fields(strings.TrimPrefix(line, "result ")) {
		k, v, ok := strings.Cut(f, "=")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil {
			t.Fatalf("bad result field %q in %q", f, line)
		}
		r[k] = n
	}
	return r
}

// runAll sends "run d" to every process and returns their results.
func runAll(t *testing.T, ps []*proc, d time.Duration) []quotaResult {
	t.Helper()
	for _, p := range ps {
		p.Send("run %s", d)
	}
	rs := make([]quotaResult, len(ps))
	for i, p := range ps {
		rs[i] = parseQuotaResult(t, p.Expect("result", d+60*time.Second))
	}
	return rs
}

func sum(rs []quotaResult, field string) int64 {
	var n int64
	for _, r := range rs {
		n += r[field]
	}
	return n
}

// TestFleetQuota runs three processes on one quota with skewed load, per
// call and with leases: together they admit the quota within 5% over 10s.
// Then Redis is killed mid-run and restarted: no decision waits past its
// bound, each process falls back within a second to its share (a third of
// the quota), and sharing resumes once Redis is back.
func TestFleetQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test; skipped under -short")
	}
	for _, mode := range []struct {
		name  string
		lease time.Duration
	}{{"per-call", 0}, {"lease", 50 * time.Millisecond}} {
		t.Run(mode.name, func(t *testing.T) { testFleetQuota(t, mode.lease) })
	}
}

func testFleetQuota(t *testing.T, lease time.Duration) {
	srv := redistest.Start(t)
	ps := startProcs(t, "quota", quotaProcs, func(int) []string {
		return []string{"REDIS_ADDR=" + srv.Addr(), "FLEET_LEASE=" + lease.String()}
	})
	for _, p := range ps {
		p.Expect("ready", 60*time.Second)
	}
	// A short warm-up: processes hear of each other; leases size up.
	runAll(t, ps, time.Second)
	if _, err := srv.Do("FLUSHALL"); err != nil {
		t.Fatal(err)
	}

	const window = 10 * time.Second
	rs := runAll(t, ps, window)
	admitted, calls := sum(rs, "admitted"), sum(rs, "calls")
	want := quotaRate*window.Seconds() + quotaBurst
	t.Logf("fleet: admitted %d of %d calls in %v (quota %.0f): %+v", admitted, calls, window, want, rs)
	if calls < int64(1.5*want) {
		t.Fatalf("only %d calls for a quota of %.0f: the machine did not produce the load", calls, want)
	}
	if dev := math.Abs(float64(admitted)-want) / want; dev > 0.05 {
		t.Errorf("admitted %d in all, want %.0f ±5%% (off by %.1f%%)", admitted, want, 100*dev)
	}
	// A round trip slower than quotaTimeout on a loaded machine is decided
	// locally; a few are fine, many would mean the quota was not shared.
	for i, r := range rs {
		if r["local"] > r["calls"]/100 {
			t.Errorf("process %d decided %d of %d calls locally against a healthy Redis", i, r["local"], r["calls"])
		}
	}

	// The outage: Redis killed one second into an 8s run, back 3s later.
	const outage = 8 * time.Second
	for _, p := range ps {
		p.Send("run %s", outage)
	}
	time.Sleep(time.Second) // the outage starts mid-run
	killed := time.Now()
	srv.Kill()
	time.Sleep(3 * time.Second) // the length of the outage
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	rs = make([]quotaResult, len(ps))
	for i, p := range ps {
		rs[i] = parseQuotaResult(t, p.Expect("result", outage+60*time.Second))
	}
	t.Logf("outage: %+v", rs)
	share := float64(quotaRate) / quotaProcs
	for i, r := range rs {
		if bound := quotaTimeout + time.Second/4; time.Duration(r["maxdecision"]) > bound {
			t.Errorf("process %d: a decision took %v, want at most %v", i, time.Duration(r["maxdecision"]), bound)
		}
		if r["fallback"] == 0 || r["recover"] == 0 {
			t.Errorf("process %d: fallback at %d, recovery at %d: want both", i, r["fallback"], r["recover"])
			continue
		}
		if after := time.Duration(r["fallback"] - killed.UnixNano()); after < 0 || after > time.Second {
			t.Errorf("process %d fell back %v after the kill, want within 1s", i, after)
		}
		if after := time.Duration(r["recover"] - restarted.UnixNano()); after > 2*time.Second {
			t.Errorf("process %d returned to the shared quota %v after the restart, want within 2s", i, after)
		}
		if r["fbprocs"] != quotaProcs {
			t.Errorf("process %d divided its quota by %d, want %d", i, r["fbprocs"], quotaProcs)
		}
		// Admitted while in fallback: at most the share (plus its burst),
		// and the busy process, asking for more, gets about its share.
		down := time.Duration(r["recover"] - r["fallback"]).Seconds()
		most := share*down + float64(quotaBurst)/quotaProcs + 1
		got := float64(r["fbadmitted"])
		if got > most*1.05 {
			t.Errorf("process %d admitted %v in %.2fs of fallback, more than its share allows (%.0f)", i, got, down, most)
		}
		if i == 0 && got < 0.8*share*down {
			t.Errorf("busy process admitted %v in %.2fs of fallback, want about its share %.0f", got, down, share*down)
		}
	}

	// Sharing resumed: the fleet admits the quota again.
	rs = runAll(t, ps, 3*time.Second)
	admitted = sum(rs, "admitted")
	want = quotaRate*3 + quotaBurst
	if dev := math.Abs(float64(admitted)-want) / want; dev > 0.1 {
		t.Errorf("after recovery: admitted %d, want %.0f ±10%%", admitted, want)
	}
	for i, r := range rs {
		if r["procs"] != quotaProcs {
			t.Errorf("process %d hears of %d live processes after recovery, want %d", i, r["procs"], quotaProcs)
		}
	}
}

package fleet

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/internal/redistest"
	"github.com/engineeringlabs/grpc-resilience/redisfleet"
)

func init() { helpers["breaker"] = breakerHelper }

// depService is the health-service name the helpers call: the dependency
// is healthy while the test's health server reports it SERVING.
const depService = "dep"

// Settings shared by the test and its helpers.
const (
	breakerOpenFor   = time.Second           // every breaker's open duration
	breakerSync      = 50 * time.Millisecond // the fleet's sync interval
	breakerCallEvery = 5 * time.Millisecond  // each helper's call rate
	breakerSpread    = 500 * time.Millisecond
)

// breakerHelper is one process of the fleet: it calls the dependency (a
// real gRPC health check over loopback) through a local breaker joined to
// the fleet, every few milliseconds, until its stdin closes. Process 0
// opens after 3 consecutive failures; the others only when the fleet tells
// them (their own threshold is out of reach). It prints:
//
//	ready
//	state <to> <reason> <unix ns>       on every change of its breaker
//	probe-start <unix ns>               when a half-open probe begins
//	probe-end <unix ns> <success|failure>
func breakerHelper() int {
	client, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:  []string{os.Getenv("REDIS_ADDR")},
		DisableCache: true,
	})
	if err != nil {
		return fail("redis client: %v", err)
	}
	defer client.Close()
	fleet, err := redisfleet.NewBreakers(redisfleet.BreakersConfig{
		Client:       client,
		SyncInterval: breakerSync,
		MinimumCalls: 1 << 30, // this test is about broadcasts, not the fleet's rate
	})
	if err != nil {
		return fail("fleet: %v", err)
	}
	defer fleet.Close()

	threshold := 1 << 20
	if helperIndex() == 0 {
		threshold = 3
	}
	b := breaker.New(breaker.Config{
		FailureThreshold: threshold,
		SuccessThreshold: 1,
		Timeout:          breakerOpenFor,
		OnStateChange: func(c breaker.StateChange) {
			emit("state %v %v %d", c.To, c.Reason, time.Now().UnixNano())
		},
	})
	if _, err := fleet.Join("dep", b); err != nil {
		return fail("join: %v", err)
	}

	conn, err := grpc.NewClient(os.Getenv("DEP_ADDR"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fail("dial: %v", err)
	}
	defer conn.Close()
	dep := healthpb.NewHealthClient(conn)

	deadline := time.Now().Add(time.Minute)
	for fleet.Metrics().Syncs == 0 {
		if time.Now().After(deadline) {
			return fail("no round trip with Redis within a minute")
		}
		time.Sleep(breakerSync)
	}
	emit("ready")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { callLoop(ctx, b, dep) })
	for range commands() {
	}
	cancel()
	wg.Wait()
	return 0
}

var errNotServing = errors.New("dependency not serving")

// callLoop calls the dependency through b every breakerCallEvery until ctx
// is done (or two minutes passed).
func callLoop(ctx context.Context, b *breaker.Breaker, dep healthpb.HealthClient) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(breakerCallEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p, err := b.Allow()
		if err != nil {
			continue // rejected: the breaker is open
		}
		probe := p.State() == breaker.HalfOpen
		if probe {
			emit("probe-start %d", time.Now().UnixNano())
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := dep.Check(cctx, &healthpb.HealthCheckRequest{Service: depService})
		ccancel()
		if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			err = errNotServing
		}
		if ctx.Err() != nil {
			p.Done(breaker.Ignored)
			return
		}
		p.Record(err)
		if probe {
			outcome := "success"
			if err != nil {
				outcome = "failure"
			}
			emit("probe-end %d %s", time.Now().UnixNano(), outcome)
		}
	}
}

// procLine is a line printed by the i-th helper.
type procLine struct {
	i    int
	line string
}

// mergeLines returns the lines of every helper, in the order they arrive.
// It stops reading when the test ends.
func mergeLines(t *testing.T, ps []*proc) <-chan procLine {
	out := make(chan procLine)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() {
			for {
				select {
				case line, ok := <-p.lines:
					if !ok {
						return
					}
					select {
					case out <- procLine{i, line}:
					case <-done:
						return
					}
				case <-done:
					return
				}
			}
		})
	}
	t.Cleanup(func() { close(done); wg.Wait() })
	return out
}

// unixField parses field n of line as Unix nanoseconds.
func unixField(t *testing.T, line string, n int) time.Time {
	t.Helper()
	f := strings.Fields(line)
	if len(f) <= n {
		t.Fatalf("line %q has no field %d", line, n)
	}
	ns, err := strconv.ParseInt(f[n], 10, 64)
	if err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	return time.Unix(0, ns)
}

// Three processes share a breaker through one Redis and call a real gRPC
// dependency over loopback. The dependency fails: the first process opens
// on its own threshold and the two others are cut off within 500ms of it.
// Then the fleet probes one process at a time: the first probe fails (the
// dependency is still down) and the fleet stays open; the dependency
// recovers, the next probe succeeds and every process closes.
func TestFleetBreakerOpensTogetherAndProbesOnce(t *testing.T) {
	srv := redistest.Start(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus(depService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	ps := startProcs(t, "breaker", 3, func(int) []string {
		return []string{"REDIS_ADDR=" + srv.Addr(), "DEP_ADDR=" + lis.Addr().String()}
	})
	for _, p := range ps {
		p.Expect("ready", time.Minute)
	}
	lines := mergeLines(t, ps)
	next := func(what string) procLine {
		t.Helper()
		timer := time.NewTimer(time.Minute)
		defer timer.Stop()
		select {
		case l := <-lines:
			t.Logf("%s: %s", ps[l.i].name, l.line)
			return l
		case <-timer.C:
			t.Fatalf("no line within a minute while waiting for %s", what)
		}
		panic("unreachable")
	}

	// The dependency fails: every process opens.
	hs.SetServingStatus(depService, healthpb.HealthCheckResponse_NOT_SERVING)
	opened := make([]time.Time, len(ps))
	reasons := make([]string, len(ps))
	for n := 0; n < len(ps); {
		l := next("every process to open")
		if f := strings.Fields(l.line); len(f) == 4 && f[0] == "state" && f[1] == "open" && opened[l.i].IsZero() {
			opened[l.i], reasons[l.i] = unixField(t, l.line, 3), f[2]
			n++
		}
	}
	first, last := opened[0], opened[0]
	for _, o := range opened {
		if o.Before(first) {
			first = o
		}
		if o.After(last) {
			last = o
		}
	}
	t.Logf("opened: %v; the last %v after the first", reasons, last.Sub(first))
	if reasons[0] != breaker.ReasonConsecutiveFailures.String() || reasons[1] != "tripped" || reasons[2] != "tripped" {
		t.Fatalf("reasons %v: want process 0 to open on its threshold and the others tripped", reasons)
	}
	if spread := last.Sub(first); spread > breakerSpread {
		t.Fatalf("the last process opened %v after the first, want at most %v", spread, breakerSpread)
	}

	// Probing: one process at a time. The first probe meets the failing
	// dependency; then it recovers.
	var (
		inflight          = -1
		failed, succeeded int
		closed            = make([]bool, len(ps))
		nclosed           int
	)
	for nclosed < len(ps) {
		l := next("every process to close")
		f := strings.Fields(l.line)
		switch {
		case len(f) == 0:
		case f[0] == "probe-start":
			if inflight >= 0 {
				t.Fatalf("%s probes while %s's probe runs", ps[l.i].name, ps[inflight].name)
			}
			if nclosed > 0 {
				t.Fatalf("%s probes after the fleet closed", ps[l.i].name)
			}
			inflight = l.i
		case f[0] == "probe-end" && len(f) == 3:
			inflight = -1
			if f[2] == "failure" {
				failed++
				hs.SetServingStatus(depService, healthpb.HealthCheckResponse_SERVING)
			} else {
				succeeded++
			}
		case f[0] == "state" && len(f) == 4 && f[1] == "closed" && !closed[l.i]:
			closed[l.i] = true
			nclosed++
		}
	}
	if failed != 1 || succeeded != 1 {
		t.Fatalf("%d failed and %d successful probes across the fleet, want 1 and 1", failed, succeeded)
	}
	t.Logf("every process closed after %d probes, one at a time", failed+succeeded)
}

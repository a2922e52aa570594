package integration

import (
	"context"
	"flag"
	"math"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// soakDuration is how long TestSoak runs: a short run by default, inside
// `make test`; `make soak` runs it for a minute.
var soakDuration = flag.Duration("soak.duration", 6*time.Second, "how long TestSoak drives load (make soak: 60s)")

// Soak parameters.
const (
	soakCallers = 64
	// soakPeak is the fault rate at the middle of the run: the share of
	// calls the chaos interceptor fails, and a scale for the others.
	soakPeak = 0.4
	// soakHeapBound bounds the growth of the live heap between the end of
	// the warm-up and the end of the run. It is generous: what must not
	// happen is growth with the number of calls (a leak of a few hundred
	// bytes per call would pass 16 MiB within a minute).
	soakHeapBound = 16 << 20
	// soakTick is how often the fault rate changes.
	soakTick = 100 * time.Millisecond
)

// soakFaults returns the server and proxy faults at rate, in [0, soakPeak];
// none at 0.
func soakFaults(rate float64) (server.FaultConfig, proxyFaults) {
	if rate <= 0 {
		return server.FaultConfig{}, proxyFaults{}
	}
	abort := server.Fault{AbortRate: rate, AbortAfter: 1, Code: codes.Unavailable}
	return server.FaultConfig{
			All: server.Fault{
				ErrorRate: rate, Code: codes.Unavailable,
				LatencyMax: time.Duration(rate * float64(10*time.Millisecond)),
				TailRate:   rate / 4, TailLatency: 100 * time.Millisecond,
			},
			Methods: map[string]server.Fault{
				testingv1.TestService_ServerStream_FullMethodName: abort,
				testingv1.TestService_BidiStream_FullMethodName:   {AbortRate: rate, Code: codes.Unavailable},
				testingv1.TestService_Query_FullMethodName:        {ErrorRate: rate, Code: codes.ResourceExhausted, Pushback: 2 * time.Millisecond},
			},
		}, proxyFaults{
			ResetRate: rate * 0.005,
			StallRate: rate * 0.02, StallMax: 200 * time.Millisecond,
			SlowRate: rate * 0.2, SlowMax: 5 * time.Millisecond,
		}
}

// TestSoak drives 64 concurrent callers making every kind of call through
// the chaos proxy and the server's chaos interceptor while the fault rate
// ramps from 0 up to 40% and back down, and checks that every invariant
// holds throughout and that the live heap does not grow with the calls.
// It runs for -soak.duration (6s by default, a minute in `make soak`).
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	leakCheck(t)
	policy := scenarioPolicy()
	policy.Breaker = &interceptors.BreakerPolicy{FailureThreshold: 50, OpenDuration: 100 * time.Millisecond}
	cfg := server.Config{Bulkhead: server.BulkheadConfig{Limit: 16, PushbackDelay: 2 * time.Millisecond}}
	e := newEnv(t, "soak", envOptions{policy: policy, server: cfg, seed: chaosSeed, proxy: &proxyFaults{}})
	m := mix{
		failRate: 0.1, codes: append(append([]codes.Code(nil), allCodes...), transient...), hangRate: 0.01,
		minTimeout: 50 * time.Millisecond, maxTimeout: 500 * time.Millisecond, maxMessages: 8,
		think: 20 * time.Millisecond,
	}

	// Warm up without faults, so that connections, caches and pools exist
	// before the heap is measured.
	e.run(t.Context(), soakCallers, chaosSeed+1, 500*time.Millisecond, mix{minTimeout: time.Second, maxTimeout: time.Second, maxMessages: 8}, nil)
	before := heapInUse()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	var peak float64
	wg.Go(func() {
		start := time.Now()
		tick := time.NewTicker(soakTick)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// A triangle: 0 at both ends, soakPeak in the middle.
			p := min(float64(time.Since(start))/float64(*soakDuration), 1)
			rate := soakPeak * (1 - math.Abs(2*p-1))
			peak = max(peak, rate)
			sf, pf := soakFaults(rate)
			if err := e.pipe.Chaos().Set(sf); err != nil {
				t.Errorf("Chaos.Set(%v): %v", rate, err)
				return
			}
			e.proxy.Set(pf)
			// The test service logs every attempt; the soak does not read
			// that log, and must not mistake it for a leak.
			e.svc.Reset()
		}
	})
	e.run(ctx, soakCallers, chaosSeed, *soakDuration, m, nil)
	cancel()
	wg.Wait()
	_ = e.pipe.Chaos().Set(server.FaultConfig{})
	after := heapInUse()

	growth := int64(after) - int64(before)
	e.inv.check()
	if growth > soakHeapBound {
		e.inv.fail("the live heap grew by %d bytes over %d calls, bound %d", growth, e.inv.calls.Load(), soakHeapBound)
	}
	if e.inv.ok.Load() == 0 || e.faults() == 0 {
		t.Errorf("%d successful calls, %d faults: the soak tested nothing", e.inv.ok.Load(), e.faults())
	}
	t.Logf("reliability soak-heap: duration=%v callers=%d peak_fault_rate=%.2f heap_before=%d heap_after=%d growth=%d bytes (bound %d)",
		*soakDuration, soakCallers, peak, before, after, growth, soakHeapBound)
	e.verify()
}

package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// heavyTail is the hedging scenario's server: every attempt takes 1-2ms,
// except 2% of attempts, drawn independently, which take 50ms.
func heavyTail() server.FaultConfig {
	return server.FaultConfig{All: server.Fault{
		Latency: time.Millisecond, LatencyMax: 2 * time.Millisecond,
		TailRate: 0.02, TailLatency: 50 * time.Millisecond,
	}}
}

// hedgeDelay is the fixed hedging delay of grpc-go's native hedging and of
// failsafe-go's, which have no adaptive delay, and the delay ours uses
// until it has seen enough latencies to use its percentile.
const hedgeDelay = 3 * time.Millisecond

// hedgingLibs are the clients of the hedging scenario: no hedging, ours
// with an adaptive delay (the 95th percentile of observed latencies) and
// with the fixed delay, grpc-go's native hedging and failsafe-go's, each
// with one extra attempt.
func hedgingLibs() []lib {
	return []lib{
		bareLib(),
		oursLib("ours-p95", interceptors.Policy{Hedging: &interceptors.HedgingPolicy{Delay: hedgeDelay, Percentile: 95}}),
		oursLib("ours-fixed", interceptors.Policy{Hedging: &interceptors.HedgingPolicy{Delay: hedgeDelay}}),
		nativeHedgeLib(hedgeDelay),
		failsafeHedgeLib(hedgeDelay),
	}
}

// runHedging makes calls from 8 concurrent callers to the heavy-tail
// server through each client and reports the median and p99 latency of
// the calls and the extra load: attempts the server saw beyond one per
// call, in percent.
func runHedging(s settings) error {
	for _, l := range hedgingLibs() {
		r, err := hedging(l, s.count(3000), s.duration(8*time.Second))
		if err != nil {
			return err
		}
		s.emit("Hedging/"+l.name, len(r.latencies),
			metric{ms(percentile(r.latencies, 50)), "p50-ms"},
			metric{ms(percentile(r.latencies, 99)), "p99-ms"},
			metric{100 * (float64(r.attempts)/float64(max(len(r.latencies), 1)) - 1), "extra-load-%"},
			metric{float64(r.failed), "failed"})
	}
	return nil
}

// hedgeResult is what one client did in the hedging scenario.
type hedgeResult struct {
	latencies []time.Duration // one per call
	attempts  int64           // seen by the server
	failed    int64           // calls that failed
}

// hedging makes n calls (or as many as fit in d) from 8 callers through l
// to a fresh heavy-tail server.
func hedging(l lib, n int, d time.Duration) (hedgeResult, error) {
	const hedgeCallers = 8
	e, err := newEnv(heavyTail())
	if err != nil {
		return hedgeResult{}, err
	}
	defer e.close()
	c, err := e.dial(l)
	if err != nil {
		return hedgeResult{}, err
	}
	defer c.close()
	e.attempts.Store(0)
	stop := time.Now().Add(d)
	var (
		started atomic.Int64
		failed  atomic.Int64
		mu      sync.Mutex
		lat     []time.Duration
		wg      sync.WaitGroup
	)
	req := &testingv1.IdempotentUnaryRequest{}
	for range hedgeCallers {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(stop) && started.Add(1) <= int64(n) {
				ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
				start := time.Now()
				if err := c.call(ctx, req); err != nil {
					failed.Add(1)
				}
				mine = append(mine, time.Since(start))
				cancel()
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	// Attempts still running in the server (cancelled hedges) have been
	// counted when they arrived.
	return hedgeResult{latencies: lat, attempts: e.attempts.Load(), failed: failed.Load()}, nil
}

package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// callerCounts are the numbers of concurrent callers of the callers
// scenario.
var callerCounts = []int{1, 8, 64, 256}

// callersTime is each client's time at one concurrency, at scale 1.
const callersTime = 2 * time.Second

// callersSlices is how many slices each client's time at one concurrency
// is cut into; the clients take turns slice by slice, in an order that
// rotates, so that the machine's drift spreads evenly over them.
const callersSlices = 10

// callersTimeout is each call's deadline in the callers scenario: far
// above any latency of a healthy loopback server, even with 256 callers
// on a loaded machine, so that a failure means a bug rather than a slow
// machine.
const callersTimeout = 10 * time.Second

// callersLibs are the clients of the callers scenario: the bare client, a
// second bare client on a connection of its own (its difference from the
// first is the noise of the measurement), our full pipeline (retry with the
// default budget, breaker, client bulkhead, as in the overhead scenario),
// go-grpc-middleware's retry and failsafe-go's retry and breaker, each
// with its defaults.
func callersLibs() []lib {
	control := bareLib()
	control.name = "none-control"
	return []lib{
		bareLib(),
		control,
		oursLib("ours-full", interceptors.Policy{
			Retry:    &interceptors.RetryPolicy{},
			Breaker:  &interceptors.BreakerPolicy{},
			Bulkhead: &interceptors.BulkheadPolicy{Limit: 1 << 20},
		}),
		mwRetryLib(),
		failsafeLib("failsafe-go-retry+breaker", circuitbreakerDefaults()),
	}
}

// callersCell is what one client did at one concurrency.
type callersCell struct {
	latencies []time.Duration
	elapsed   time.Duration
}

// runCallers measures throughput and latency as the number of concurrent
// callers grows: for each of 1, 8, 64 and 256 callers, every client of
// callersLibs, all on one healthy server, runs that many callers in a
// closed loop for callersTime in all (scaled), in slices taken in turns
// with the other clients, after a warm-up slice. It reports each client's calls per second and its p99 and
// median latency at each concurrency.
func runCallers(s settings) error {
	e, err := newEnv(noFaults())
	if err != nil {
		return err
	}
	defer e.close()
	libs := callersLibs()
	conns := make([]*conn, len(libs))
	for i, l := range libs {
		if conns[i], err = e.dial(l); err != nil {
			return err
		}
		defer conns[i].close()
	}
	slice := s.duration(callersTime) / callersSlices
	maxCalls := s.count(1_000_000)
	for ci, n := range callerCounts {
		cells := make([]callersCell, len(libs))
		// A warm-up slice for every client, unrecorded: the callers'
		// goroutines and the connections' buffers grow to this
		// concurrency before anything counts.
		for i := range libs {
			if _, _, err := callersSlice(conns[i], n, slice/2, maxCalls); err != nil {
				return fmt.Errorf("%s, %d callers: %w", libs[i].name, n, err)
			}
		}
		for r := range callersSlices {
			for k := range libs {
				i := (ci + r + k) % len(libs)
				lat, elapsed, err := callersSlice(conns[i], n, slice, maxCalls)
				if err != nil {
					return fmt.Errorf("%s, %d callers: %w", libs[i].name, n, err)
				}
				cells[i].latencies = append(cells[i].latencies, lat...)
				cells[i].elapsed += elapsed
			}
		}
		for i, l := range libs {
			c := cells[i]
			s.emit(fmt.Sprintf("Callers/%s/callers=%d", l.name, n), len(c.latencies),
				metric{float64(len(c.latencies)) / max(c.elapsed.Seconds(), 1e-9), "calls/s"},
				metric{float64(percentile(c.latencies, 99).Nanoseconds()), "p99-ns"},
				metric{float64(percentile(c.latencies, 50).Nanoseconds()), "p50-ns"})
		}
	}
	return nil
}

// callersSlice runs n callers that call c in a closed loop until d has
// passed or maxCalls calls started, and returns the latency of every call
// and the time from the start until the last caller finished. Every call
// must succeed: the server is healthy.
func callersSlice(c *conn, n int, d time.Duration, maxCalls int) ([]time.Duration, time.Duration, error) {
	req := &testingv1.IdempotentUnaryRequest{Payload: []byte("ping")}
	lats := make([][]time.Duration, n)
	errs := make([]error, n)
	var started atomic.Int64
	begin := time.Now()
	stop := begin.Add(d)
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() {
			for {
				start := time.Now()
				if !start.Before(stop) || started.Add(1) > int64(maxCalls) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), callersTimeout)
				err := c.call(ctx, req)
				cancel()
				if err != nil {
					errs[g] = err
					return
				}
				lats[g] = append(lats[g], time.Since(start))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	var all []time.Duration
	for g := range n {
		if errs[g] != nil {
			return nil, 0, errs[g]
		}
		all = append(all, lats[g]...)
	}
	return all, elapsed, nil
}

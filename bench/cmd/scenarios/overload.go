package main

import (
	"context"
	"sync"
	"time"

	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/failsafegrpc"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ourbulkhead "github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// The overload scenario's server has `workers` workers, each call holds
// one for `work`: a capacity of workers/work calls per second. Calls that
// find every worker busy wait for one, in FIFO order, and the work is done
// even for calls whose client gave up, as in a server that does not check
// its context: the classic queue that makes goodput collapse under
// overload.
const (
	workers = 4
	work    = 10 * time.Millisecond
	// capacity is the server's capacity in calls per second.
	capacity = float64(workers) / (float64(work) / float64(time.Second))
	// overloadTimeout is each call's deadline in the overload scenario.
	overloadTimeout = 100 * time.Millisecond
)

// protection is a server-side set-up of the overload scenario: the
// interceptors between the attempt counter and the simulated work.
type protection struct {
	name  string
	inner func() ([]grpc.UnaryServerInterceptor, error)
}

// protections are the server set-ups compared: none, our server bulkhead
// with a fixed limit of the number of workers, ours with the Gradient
// adaptive limit started at twice that, ours with AIMD (timeout at the
// calls' deadline), and failsafe-go's bulkhead server interceptor of the
// same fixed limit (it rejects at once, as ours, when full).
func protections() []protection {
	ours := func(cfg server.BulkheadConfig) func() ([]grpc.UnaryServerInterceptor, error) {
		return func() ([]grpc.UnaryServerInterceptor, error) {
			s, err := server.New(server.Config{Bulkhead: cfg})
			if err != nil {
				return nil, err
			}
			return []grpc.UnaryServerInterceptor{s.UnaryServerInterceptor()}, nil
		}
	}
	return []protection{
		{"none", func() ([]grpc.UnaryServerInterceptor, error) { return nil, nil }},
		{"ours-bulkhead", ours(server.BulkheadConfig{Limit: workers})},
		{"ours-adaptive-gradient", ours(server.BulkheadConfig{Limit: 2 * workers, Adaptive: func() ourbulkhead.Strategy {
			return ourbulkhead.NewGradient(ourbulkhead.GradientConfig{Window: 100 * time.Millisecond})
		}})},
		{"ours-adaptive-aimd", ours(server.BulkheadConfig{Limit: 2 * workers, Adaptive: func() ourbulkhead.Strategy {
			return ourbulkhead.NewAIMD(ourbulkhead.AIMDConfig{Timeout: overloadTimeout / 2})
		}})},
		{"failsafe-go-bulkhead", func() ([]grpc.UnaryServerInterceptor, error) {
			return []grpc.UnaryServerInterceptor{failsafegrpc.NewUnaryServerInterceptor[any](bulkhead.New[any](workers))}, nil
		}},
	}
}

// runOverload offers 3x the server's capacity, open loop, for 2s, with
// each protection, and reports the goodput (calls that succeeded within
// their deadline, per second of offered load, and as a share of the
// capacity), the p99 latency of the successful calls and the calls
// rejected.
func runOverload(s settings) error {
	for _, p := range protections() {
		r, err := overload(p, s.duration(2*time.Second))
		if err != nil {
			return err
		}
		goodput := float64(len(r.latencies)) / r.offered.Seconds()
		s.emit("Overload/"+p.name, r.calls,
			metric{goodput, "goodput/s"},
			metric{goodput / capacity, "goodput/capacity"},
			metric{ms(percentile(r.latencies, 99)), "admitted-p99-ms"},
			metric{float64(r.shed), "shed"})
	}
	return nil
}

// overloadResult is what one protection achieved in the overload scenario.
type overloadResult struct {
	calls     int             // offered
	offered   time.Duration   // how long the load was offered
	latencies []time.Duration // of the calls that succeeded
	shed      int64           // calls rejected (not deadline exceeded)
}

// overload offers 3x the capacity open loop (a call every 1/(3*capacity),
// whatever the answers) for d to a fresh server protected by p.
func overload(p protection, d time.Duration) (overloadResult, error) {
	rate := 3 * capacity
	n := max(1, int(rate*d.Seconds()))
	interval := time.Duration(float64(time.Second) / rate)
	inner, err := p.inner()
	if err != nil {
		return overloadResult{}, err
	}
	// The workers wait on scenario, not on the call's context: the work
	// is done even for calls whose client gave up, and the backlog is
	// dropped when the scenario ends.
	scenario, endScenario := context.WithCancel(context.Background())
	defer endScenario()
	cpu := semaphore.NewWeighted(workers)
	worker := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := cpu.Acquire(scenario, 1); err != nil {
			return nil, err
		}
		defer cpu.Release(1)
		t := time.NewTimer(work)
		defer t.Stop()
		select {
		case <-t.C:
		case <-scenario.Done():
		}
		return h(ctx, req)
	}
	e, err := newEnv(noFaults(), append(inner, worker)...)
	if err != nil {
		return overloadResult{}, err
	}
	defer e.close()
	c, err := e.dial(bareLib())
	if err != nil {
		return overloadResult{}, err
	}
	defer c.close()
	var (
		mu  sync.Mutex
		res = overloadResult{calls: n}
		wg  sync.WaitGroup
	)
	req := &testingv1.IdempotentUnaryRequest{}
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait) // pacing the open loop: the load under test
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), overloadTimeout)
			defer cancel()
			t0 := time.Now()
			err := c.call(ctx, req)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				res.latencies = append(res.latencies, time.Since(t0))
			case isShed(err):
				res.shed++
			}
		})
	}
	res.offered = time.Since(start)
	wg.Wait()
	return res, nil
}

// isShed reports whether a call failed fast, rejected by the server,
// rather than by running out of its deadline.
func isShed(err error) bool { return status.Code(err) != codes.DeadlineExceeded }

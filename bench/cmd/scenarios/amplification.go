package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// outage is a fault schedule that fails every call with UNAVAILABLE, with
// no pushback.
func outage() server.FaultConfig {
	return server.FaultConfig{All: server.Fault{ErrorRate: 1, Code: codes.Unavailable}}
}

// noFaults is a healthy server.
func noFaults() server.FaultConfig { return server.FaultConfig{} }

// amplificationLibs are the retrying clients, each with its defaults (see
// each constructor for the few settings a library has no default for),
// and ours with its default budget, without it, and with its breaker.
func amplificationLibs() []lib {
	return []lib{
		bareLib(),
		oursLib("ours", interceptors.Policy{Retry: &interceptors.RetryPolicy{}}),
		oursLib("ours-no-budget", interceptors.Policy{Retry: &interceptors.RetryPolicy{Budget: interceptors.NoBudget}}),
		oursLib("ours+breaker", interceptors.Policy{Retry: &interceptors.RetryPolicy{}, Breaker: &interceptors.BreakerPolicy{}}),
		mwRetryLib(),
		failsafeLib("failsafe-go-retry", nil),
		failsafeLib("failsafe-go-retry+breaker", circuitbreakerDefaults()),
		nativeRetryLib(false),
		nativeRetryLib(true),
		backoffLib(),
		eapacheRetryLib(),
	}
}

// callers is the number of concurrent callers of the load scenarios.
const callers = 32

// callTimeout is every logical call's deadline in the load scenarios.
const callTimeout = time.Second

// runAmplification lets 32 callers call in a loop for 2s, each call with
// a 1s deadline, against a server that fails everything, and reports the
// attempts the server saw per logical call for each library.
func runAmplification(s settings) error {
	for _, l := range amplificationLibs() {
		attempts, calls, err := amplification(l, s.duration(2*time.Second), s.count(500000))
		if err != nil {
			return err
		}
		s.emit("Amplification/"+l.name, int(calls),
			metric{float64(attempts) / float64(max(calls, 1)), "attempts/call"},
			metric{float64(calls), "calls"})
	}
	return nil
}

// amplification runs l's callers against a fresh server in a total outage
// for d or maxCalls calls, and returns the attempts the server saw and the
// logical calls made.
func amplification(l lib, d time.Duration, maxCalls int) (attempts, calls int64, err error) {
	e, err := newEnv(outage())
	if err != nil {
		return 0, 0, err
	}
	defer e.close()
	c, err := e.dial(l)
	if err != nil {
		return 0, 0, err
	}
	defer c.close()
	e.attempts.Store(0)
	n := closedLoop(c, callers, d, maxCalls, nil)
	return e.attempts.Load(), n.Load(), nil
}

// closedLoop runs n callers that call c in a loop until d has passed or
// maxCalls calls started, each call with callTimeout, and waits for the
// calls in flight. It returns the number of calls made; done, if not nil,
// is told of each call's end and error.
func closedLoop(c *conn, n int, d time.Duration, maxCalls int, done func(end time.Time, err error)) *atomic.Int64 {
	var calls atomic.Int64
	stop := time.Now().Add(d)
	req := &testingv1.IdempotentUnaryRequest{}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for time.Now().Before(stop) && calls.Add(1) <= int64(maxCalls) {
				ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
				err := c.call(ctx, req)
				cancel()
				if done != nil {
					done(time.Now(), err)
				}
			}
		})
	}
	wg.Wait()
	if calls.Load() > int64(maxCalls) {
		calls.Store(int64(maxCalls))
	}
	return &calls
}

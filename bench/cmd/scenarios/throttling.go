package main

import (
	"context"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivethrottler"
	"github.com/failsafe-go/failsafe-go/failsafegrpc"
	"github.com/go-kratos/aegis/circuitbreaker/sre"
	zerobreaker "github.com/zeromicro/go-zero/core/breaker"
	"github.com/zeromicro/go-zero/core/logx"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// The throttling scenario's backend serves throttleCapacity calls a second
// and fails the rest at once with UNAVAILABLE (a token bucket with a burst
// of 50ms of capacity); its callers offer twice that.
const (
	throttleCapacity = 200
	throttleBurst    = throttleCapacity / 20
	throttleOffered  = 2 * throttleCapacity
	// throttleDeadline is each call's deadline; the backend answers at
	// once, so no call comes near it.
	throttleDeadline = time.Second
	// throttleBucket is the width of the windows in which the recovery
	// part counts successes.
	throttleBucket = 100 * time.Millisecond
)

// quietPeers undoes what go-zero does to the process when its packages
// load: its logs, which go to stdout by default (a line per breaker
// rejection, statistics every minute), are discarded, and GOMAXPROCS,
// which it sets from the cgroup's CPU quota (uber's automaxprocs), goes
// back to Go's own default unless the GOMAXPROCS variable sets it.
func quietPeers() {
	logx.SetWriter(logx.NewWriter(io.Discard))
	logx.DisableStat()
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.SetDefaultGOMAXPROCS()
	}
}

// throttlingLibs are the clients compared in the throttling scenario, none
// of them retrying: ours with the adaptive throttle at its defaults (K 2)
// and at go-zero's K of 1.5, our breaker (its defaults but the open
// duration, 500ms as in the recovery scenario: the default minute would
// outlast the scenario), go-zero's breaker (an SRE throttle, K 1.5, used as
// its zrpc client interceptor does), aegis' SRE breaker (K 1/0.6, used
// as Kratos' circuit-breaker middleware does) and failsafe-go's adaptive
// throttler through its gRPC interceptor, with its defaults (it throttles
// once more than 10% of the last minute's calls failed, rejecting at most
// 90%).
func throttlingLibs() []lib {
	return []lib{
		bareLib(),
		oursLib("ours-throttle", interceptors.Policy{Throttle: &interceptors.ThrottlePolicy{}}),
		oursLib("ours-throttle-k1.5", interceptors.Policy{Throttle: &interceptors.ThrottlePolicy{K: 1.5}}),
		oursLib("ours-breaker", interceptors.Policy{Breaker: oursBreaker(openFor)}),
		goZeroBreakerLib(),
		aegisSRELib(),
		{name: "failsafe-go-throttler", dial: []grpc.DialOption{grpc.WithDisableRetry(),
			grpc.WithChainUnaryInterceptor(failsafegrpc.NewUnaryClientInterceptor[any](adaptivethrottler.NewWithDefaults[any]()))}},
	}
}

// goZeroBreakerLib is go-zero's breaker around each call, with the
// acceptable codes of its zrpc client interceptor.
func goZeroBreakerLib() lib {
	b := zerobreaker.NewBreaker()
	acceptable := func(err error) bool {
		switch status.Code(err) {
		case codes.DeadlineExceeded, codes.Internal, codes.Unavailable, codes.DataLoss,
			codes.Unimplemented, codes.ResourceExhausted:
			return false
		}
		return true
	}
	return lib{name: "go-zero-breaker", dial: []grpc.DialOption{grpc.WithDisableRetry()},
		wrap: func(ctx context.Context, call func(ctx context.Context) error) error {
			return b.DoWithAcceptableCtx(ctx, func() error { return call(ctx) }, acceptable)
		}}
}

// aegisSRELib is aegis' SRE breaker around each call, marking failures as
// Kratos' circuit-breaker middleware does (server errors, unavailable,
// gateway timeout).
func aegisSRELib() lib {
	b := sre.NewBreaker()
	return lib{name: "aegis-sre", dial: []grpc.DialOption{grpc.WithDisableRetry()},
		wrap: func(ctx context.Context, call func(ctx context.Context) error) error {
			if err := b.Allow(); err != nil {
				return status.Error(codes.Unavailable, err.Error())
			}
			err := call(ctx)
			switch status.Code(err) {
			case codes.Internal, codes.Unavailable, codes.DeadlineExceeded:
				b.MarkFailed()
			default:
				b.MarkSuccess()
			}
			return err
		}}
}

// backend is the throttling scenario's server stage: down answers
// UNAVAILABLE to everything, otherwise a token bucket of throttleCapacity
// a second (or no limit) decides; refused counts the attempts it failed.
type backend struct {
	limit   *rate.Limiter
	down    atomic.Bool
	refused atomic.Int64
}

func (b *backend) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if b.down.Load() || !b.limit.Allow() {
		b.refused.Add(1)
		return nil, status.Error(codes.Unavailable, "backend over capacity")
	}
	return h(ctx, req)
}

// runThrottling measures each client against the half-capacity backend,
// then through an outage of it.
func runThrottling(s settings) error {
	for _, l := range throttlingLibs() {
		r, err := throttleOverload(l, s.duration(4*time.Second))
		if err != nil {
			return err
		}
		secs := r.offered.Seconds()
		s.emit("Throttling/"+l.name, r.calls,
			metric{float64(r.attempts) / secs, "backend-attempts/s"},
			metric{float64(r.refused) / secs, "backend-refused/s"},
			metric{100 * float64(r.ok) / float64(max(r.calls, 1)), "success-%"},
			metric{float64(r.ok) / secs, "successes/s"})
	}
	for _, l := range throttlingLibs() {
		r, err := throttleRecovery(l, s.duration(time.Second), s.duration(3*time.Second), s.duration(5*time.Second))
		if err != nil {
			return err
		}
		recovered := 0.0
		if r.recovered {
			recovered = 1
		}
		s.emit("ThrottleRecovery/"+l.name, r.calls,
			metric{ms(r.took), "recovery-ms"},
			metric{recovered, "recovered"},
			metric{r.outageAttempts, "outage-attempts/s"})
	}
	return nil
}

// throttleResult is what one client achieved against the half-capacity
// backend.
type throttleResult struct {
	calls    int           // offered
	offered  time.Duration // how long
	ok       int           // succeeded
	attempts int64         // reached the backend
	refused  int64         // refused by the backend
}

// throttleOverload offers throttleOffered calls a second, open loop, for
// d through client l to a fresh backend of throttleCapacity.
func throttleOverload(l lib, d time.Duration) (throttleResult, error) {
	b := &backend{limit: rate.NewLimiter(throttleCapacity, throttleBurst)}
	e, err := newEnv(noFaults(), b.intercept)
	if err != nil {
		return throttleResult{}, err
	}
	defer e.close()
	c, err := e.dial(l)
	if err != nil {
		return throttleResult{}, err
	}
	defer c.close()
	var (
		mu  sync.Mutex
		res throttleResult
	)
	res.calls, res.offered = paced(throttleOffered, d, func(time.Time) {
		if c.callWithin(throttleDeadline) == nil {
			mu.Lock()
			res.ok++
			mu.Unlock()
		}
	})
	res.attempts, res.refused = e.attempts.Load(), b.refused.Load()
	return res, nil
}

// paced calls fn, with the time of the call, rate times a second for d,
// open loop (each call on its own goroutine, whatever the others do), and
// returns the number of calls and how long they were offered, once every
// call has returned.
func paced(rate float64, d time.Duration, fn func(start time.Time)) (int, time.Duration) {
	n := max(1, int(rate*d.Seconds()))
	interval := time.Duration(float64(time.Second) / rate)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait) // pacing the open loop: the load under test
		}
		wg.Go(func() { fn(time.Now()) })
	}
	offered := time.Since(start)
	wg.Wait()
	return n, offered
}

// callWithin makes one call with deadline d.
func (c *conn) callWithin(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.call(ctx, &testingv1.IdempotentUnaryRequest{})
}

// recoveryResult is how one client came through the backend's outage.
type recoveryResult struct {
	calls          int
	took           time.Duration
	recovered      bool
	outageAttempts float64 // per second, reaching the backend while down
}

// throttleRecovery offers half the backend's capacity through client l:
// healthy for before, down (UNAVAILABLE to everything) for down, healthy
// again for after. It reports the time from the end of the outage to the
// end of the last throttleBucket window, by the calls' start, in which
// fewer than 90% of the calls succeeded, and the attempts a second that
// reached the backend while it was down.
func throttleRecovery(l lib, before, down, after time.Duration) (recoveryResult, error) {
	b := &backend{limit: rate.NewLimiter(rate.Inf, 0)}
	e, err := newEnv(noFaults(), b.intercept)
	if err != nil {
		return recoveryResult{}, err
	}
	defer e.close()
	c, err := e.dial(l)
	if err != nil {
		return recoveryResult{}, err
	}
	defer c.close()
	nb := max(1, int(after/throttleBucket))
	var (
		mu             sync.Mutex
		ok, all        = make([]int, nb), make([]int, nb)
		atDown, atHeal int64
		healed         = time.Now().Add(before + down) // until the outage really ends
	)
	goDown := time.AfterFunc(before, func() {
		mu.Lock()
		defer mu.Unlock()
		atDown = e.attempts.Load()
		b.down.Store(true)
	})
	defer goDown.Stop()
	heal := time.AfterFunc(before+down, func() {
		mu.Lock()
		defer mu.Unlock()
		atHeal = e.attempts.Load()
		b.down.Store(false)
		healed = time.Now()
	})
	defer heal.Stop()
	calls, _ := paced(throttleCapacity/2, before+down+after, func(t time.Time) {
		err := c.callWithin(throttleDeadline)
		mu.Lock()
		defer mu.Unlock()
		if i := int(t.Sub(healed) / throttleBucket); !t.Before(healed) && i < nb {
			all[i]++
			if err == nil {
				ok[i]++
			}
		}
	})
	res := recoveryResult{calls: calls}
	last := -1
	for i := range all {
		if all[i] > 0 && float64(ok[i]) < 0.9*float64(all[i]) {
			last = i
		}
	}
	res.took, res.recovered = time.Duration(last+1)*throttleBucket, last < nb-1
	mu.Lock()
	defer mu.Unlock()
	if down > 0 && atHeal >= atDown {
		res.outageAttempts = float64(atHeal-atDown) / down.Seconds()
	}
	return res, nil
}

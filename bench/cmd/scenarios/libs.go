package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/afex/hystrix-go/hystrix"
	"github.com/cenkalti/backoff/v5"
	eabreaker "github.com/eapache/go-resiliency/breaker"
	"github.com/eapache/go-resiliency/retrier"
	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafegrpc"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"
	mwretry "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/retry"
	"github.com/sony/gobreaker/v2"
	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
)

// lib is one library's client set-up: dial options (interceptors, service
// config) and, for libraries that are not gRPC interceptors, a wrapper
// around the call. Every lib is built fresh for each scenario, so that no
// breaker or budget state crosses scenarios.
type lib struct {
	name  string
	dial  []grpc.DialOption
	wrap  func(ctx context.Context, call func(ctx context.Context) error) error
	close func()
}

// bareLib is a client with no resilience at all, gRPC's own retries off.
func bareLib() lib { return lib{name: "none", dial: []grpc.DialOption{grpc.WithDisableRetry()}} }

// oursLib is our client pipeline with policy p, gRPC's own retries off, as
// the interceptors package recommends.
func oursLib(name string, p interceptors.Policy) lib {
	c, err := interceptors.NewClient(interceptors.Config{Default: p})
	if err != nil {
		panic(fmt.Sprintf("%s: %v", name, err)) // the policies below are valid
	}
	return lib{name: name, dial: []grpc.DialOption{grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(c.UnaryClientInterceptor())}}
}

// nativeRetryConfig is grpc-go's service-config retry for method: 3
// attempts, gRFC A6's example backoff, UNAVAILABLE retried. The service
// config has no defaults for these fields; throttling adds gRFC A6's
// example retryThrottling (10 tokens, ratio 0.1).
func nativeRetryConfig(throttling bool) string {
	cfg := `{"methodConfig":[{"name":[{"service":"grpcresilience.testing.v1.TestService"}],
	  "retryPolicy":{"maxAttempts":3,"initialBackoff":"0.1s","maxBackoff":"1s","backoffMultiplier":2,
	  "retryableStatusCodes":["UNAVAILABLE"]}}]`
	if throttling {
		cfg += `,"retryThrottling":{"maxTokens":10,"tokenRatio":0.1}`
	}
	return cfg + "}"
}

// nativeRetryLib is grpc-go's own retry from the service config.
func nativeRetryLib(throttling bool) lib {
	name := "grpc-native-retry"
	if throttling {
		name += "+throttling"
	}
	return lib{name: name, dial: []grpc.DialOption{grpc.WithDefaultServiceConfig(nativeRetryConfig(throttling))}}
}

// nativeHedgeLib is grpc-go's own hedging from the service config: 2
// attempts, the second after delay, UNAVAILABLE non-fatal.
func nativeHedgeLib(delay time.Duration) lib {
	cfg := fmt.Sprintf(`{"methodConfig":[{"name":[{"service":"grpcresilience.testing.v1.TestService"}],
	  "hedgingPolicy":{"maxAttempts":2,"hedgingDelay":"%.6fs","nonFatalStatusCodes":["UNAVAILABLE"]}}]}`, delay.Seconds())
	return lib{name: "grpc-native-hedging", dial: []grpc.DialOption{grpc.WithDefaultServiceConfig(cfg)}}
}

// mwRetryLib is go-grpc-middleware v2's retry interceptor. Its default is
// no retry at all (WithMax(0)), so it gets 3 attempts; backoff (linear
// 50ms, 10% jitter) and codes (UNAVAILABLE, RESOURCE_EXHAUSTED) are its
// defaults.
func mwRetryLib() lib {
	return lib{name: "go-grpc-middleware-retry", dial: []grpc.DialOption{grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(mwretry.UnaryClientInterceptor(mwretry.WithMax(3)))}}
}

// failsafeLib is failsafe-go's gRPC interceptor with its gRPC retry policy
// (3 attempts, no delay, UNAVAILABLE, DEADLINE_EXCEEDED and
// RESOURCE_EXHAUSTED) and, when cb is not nil, the breaker cb (failsafe-go's
// default breaker opens after 1 failure, for 1 minute).
func failsafeLib(name string, cb circuitbreaker.CircuitBreaker[any]) lib {
	policies := []failsafe.Policy[any]{failsafegrpc.NewRetryPolicyBuilder[any]().Build()}
	if cb != nil {
		policies = append(policies, cb)
	}
	return lib{name: name, dial: []grpc.DialOption{grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(failsafegrpc.NewUnaryClientInterceptor[any](policies...))}}
}

// failsafeBreakerLib is failsafe-go's breaker alone, through its gRPC
// interceptor, open for openFor once it opens (its default opens after 1
// failure).
func failsafeBreakerLib(openFor time.Duration) lib {
	cb := circuitbreaker.NewBuilder[any]().WithDelay(openFor).Build()
	return lib{name: "failsafe-go-breaker", dial: []grpc.DialOption{grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(failsafegrpc.NewUnaryClientInterceptor[any](cb))}}
}

// failsafeHedgeLib is failsafe-go's hedge policy through its gRPC
// interceptor: one hedge after delay.
func failsafeHedgeLib(delay time.Duration) lib {
	return lib{name: "failsafe-go-hedging", dial: []grpc.DialOption{grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(failsafegrpc.NewUnaryClientInterceptor[any](hedgepolicy.NewWithDelay[any](delay)))}}
}

// backoffLib wraps the call in cenkalti/backoff v5's Retry with its
// defaults: exponential from 500ms, factor 1.5, 50% randomization, no limit
// on tries, 15 minutes at most; the caller's deadline ends it first.
func backoffLib() lib {
	return lib{name: "cenkalti-backoff", dial: []grpc.DialOption{grpc.WithDisableRetry()},
		wrap: func(ctx context.Context, call func(ctx context.Context) error) error {
			_, err := backoff.Retry(ctx, func() (struct{}, error) { return struct{}{}, call(ctx) })
			return err
		}}
}

// eapacheRetryLib wraps the call in eapache/go-resiliency's retrier, which
// has no defaults: 2 retries with exponential backoff from 100ms, as the
// other libraries' 3 attempts; every error is retried (its default
// classifier).
func eapacheRetryLib() lib {
	r := retrier.New(retrier.ExponentialBackoff(2, 100*time.Millisecond), nil)
	return lib{name: "eapache-retrier", dial: []grpc.DialOption{grpc.WithDisableRetry()},
		wrap: func(ctx context.Context, call func(ctx context.Context) error) error { return r.RunCtx(ctx, call) }}
}

// gobreakerLib wraps the call in sony/gobreaker v2 with its defaults
// (opens after more than 5 consecutive failures, half-opens after Timeout)
// except Timeout, the open duration.
func gobreakerLib(openFor time.Duration) lib {
	cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{Name: "bench", Timeout: openFor})
	return lib{name: "sony-gobreaker", dial: []grpc.DialOption{grpc.WithDisableRetry()},
		wrap: func(ctx context.Context, call func(ctx context.Context) error) error {
			_, err := cb.Execute(func() (struct{}, error) { return struct{}{}, call(ctx) })
			return err
		}}
}

// eapacheBreakerLib wraps the call in eapache/go-resiliency's breaker,
// which has no defaults: 5 errors open it, 2 successes close it, as ours.
func eapacheBreakerLib(openFor time.Duration) lib {
	b := eabreaker.New(5, 2, openFor)
	return lib{name: "eapache-breaker", dial: []grpc.DialOption{grpc.WithDisableRetry()},
		wrap: func(ctx context.Context, call func(ctx context.Context) error) error {
			return b.Run(func() error { return call(ctx) })
		}}
}

// hystrixSeq names each hystrix command uniquely: hystrix-go keeps its
// circuits in a process-wide registry.
var hystrixSeq atomic.Int64

// hystrixLib wraps the call in hystrix-go's Do with its defaults (1s
// timeout, error percentage 50 over a volume of 20) except the sleep
// window, the open duration, and the concurrency limit, whose default of 10
// would reject most of 32 concurrent callers.
func hystrixLib(openFor time.Duration) lib {
	name := fmt.Sprintf("bench-%d", hystrixSeq.Add(1))
	hystrix.ConfigureCommand(name, hystrix.CommandConfig{SleepWindow: int(openFor / time.Millisecond), MaxConcurrentRequests: 256})
	return lib{name: "hystrix-go", dial: []grpc.DialOption{grpc.WithDisableRetry()},
		wrap: func(ctx context.Context, call func(ctx context.Context) error) error {
			return hystrix.DoC(ctx, name, call, nil)
		}}
}

// oursBreaker is our breaker policy with its defaults except the open
// duration.
func oursBreaker(openFor time.Duration) *interceptors.BreakerPolicy {
	return &interceptors.BreakerPolicy{OpenDuration: openFor}
}

// circuitbreakerDefaults is failsafe-go's breaker with its defaults: it
// opens after 1 failure, for 1 minute, and closes after 1 success.
func circuitbreakerDefaults() circuitbreaker.CircuitBreaker[any] {
	return circuitbreaker.NewWithDefaults[any]()
}

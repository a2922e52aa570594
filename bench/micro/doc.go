// Package micro holds the micro-benchmarks of grpc-resilience side by side
// with its peers, run in the same process so that their figures can be
// compared as ratios:
//
//   - breaker allow+record, serial and under RunParallel: ours, sony/gobreaker
//     v2, failsafe-go, eapache/go-resiliency, afex/hystrix-go;
//   - bulkhead acquire+release, serial and parallel: ours, golang.org/x/sync
//     semaphore, failsafe-go, eapache/go-resiliency and a buffered channel;
//   - the success path of a retry: ours, cenkalti/backoff v5, failsafe-go,
//     eapache/go-resiliency and a plain call;
//   - the whole unary client pipeline over an in-process invoker: ours,
//     go-grpc-middleware v2's retry, failsafe-go's gRPC interceptor and the
//     bare invoker;
//   - the same interceptors on a real unary call to a testservice server on
//     127.0.0.1, where allocs/op shows what each adds to gRPC's own;
//   - rate limiters granting, refusing and saturated: ours,
//     golang.org/x/time/rate, failsafe-go and uber-go/ratelimit;
//   - the pipeline's cost as distinct (target, method) keys grow, the
//     first call of a new key and the memory per key;
//   - server-stream, bidi and stream opening on loopback through our stream
//     interceptor, go-grpc-middleware's stream retry and none, separately
//     and paired with a bare-vs-bare control;
//   - the telemetry observer: none, OTel's no-op providers and the real SDK
//     sampling 1% and all root spans;
//   - the fleet-wide limiter and the Redis clients it runs on, against a
//     real redis-server (skipped without one).
//
// The package has no code besides its tests: run it with
//
//	go test -run='^$' -bench=. -benchmem ./micro/
//
// from the bench module; `make bench` at the repository root does so and
// turns the output into BENCHMARKS.md. It runs the RunParallel benchmarks
// (BreakerAllowRecordParallel, BulkheadTryAcquireReleaseParallel,
// BulkheadAcquireReleaseParallel, UnaryPipelineParallel and
// RateLimitAllowParallel) on their own with -cpu 1,2,4,8, so that the
// report can show how each library's ns/op moves as GOMAXPROCS grows past
// the machine's cores, where a global lock shows as a step up. Every
// benchmark reports allocations.
//
// Each library runs with its defaults, except where a default would make the
// benchmark measure something else (a concurrency limit low enough to reject
// under RunParallel, go-grpc-middleware's zero retries); the test files say
// where.
package micro

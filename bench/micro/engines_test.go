package micro

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/afex/hystrix-go/hystrix"
	"github.com/cenkalti/backoff/v5"
	eabreaker "github.com/eapache/go-resiliency/breaker"
	"github.com/eapache/go-resiliency/retrier"
	easemaphore "github.com/eapache/go-resiliency/semaphore"
	"github.com/failsafe-go/failsafe-go"
	fsbulkhead "github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/sync/semaphore"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/retry"
)

// op is one library's version of the operation a benchmark measures. It
// must be safe for concurrent use, for RunParallel.
type op struct {
	lib string
	run func() error
}

// errRejected reports an operation the library refused, which would mean
// the benchmark measured a rejection instead of the success path.
var errRejected = errors.New("rejected")

// hystrixSuccess is the event list hystrix-go's own Do reports for a
// successful command; a shared slice keeps the benchmark from allocating
// it per call.
var hystrixSuccess = []string{"success"}

// breakers returns each library's closed breaker, with its defaults: a
// permit asked for and a success recorded. eapache/go-resiliency has no
// two-step form (and no defaults: 5 errors, 2 successes and 60s, as ours),
// so it runs an empty function through Run.
func breakers() []op {
	ours := breaker.New(breaker.Config{})
	sony := gobreaker.NewTwoStepCircuitBreaker[any](gobreaker.Settings{Name: "bench"})
	fs := circuitbreaker.NewWithDefaults[any]()
	ea := eabreaker.New(5, 2, 60*time.Second)
	hx, _, err := hystrix.GetCircuit("micro-bench")
	if err != nil {
		panic(err)
	}
	nop := func() error { return nil }
	return []op{
		{"ours", func() error {
			p, err := ours.Allow()
			if err != nil {
				return err
			}
			p.Record(nil)
			return nil
		}},
		{"sony-gobreaker", func() error {
			done, err := sony.Allow()
			if err != nil {
				return err
			}
			done(nil)
			return nil
		}},
		{"failsafe-go", func() error {
			if !fs.TryAcquirePermit() {
				return errRejected
			}
			fs.RecordSuccess()
			return nil
		}},
		{"eapache", func() error { return ea.Run(nop) }},
		{"hystrix-go", func() error {
			if !hx.AllowRequest() {
				return errRejected
			}
			start := time.Now()
			// ReportEvent drops the event, with an error, when hystrix's
			// metrics goroutine lags behind; that is hystrix's own
			// behaviour under load, not a rejection of the call.
			_ = hx.ReportEvent(hystrixSuccess, start, time.Since(start))
			return nil
		}},
	}
}

// bulkheadLimit is large enough that no bulkhead rejects under RunParallel.
const bulkheadLimit = 1024

// bulkheads returns each library's try-acquire and release on an
// uncontended bulkhead of bulkheadLimit slots. hystrix-go has no bulkhead
// apart from its command runner; eapache's semaphore has no try form: its
// Acquire arms a timer (1s here) even when a ticket is free, and that is
// what it costs.
func bulkheads() []op {
	ours := bulkhead.New(bulkheadLimit)
	xs := semaphore.NewWeighted(bulkheadLimit)
	fs := fsbulkhead.New[any](bulkheadLimit)
	ea := easemaphore.New(bulkheadLimit, time.Second)
	ch := make(chan struct{}, bulkheadLimit)
	return []op{
		{"ours", func() error {
			p, ok := ours.TryAcquire()
			if !ok {
				return errRejected
			}
			p.Release()
			return nil
		}},
		{"x-sync-semaphore", func() error {
			if !xs.TryAcquire(1) {
				return errRejected
			}
			xs.Release(1)
			return nil
		}},
		{"failsafe-go", func() error {
			if !fs.TryAcquirePermit() {
				return errRejected
			}
			fs.ReleasePermit()
			return nil
		}},
		{"eapache", func() error {
			if err := ea.Acquire(); err != nil {
				return err
			}
			ea.Release()
			return nil
		}},
		{"channel", func() error {
			select {
			case ch <- struct{}{}:
			default:
				return errRejected
			}
			<-ch
			return nil
		}},
	}
}

// blockingBulkheads returns the context-aware acquire and release of each
// library that has one, on an uncontended bulkhead.
func blockingBulkheads() []op {
	ctx := context.Background()
	ours := bulkhead.New(bulkheadLimit)
	xs := semaphore.NewWeighted(bulkheadLimit)
	fs := fsbulkhead.New[any](bulkheadLimit)
	return []op{
		{"ours", func() error {
			p, err := ours.Acquire(ctx)
			if err != nil {
				return err
			}
			p.Release()
			return nil
		}},
		{"x-sync-semaphore", func() error {
			if err := xs.Acquire(ctx, 1); err != nil {
				return err
			}
			xs.Release(1)
			return nil
		}},
		{"failsafe-go", func() error {
			if err := fs.AcquirePermit(ctx); err != nil {
				return err
			}
			fs.ReleasePermit()
			return nil
		}},
	}
}

// retries returns each library's retry around a function that succeeds at
// once, with the library's defaults (eapache has none: 2 retries, 100ms
// exponential, as the others' 3 attempts). sony/gobreaker and hystrix-go
// have no retry.
func retries() []op {
	ctx := context.Background()
	ok := func(context.Context) error { return nil }
	ours := retry.New(3)
	fs := failsafe.With[any](retrypolicy.NewWithDefaults[any]())
	ea := retrier.New(retrier.ExponentialBackoff(2, 100*time.Millisecond), nil)
	return []op{
		{"plain-call", func() error { return ok(ctx) }},
		{"ours", func() error { return ours.Do(ctx, ok) }},
		{"cenkalti-backoff", func() error {
			_, err := backoff.Retry(ctx, func() (struct{}, error) { return struct{}{}, ok(ctx) })
			return err
		}},
		{"failsafe-go", func() error { return fs.Run(func() error { return ok(ctx) }) }},
		{"eapache", func() error { return ea.RunCtx(ctx, ok) }},
	}
}

// serial runs each op in a sub-benchmark, one goroutine.
func serial(b *testing.B, ops []op) {
	for _, o := range ops {
		b.Run(o.lib, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := o.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// parallel runs each op in a sub-benchmark under RunParallel.
func parallel(b *testing.B, ops []op) {
	for _, o := range ops {
		b.Run(o.lib, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := o.run(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkBreakerAllowRecord measures a closed breaker's permit and the
// record of a success, one goroutine.
func BenchmarkBreakerAllowRecord(b *testing.B) { serial(b, breakers()) }

// BenchmarkBreakerAllowRecordParallel is BenchmarkBreakerAllowRecord under
// RunParallel: GOMAXPROCS goroutines on one breaker.
func BenchmarkBreakerAllowRecordParallel(b *testing.B) { parallel(b, breakers()) }

// BenchmarkBulkheadTryAcquireRelease measures a non-blocking acquire and
// the release of an uncontended bulkhead, one goroutine.
func BenchmarkBulkheadTryAcquireRelease(b *testing.B) { serial(b, bulkheads()) }

// BenchmarkBulkheadTryAcquireReleaseParallel is
// BenchmarkBulkheadTryAcquireRelease under RunParallel.
func BenchmarkBulkheadTryAcquireReleaseParallel(b *testing.B) { parallel(b, bulkheads()) }

// BenchmarkBulkheadAcquireRelease measures the context-aware acquire and
// the release of an uncontended bulkhead, one goroutine.
func BenchmarkBulkheadAcquireRelease(b *testing.B) { serial(b, blockingBulkheads()) }

// BenchmarkBulkheadAcquireReleaseParallel is BenchmarkBulkheadAcquireRelease
// under RunParallel.
func BenchmarkBulkheadAcquireReleaseParallel(b *testing.B) { parallel(b, blockingBulkheads()) }

// BenchmarkRetrySuccess measures a retry whose first attempt succeeds.
func BenchmarkRetrySuccess(b *testing.B) { serial(b, retries()) }

// TestOpsSucceed checks that every measured operation takes its success
// path, so that no benchmark measures a rejection: each runs many times in
// a row, as in a benchmark, without an error.
func TestOpsSucceed(t *testing.T) {
	sets := map[string][]op{
		"breaker": breakers(), "bulkhead": bulkheads(),
		"blocking-bulkhead": blockingBulkheads(), "retry": retries(),
	}
	for name, ops := range sets {
		for _, o := range ops {
			for i := range 1000 {
				if err := o.run(); err != nil {
					t.Fatalf("%s/%s: run %d: %v", name, o.lib, i, err)
				}
			}
		}
	}
}

// TestOursAllocatesNothing checks the zero-allocation goal of the issue for
// our breaker, bulkhead and retry success paths.
func TestOursAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	for name, ops := range map[string][]op{"breaker": breakers(), "bulkhead": bulkheads(), "retry": retries()} {
		for _, o := range ops {
			if o.lib != "ours" {
				continue
			}
			if n := testing.AllocsPerRun(1000, func() { _ = o.run() }); n != 0 {
				t.Errorf("%s: ours allocates %v per run, want 0", name, n)
			}
		}
	}
}

package micro

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// The key benchmarks measure how the cost of our full unary pipeline
// (retry with the default per-target budget, breaker and bulkhead, each per
// method) grows with the number of distinct (target, method) keys the
// client holds state for. The calls go through the in-process invoker
// fill, with no connection, so their keys are distinct methods of one
// target; BenchmarkKeysMemory makes its keys distinct targets as well, so
// that each key also holds a budget of its own.

// keysHeadroom is the room a key benchmark's client has beyond the keys it
// is filled with, so that nothing is evicted while it runs.
const keysHeadroom = 1 << 17

// keyMethod returns the method name of key i.
func keyMethod(i int) string { return "/bench.Keys/M" + strconv.Itoa(i) }

// keyMethods returns the method names of keys from..to-1.
func keyMethods(from, to int) []string {
	m := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		m = append(m, keyMethod(i))
	}
	return m
}

// keysClient returns our full pipeline with room for maxKeys keys.
func keysClient(tb testing.TB, maxKeys int) *interceptors.Client {
	c, err := interceptors.NewClient(interceptors.Config{
		MaxKeys: maxKeys,
		Default: interceptors.Policy{
			Retry:    &interceptors.RetryPolicy{},
			Breaker:  &interceptors.BreakerPolicy{},
			Bulkhead: &interceptors.BulkheadPolicy{Limit: 1 << 20},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// warmKeys makes one call of each method through c, so that c holds their
// state, and returns how long that took.
func warmKeys(tb testing.TB, c *interceptors.Client, methods []string) time.Duration {
	ctx := callerContext(tb)
	ic := c.UnaryClientInterceptor()
	req := &testingv1.UnaryRequest{}
	var reply testingv1.UnaryResponse
	start := time.Now()
	for _, m := range methods {
		if err := ic(ctx, m, req, &reply, nil, fill); err != nil {
			tb.Fatal(err)
		}
	}
	return time.Since(start)
}

// keyCounts are the numbers of keys the benchmarks compare.
var keyCounts = []int{1, 1_000, 100_000}

// BenchmarkKeys measures a call whose first attempt succeeds, spread over
// the keys the client already holds, in an order that jumps across them
// (a stride prime to the number of keys) so that consecutive calls do not
// find each other's state in the cache. Its ns/op at 10^3 and 10^5 keys
// compared with 1 key is what the state lookup costs as keys grow.
func BenchmarkKeys(b *testing.B) {
	const stride = 7919 // prime, so prime to every count in keyCounts
	for _, n := range keyCounts {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			c := keysClient(b, 100_000+keysHeadroom)
			methods := keyMethods(0, n)
			took := warmKeys(b, c, methods)
			b.Logf("warming %d keys took %v (%v per key)", n, took, took/time.Duration(n))
			ctx := callerContext(b)
			ic := c.UnaryClientInterceptor()
			req := &testingv1.UnaryRequest{}
			var reply testingv1.UnaryResponse
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := ic(ctx, methods[i], req, &reply, nil, fill); err != nil {
					b.Fatal(err)
				}
				if i += stride; i >= n {
					i %= n
				}
			}
		})
	}
}

// BenchmarkKeysFirstCall measures the first call of a new key when the
// client already holds n keys: the cost of building and caching the key's
// state must not grow with n. Every call is of a new key; so that the
// client keeps close to n keys while it runs, it is replaced by a freshly
// filled one (outside the timer) after every n/10 new keys, and at least
// every 100.
func BenchmarkKeysFirstCall(b *testing.B) {
	for _, n := range keyCounts[1:] {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			chunk := max(n/10, 100)
			filled := keyMethods(0, n)
			fresh := keyMethods(n, n+chunk)
			ctx := callerContext(b)
			req := &testingv1.UnaryRequest{}
			var reply testingv1.UnaryResponse
			var ic grpc.UnaryClientInterceptor
			next := chunk // no client yet: the first iteration fills one
			b.ReportAllocs()
			for b.Loop() {
				if next == chunk {
					b.StopTimer()
					c := keysClient(b, n+keysHeadroom)
					warmKeys(b, c, filled)
					ic, next = c.UnaryClientInterceptor(), 0
					runtime.GC() // not during the timed calls
					b.StartTimer()
				}
				if err := ic(ctx, fresh[next], req, &reply, nil, fill); err != nil {
					b.Fatal(err)
				}
				next++
			}
		})
	}
}

// BenchmarkKeysMemory reports the heap one key costs (B/key): its state
// with its own breaker and bulkhead, its retry policy, and the retry budget
// of its target, each key being a method of a target of its own. The
// figure is the growth of the live heap after a garbage collection,
// divided by the keys added.
func BenchmarkKeysMemory(b *testing.B) {
	const n = 100_000
	b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
		targets := make([]string, n)
		for i := range targets {
			targets[i] = "dns:///backend-" + strconv.Itoa(i) + ".example:443"
		}
		const method = "/bench.Keys/Get"
		var perKey float64
		for b.Loop() {
			b.StopTimer()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b.StartTimer()
			c := keysClient(b, n+keysHeadroom)
			for _, t := range targets {
				if c.Breaker(t, method) == nil {
					b.Fatal("no breaker")
				}
			}
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(c)
			perKey = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
			b.StartTimer()
		}
		b.ReportMetric(perKey, "B/key")
	})
}

// TestKeysClientHoldsKeys checks that the key benchmarks measure what they
// say: every warmed key has state of its own, with its own breaker.
func TestKeysClientHoldsKeys(t *testing.T) {
	const n = 1000
	c := keysClient(t, n+keysHeadroom)
	methods := keyMethods(0, n)
	warmKeys(t, c, methods)
	seen := make(map[any]bool, n)
	for _, m := range methods {
		br := c.Breaker("", m)
		if br == nil || seen[br] {
			t.Fatalf("%s: breaker %p, want one of its own", m, br)
		}
		seen[br] = true
	}
}

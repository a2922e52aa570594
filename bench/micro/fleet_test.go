package micro

import (
	"context"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/engineeringlabs/grpc-resilience/internal/redistest"
	"github.com/engineeringlabs/grpc-resilience/redisfleet"
)

// Fleet rate limits on a real redis-server on 127.0.0.1 (started per
// benchmark; skipped without redis-server):
//
//   - BenchmarkFleetClient runs one GCRA script (the shape of redisfleet's:
//     TIME, GET, SET PX) by its SHA through rueidis and through go-redis
//     v9, serially and from 64 goroutines, to choose the client:
//     rueidis pipelines concurrent calls on one connection by itself,
//     go-redis takes a pooled connection per call.
//   - BenchmarkFleetLimiter decides one permit per op: redisfleet per call
//     (one round trip), redisfleet with leases (LeaseWindow 50ms), and
//     go-redis/redis_rate v10 (GCRA, one round trip per call), with a
//     quota far above the demand (every call is granted: the cost of the
//     decision itself), serially and from 64 goroutines. It reports the
//     p50 and p99 latency of a decision (p50-ns, p99-ns).
//   - BenchmarkFleetAccuracy asks far more than a quota of 2000/s from 64
//     goroutines for a second per run and reports admitted/(rate×elapsed
//     + burst) as admit-ratio: 1 is exact, below 1 under-admits.

const benchGCRA = `
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call("GET", KEYS[1]) or now) or now
if tat < now then tat = now end
local newtat = tat + interval
if newtat - now > limit then
  return {0, math.ceil(newtat - limit - now)}
end
redis.call("SET", KEYS[1], string.format("%.17g", newtat), "PX", string.format("%.0f", math.max(1, math.ceil((newtat - now) / 1000))))
return {1, 0}
`

func benchRueidis(b *testing.B, srv *redistest.Server) rueidis.Client {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

func benchGoRedis(b *testing.B, srv *redistest.Server) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), PoolSize: 64, MinIdleConns: 64})
	b.Cleanup(func() { c.Close() })
	return c
}

// runDecisions runs op b.N times, serially or from 64 goroutines, and
// reports the p50 and p99 latency of an op.
func runDecisions(b *testing.B, parallel bool, op func(ctx context.Context) bool) {
	ctx := context.Background()
	const maxSamples = 1 << 20
	samples := make([]int64, maxSamples)
	var next atomic.Int64
	var refused atomic.Int64
	one := func() {
		start := time.Now()
		ok := op(ctx)
		d := time.Since(start)
		if i := next.Add(1) - 1; i < maxSamples {
			samples[i] = int64(d)
		}
		if !ok {
			refused.Add(1)
		}
	}
	for range 100 { // connect, load the script
		op(ctx)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				one()
			}
		})
	} else {
		for range b.N {
			one()
		}
	}
	b.StopTimer()
	n := min(int(next.Load()), maxSamples)
	s := samples[:n]
	slices.Sort(s)
	if n > 0 {
		b.ReportMetric(float64(s[n/2]), "p50-ns")
		b.ReportMetric(float64(s[min(n-1, n*99/100)]), "p99-ns")
	}
	if r := refused.Load(); r > 0 {
		b.Fatalf("%d of %d decisions refused under a quota above the demand", r, b.N)
	}
}

func BenchmarkFleetClient(b *testing.B) {
	args := []string{"0.001", "1000000"} // 10^9/s, a burst of 10^9: always granted
	for _, mode := range []string{"serial", "parallel64"} {
		b.Run("rueidis/"+mode, func(b *testing.B) {
			srv := redistest.Start(b)
			c := benchRueidis(b, srv)
			script := rueidis.NewLuaScript(benchGCRA)
			runDecisions(b, mode != "serial", func(ctx context.Context) bool {
				v, err := script.Exec(ctx, c, []string{"k"}, args).AsIntSlice()
				return err == nil && v[0] == 1
			})
		})
		b.Run("go-redis/"+mode, func(b *testing.B) {
			srv := redistest.Start(b)
			c := benchGoRedis(b, srv)
			script := goredis.NewScript(benchGCRA)
			runDecisions(b, mode != "serial", func(ctx context.Context) bool {
				v, err := script.Run(ctx, c, []string{"k"}, args[0], args[1]).Int64Slice()
				return err == nil && v[0] == 1
			})
		})
	}
}

func BenchmarkFleetLimiter(b *testing.B) {
	const rate = 1e9
	for _, mode := range []string{"serial", "parallel64"} {
		for _, lease := range []time.Duration{0, 50 * time.Millisecond} {
			name := "redisfleet-per-call/"
			if lease > 0 {
				name = "redisfleet-lease/"
			}
			b.Run(name+mode, func(b *testing.B) {
				srv := redistest.Start(b)
				l, err := redisfleet.NewLimiter(redisfleet.LimiterConfig{
					Client:      benchRueidis(b, srv),
					Timeout:     time.Second, // measure Redis, not the fallback
					LeaseWindow: lease,
				})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				q := l.Quota("bench", rate, 1<<30)
				runDecisions(b, mode != "serial", func(ctx context.Context) bool {
					d, _ := q.Take(ctx, "k", 1)
					return d.Allowed
				})
				if m := l.Metrics(); m.Local > 0 {
					b.Fatalf("%d local decisions: Redis did not keep up within the timeout", m.Local)
				}
			})
		}
		b.Run("redis_rate/"+mode, func(b *testing.B) {
			srv := redistest.Start(b)
			rl := redis_rate.NewLimiter(benchGoRedis(b, srv))
			limit := redis_rate.Limit{Rate: int(rate), Burst: 1 << 30, Period: time.Second}
			runDecisions(b, mode != "serial", func(ctx context.Context) bool {
				r, err := rl.Allow(ctx, "k", limit)
				return err == nil && r.Allowed > 0
			})
		})
	}
}

func BenchmarkFleetAccuracy(b *testing.B) {
	const rate, burst = 2000, 100
	type limiter func(ctx context.Context) bool
	setups := map[string]func(b *testing.B, srv *redistest.Server) limiter{
		"redisfleet-per-call": func(b *testing.B, srv *redistest.Server) limiter {
			return fleetLimiter(b, srv, 0, rate, burst)
		},
		"redisfleet-lease": func(b *testing.B, srv *redistest.Server) limiter {
			return fleetLimiter(b, srv, 50*time.Millisecond, rate, burst)
		},
		"redis_rate": func(b *testing.B, srv *redistest.Server) limiter {
			rl := redis_rate.NewLimiter(benchGoRedis(b, srv))
			limit := redis_rate.Limit{Rate: rate, Burst: burst, Period: time.Second}
			return func(ctx context.Context) bool {
				r, err := rl.Allow(ctx, "acc", limit)
				return err == nil && r.Allowed > 0
			}
		},
	}
	for _, name := range []string{"redisfleet-per-call", "redisfleet-lease", "redis_rate"} {
		b.Run(name, func(b *testing.B) {
			srv := redistest.Start(b)
			take := setups[name](b, srv)
			var ratios, decisions float64
			for range b.N {
				// A fresh key per run, full at its start.
				var admitted, total atomic.Int64
				start := time.Now()
				stop := start.Add(time.Second)
				done := make(chan struct{})
				for range 64 {
					go func() {
						defer func() { done <- struct{}{} }()
						for i := 0; i < 10_000_000 && time.Now().Before(stop); i++ {
							if take(context.Background()) {
								admitted.Add(1)
							}
							total.Add(1)
						}
					}()
				}
				for range 64 {
					<-done
				}
				el := time.Since(start).Seconds()
				ratios += float64(admitted.Load()) / (rate*el + burst)
				decisions += float64(total.Load()) / el
				flushBench(b, srv)
			}
			b.ReportMetric(ratios/float64(b.N), "admit-ratio")
			b.ReportMetric(decisions/float64(b.N), "decisions/s")
		})
	}
}

func fleetLimiter(b *testing.B, srv *redistest.Server, lease time.Duration, rate float64, burst int) func(ctx context.Context) bool {
	l, err := redisfleet.NewLimiter(redisfleet.LimiterConfig{
		Client:      benchRueidis(b, srv),
		Timeout:     time.Second,
		LeaseWindow: lease,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	q := l.Quota("acc", rate, burst)
	return func(ctx context.Context) bool {
		d, _ := q.Take(ctx, "acc", 1)
		return d.Allowed
	}
}

// flushBench empties the server between runs, so that each starts full.
func flushBench(b *testing.B, srv *redistest.Server) {
	if r, err := srv.Do("FLUSHALL"); err != nil || r != "+OK" {
		b.Fatalf("FLUSHALL: %q %v", r, err)
	}
}

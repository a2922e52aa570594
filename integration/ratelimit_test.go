package integration

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// Rate-limit test parameters. The server grants each caller quotaRPS calls
// per second with a burst of quotaBurst: 100ms of arrival jitter at that
// rate, which the pacing client's attempts may show on a loaded machine
// without being refused. Each client runs quotaWorkers callers for
// quotaWarmUp and then quotaWindow, over which the figures are measured;
// every loop is also bounded in count.
const (
	quotaRPS     = 200
	quotaBurst   = 20
	quotaWorkers = 16
	quotaWarmUp  = 500 * time.Millisecond
	quotaWindow  = 2500 * time.Millisecond
	quotaHeader  = "x-caller"
	// quotaMaxCalls bounds each worker's calls: far more than a paced
	// worker makes, and enough for a plain one to keep the server busy.
	quotaMaxCalls = 200_000
)

// quotaCounts counts, per caller, the attempts that reached the server
// (before its rate limit) and those its rate limit admitted.
type quotaCounts struct {
	attempts, admitted sync.Map // caller -> *atomic.Int64
}

func (q *quotaCounts) counter(m *sync.Map, ctx context.Context) *atomic.Int64 {
	caller := ""
	if v := metadata.ValueFromIncomingContext(ctx, quotaHeader); len(v) > 0 {
		caller = v[0]
	}
	c, _ := m.LoadOrStore(caller, new(atomic.Int64))
	return c.(*atomic.Int64)
}

func (q *quotaCounts) get(m *sync.Map, caller string) int64 {
	if c, ok := m.Load(caller); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// outer counts an attempt; it runs before the server's pipeline.
func (q *quotaCounts) outer(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	q.counter(&q.attempts, ctx).Add(1)
	return handler(ctx, req)
}

// inner counts an admitted call; it runs after the server's pipeline.
func (q *quotaCounts) inner(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	q.counter(&q.admitted, ctx).Add(1)
	return handler(ctx, req)
}

// quotaRun is what one client achieved over the measurement window.
type quotaRun struct {
	admitted, attempts int64
	window             time.Duration
	failed             int64 // calls that failed, over the whole run
}

func (r quotaRun) rate() float64 { return float64(r.admitted) / r.window.Seconds() }

func (r quotaRun) attemptsPerAdmitted() float64 {
	if r.admitted == 0 {
		return 0
	}
	return float64(r.attempts) / float64(r.admitted)
}

// runQuota runs quotaWorkers callers of call as caller, each in a loop
// bounded by quotaMaxCalls and by the run's end, and returns the server's
// counts over the window after the warm-up.
func runQuota(t *testing.T, counts *quotaCounts, caller string, call func(ctx context.Context) error) quotaRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), quotaWarmUp+quotaWindow+10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, quotaHeader, caller)
	var (
		wg     sync.WaitGroup
		failed atomic.Int64
		stop   atomic.Bool
	)
	for range quotaWorkers {
		wg.Go(func() {
			for range quotaMaxCalls {
				if stop.Load() || ctx.Err() != nil {
					return
				}
				if err := call(ctx); err != nil && !stop.Load() {
					failed.Add(1)
				}
			}
		})
	}
	// The window is measured, not waited for a state: the server's
	// counters are read at its two ends.
	time.Sleep(quotaWarmUp)
	start := time.Now()
	adm0, att0 := counts.get(&counts.admitted, caller), counts.get(&counts.attempts, caller)
	time.Sleep(quotaWindow)
	adm1, att1 := counts.get(&counts.admitted, caller), counts.get(&counts.attempts, caller)
	window := time.Since(start)
	stop.Store(true)
	cancel()
	wg.Wait()
	return quotaRun{admitted: adm1 - adm0, attempts: att1 - att0, window: window, failed: failed.Load()}
}

// TestRateLimitQuotaOverLoopback has a server grant each caller quotaRPS
// calls per second, over loopback TCP, and two clients try to get as much
// through as they can with quotaWorkers concurrent callers each:
//
//   - a client of this library that paces itself at the quota
//     (RateLimitPolicy with Wait) and retries RESOURCE_EXHAUSTED as the
//     server's RetryInfo says gets the quota through, within 5%, with at
//     most 1.05 attempts per admitted call: it wastes almost nothing of
//     the server's or the network's capacity;
//   - a plain gRPC client, calling again as soon as a call fails, gets the
//     same quota but makes many attempts per admitted call; its figures
//     are logged for comparison.
func TestRateLimitQuotaOverLoopback(t *testing.T) {
	leakCheck(t)
	counts := &quotaCounts{}
	rs, err := server.New(server.Config{RateLimit: server.RateLimitConfig{
		Rate: quotaRPS, Burst: quotaBurst, PartitionBy: server.PartitionByHeader, Header: quotaHeader,
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := testservice.StartTB(t, testservice.WithTCP(""), testservice.WithServerOptions(
		grpc.ChainUnaryInterceptor(counts.outer, rs.UnaryServerInterceptor(), counts.inner)))

	client, err := interceptors.NewClient(interceptors.Config{Default: interceptors.Policy{
		// Half the server's burst: after a scheduling stall the client
		// catches up on the permits it missed, which the server, idle as
		// long, admits.
		RateLimit: &interceptors.RateLimitPolicy{Rate: quotaRPS, Burst: quotaBurst / 2, Wait: true},
		Retry:     &interceptors.RetryPolicy{MaxAttempts: 5, Budget: interceptors.NoBudget},
	}})
	if err != nil {
		t.Fatal(err)
	}
	paced := testingv1.NewTestServiceClient(srv.DialTB(t, grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(client.UnaryClientInterceptor())))
	plain := testingv1.NewTestServiceClient(srv.DialTB(t))

	a := runQuota(t, counts, "paced", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := paced.Query(ctx, &testingv1.QueryRequest{})
		return err
	})
	b := runQuota(t, counts, "plain", func(ctx context.Context) error {
		_, err := plain.Query(ctx, &testingv1.QueryRequest{})
		if status.Code(err) == codes.ResourceExhausted {
			return nil // refused: call again at once, as a plain loop does
		}
		return err
	})
	t.Logf("paced client: %.1f admitted calls/s (quota %d/s), %.3f attempts per admitted call, %d of its calls failed",
		a.rate(), quotaRPS, a.attemptsPerAdmitted(), a.failed)
	t.Logf("plain client: %.1f admitted calls/s, %.1f attempts per admitted call (%d attempts, %d admitted in %v)",
		b.rate(), b.attemptsPerAdmitted(), b.attempts, b.admitted, b.window.Round(time.Millisecond))

	if r := a.rate(); r < 0.95*quotaRPS || r > 1.05*quotaRPS {
		t.Errorf("paced client got %.1f calls/s through, want %d/s ±5%%", r, quotaRPS)
	}
	if x := a.attemptsPerAdmitted(); x > 1.05 || x < 1 {
		t.Errorf("paced client made %.3f attempts per admitted call, want at most 1.05", x)
	}
	if r := b.rate(); r > 1.05*quotaRPS+float64(quotaBurst)/b.window.Seconds() {
		t.Errorf("plain client got %.1f calls/s through, more than the quota of %d/s", r, quotaRPS)
	}
	if b.attemptsPerAdmitted() <= a.attemptsPerAdmitted() {
		t.Errorf("plain client made %.2f attempts per admitted call, want more than the paced client's %.3f",
			b.attemptsPerAdmitted(), a.attemptsPerAdmitted())
	}
	if b.failed != 0 {
		t.Errorf("%d plain calls failed with another code than RESOURCE_EXHAUSTED", b.failed)
	}
}

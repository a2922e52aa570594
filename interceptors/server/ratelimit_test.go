package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

const (
	methodUnary        = "/grpcresilience.testing.v1.TestService/Unary"
	methodQuery        = "/grpcresilience.testing.v1.TestService/Query"
	methodServerStream = "/grpcresilience.testing.v1.TestService/ServerStream"
	testService        = "grpcresilience.testing.v1.TestService"
)

// withKey returns a context whose calls carry x-api-key: key.
func withKey(key string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "x-api-key", key)
}

// limitedDetails returns the RetryInfo delay (-1 when absent) and the
// QuotaFailure of a rate-limited call's error, failing the test when err is
// not RESOURCE_EXHAUSTED.
func limitedDetails(t *testing.T, err error) (time.Duration, *errdetails.QuotaFailure) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		t.Fatalf("err %v, want RESOURCE_EXHAUSTED", err)
	}
	delay := time.Duration(-1)
	var qf *errdetails.QuotaFailure
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			delay = d.GetRetryDelay().AsDuration()
		case *errdetails.QuotaFailure:
			qf = d
		}
	}
	return delay, qf
}

// A call over its quota gets RESOURCE_EXHAUSTED with a RetryInfo whose
// delay is exactly the time until the caller's next permit, the same delay
// rounded up to whole milliseconds in the pushback trailer, and a
// QuotaFailure that names the quota but not the caller's key. With Rate
// 10 and Burst 1, GCRA admits the first call at t0 and moves the key's
// theoretical arrival time to t0+100ms; a second call at t1 is refused with
// a wait of exactly t0+100ms-t1, which is in (0, 100ms] and at least
// 100ms minus the time the two calls took. On the server the rejection
// matches resilience.ErrRateLimited, carries the same wait, and the
// observer hears of it under the quota's class, never under the key.
func TestRateLimitRetryInfoIsTheExactWait(t *testing.T) {
	const secret = "s3cr3t-api-key"
	rec := &recorder{}
	r, p := startPipeline(t, server.Config{
		RateLimit: server.RateLimitConfig{Rate: 10, Burst: 1, PartitionBy: server.PartitionByHeader, Header: "X-Api-Key"},
		Observer:  rec.observer(),
	}, outer{})
	// A loaded machine may take more than 100ms between two calls, and
	// then the second one is rightly admitted: try again with a new key,
	// a bounded number of times.
	var (
		err     error
		elapsed time.Duration
		trailer metadata.MD
		key     string
		passed  int // second calls admitted because 100ms had passed
	)
	for try := range 10 {
		key = secret + strconv.Itoa(try)
		start := time.Now()
		if _, err := r.client.Unary(withKey(key), unaryReq("first")); err != nil {
			t.Fatalf("first call: %v", err)
		}
		if srvErr := r.errs.next(t); srvErr != nil {
			t.Fatalf("first call on the server: %v", srvErr)
		}
		trailer = nil
		_, err = r.client.Unary(withKey(key), unaryReq("second"), grpc.Trailer(&trailer))
		elapsed = time.Since(start)
		if err != nil {
			break
		}
		passed++
		_ = r.errs.next(t)
	}
	if err == nil {
		t.Fatal("the second call within 100ms was never limited")
	}
	delay, qf := limitedDetails(t, err)
	const interval = 100 * time.Millisecond
	if delay <= 0 || delay > interval || delay < interval-elapsed {
		t.Errorf("RetryInfo delay %v, want in [%v, %v] (the calls took %v)", delay, interval-elapsed, interval, elapsed)
	}
	wantMillis := int64((delay + time.Millisecond - 1) / time.Millisecond)
	if got := trailer.Get(classify.PushbackTrailer); len(got) != 1 || got[0] != strconv.FormatInt(wantMillis, 10) {
		t.Errorf("pushback trailer %q, want [%d] (RetryInfo %v rounded up)", got, wantMillis, delay)
	}
	if qf == nil || len(qf.GetViolations()) != 1 {
		t.Fatalf("QuotaFailure %v, want one violation", qf)
	}
	v := qf.GetViolations()[0]
	if v.GetSubject() != "header:x-api-key" || v.GetDescription() != "10 calls per second per x-api-key" {
		t.Errorf("violation %q / %q, want header:x-api-key / 10 calls per second per x-api-key", v.GetSubject(), v.GetDescription())
	}
	if s := fmt.Sprint(err, qf); strings.Contains(s, secret) {
		t.Errorf("the rejection names the caller's key: %s", s)
	}

	srvErr := r.errs.next(t)
	var rle *resilience.RateLimitedError
	if !errors.Is(srvErr, resilience.ErrRateLimited) || !errors.As(srvErr, &rle) || rle.RetryAfter != delay {
		t.Errorf("server error %v (%+v), want a RateLimitedError with RetryAfter %v", srvErr, rle, delay)
	}
	if got := r.srv.Service().Attempts("second"); got != passed {
		t.Errorf("the handler ran %d second calls, want the %d admitted ones", got, passed)
	}
	e, ok := rec.first(server.EventRateLimited)
	if !ok || e.Key != "header:x-api-key" || e.Delay != delay || e.FullMethod != methodUnary || e.Code != codes.ResourceExhausted {
		t.Errorf("event %+v, %v; want EventRateLimited for header:x-api-key with Delay %v", e, ok, delay)
	}
	m := p.RateLimit().Metrics()
	if m.Limited != 1 || m.Admitted == 0 {
		t.Errorf("metrics %+v, want 1 limited", m)
	}
}

// Each caller key has its own quota: one caller using up its burst does
// not limit another, and calls without the header share one quota of
// their own.
func TestRateLimitIsolatesCallers(t *testing.T) {
	r, p := startPipeline(t, server.Config{
		RateLimit: server.RateLimitConfig{Rate: 0.001, Burst: 2, PartitionBy: server.PartitionByHeader, Header: "x-api-key"},
	}, outer{})
	calls := func(ctx context.Context, n int) (ok int) {
		for range n {
			if _, err := r.client.Unary(ctx, unaryReq("c")); err == nil {
				ok++
			} else if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("call: %v", err)
			}
		}
		return ok
	}
	if got := calls(withKey("alice"), 5); got != 2 {
		t.Errorf("alice: %d of 5 admitted, want her burst of 2", got)
	}
	if got := calls(withKey("bob"), 5); got != 2 {
		t.Errorf("bob after alice: %d of 5 admitted, want his own burst of 2", got)
	}
	if got := calls(context.Background(), 3); got != 2 {
		t.Errorf("without the header: %d of 3 admitted, want a shared burst of 2", got)
	}
	if m := p.RateLimit().Metrics(); m.Keys != 3 || m.Admitted != 6 || m.Limited != 7 {
		t.Errorf("metrics %+v, want 3 keys, 6 admitted, 7 limited", m)
	}
}

// Methods overrides the default quota per method and per service; a
// method entry wins over its service's, a zero RateQuota exempts a method,
// each method has its own quota under a service entry, and the
// QuotaFailure names the method's quota.
func TestRateLimitMethodOverrides(t *testing.T) {
	r, _ := startPipeline(t, server.Config{
		RateLimit: server.RateLimitConfig{
			Rate: 0.001, Burst: 1, PartitionBy: server.PartitionByHeader, Header: "x-api-key",
			Methods: map[string]server.RateQuota{
				testService:        {Rate: 0.001, Burst: 2},
				methodQuery:        {Rate: 0.002, Burst: 3},
				methodServerStream: {},
			},
		},
	}, outer{})
	ctx := withKey("carol")
	count := func(n int, call func() error) (ok int, last error) {
		for range n {
			err := call()
			if err == nil {
				ok++
				continue
			}
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("call: %v", err)
			}
			last = err
		}
		return ok, last
	}
	subject := func(err error) (string, string) {
		_, qf := limitedDetails(t, err)
		if len(qf.GetViolations()) != 1 {
			t.Fatalf("QuotaFailure %v, want one violation", qf)
		}
		return qf.GetViolations()[0].GetSubject(), qf.GetViolations()[0].GetDescription()
	}

	ok, last := count(4, func() error { _, err := r.client.Unary(ctx, unaryReq("u")); return err })
	if ok != 2 {
		t.Errorf("Unary: %d of 4 admitted, want the service's burst of 2", ok)
	}
	if s, d := subject(last); s != "method:"+methodUnary+",header:x-api-key" || d != "0.001 calls per second per x-api-key" {
		t.Errorf("Unary subject %q, description %q", s, d)
	}
	ok, _ = count(4, func() error {
		_, err := r.client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{})
		return err
	})
	if ok != 2 {
		t.Errorf("IdempotentUnary after Unary: %d of 4 admitted, want its own burst of 2 under the service entry", ok)
	}
	ok, last = count(5, func() error { _, err := r.client.Query(ctx, &testingv1.QueryRequest{}); return err })
	if ok != 3 {
		t.Errorf("Query: %d of 5 admitted, want its method entry's burst of 3", ok)
	}
	if s, d := subject(last); s != "method:"+methodQuery+",header:x-api-key" || d != "0.002 calls per second per x-api-key" {
		t.Errorf("Query subject %q, description %q", s, d)
	}
	ok, _ = count(5, func() error {
		s, err := r.client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{StreamMessages: 1}})
		if err != nil {
			return err
		}
		for err == nil {
			_, err = s.Recv()
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	})
	if ok != 5 {
		t.Errorf("ServerStream, exempt by a zero RateQuota: %d of 5 admitted, want all", ok)
	}
}

// Streams are limited as unary calls are, with the pushback in the
// stream's trailer; health checks are never limited, even under a quota
// that admits one call in a thousand seconds.
func TestRateLimitStreamsAndHealthExempt(t *testing.T) {
	r, _ := startPipeline(t, server.Config{RateLimit: server.RateLimitConfig{Rate: 0.001, Burst: 1}}, outer{})
	hc := healthpb.NewHealthClient(r.conn)
	for i := range 20 {
		if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("health check %d: %v", i, err)
		}
	}
	recv := func() (metadata.MD, error) {
		s, err := r.client.ServerStream(context.Background(), &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{StreamMessages: 1}})
		if err != nil {
			return nil, err
		}
		for err == nil {
			_, err = s.Recv()
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return s.Trailer(), err
	}
	if _, err := recv(); err != nil {
		t.Fatalf("first stream: %v", err)
	}
	tr, err := recv()
	delay, qf := limitedDetails(t, err)
	if delay <= 0 || delay > 1000*time.Second {
		t.Errorf("RetryInfo delay %v, want in (0, 1000s]", delay)
	}
	if v := qf.GetViolations(); len(v) != 1 || v[0].GetSubject() != "all" || v[0].GetDescription() != "0.001 calls per second" {
		t.Errorf("QuotaFailure %v, want subject all", qf)
	}
	if got := tr.Get(classify.PushbackTrailer); len(got) != 1 || got[0] != strconv.FormatInt(int64((delay+time.Millisecond-1)/time.Millisecond), 10) {
		t.Errorf("stream trailer %q, want the RetryInfo delay %v in ms", got, delay)
	}
	if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health check with the quota used up: %v", err)
	}
}

// NoPushback sends the QuotaFailure only: no RetryInfo, no trailer.
func TestRateLimitNoPushback(t *testing.T) {
	r, _ := startPipeline(t, server.Config{RateLimit: server.RateLimitConfig{Rate: 0.001, Burst: 1, PartitionBy: server.PartitionByMethod, NoPushback: true}}, outer{})
	if _, err := r.client.Unary(context.Background(), unaryReq("a")); err != nil {
		t.Fatal(err)
	}
	var tr metadata.MD
	_, err := r.client.Unary(context.Background(), unaryReq("b"), grpc.Trailer(&tr))
	delay, qf := limitedDetails(t, err)
	if delay != -1 || len(tr.Get(classify.PushbackTrailer)) != 0 {
		t.Errorf("RetryInfo %v, trailer %v; want neither", delay, tr)
	}
	if v := qf.GetViolations(); len(v) != 1 || v[0].GetSubject() != "method:"+methodUnary || v[0].GetDescription() != "0.001 calls per second per method" {
		t.Errorf("QuotaFailure %v, want the method's quota", qf)
	}
	if _, err := r.client.Query(context.Background(), &testingv1.QueryRequest{}); err != nil {
		t.Errorf("another method: %v, want its own quota", err)
	}
}

// PartitionByPeer keys the rate limit and the bulkhead by the peer's IP
// address, without the port: two connections from 127.0.0.1 share it.
func TestPartitionByPeer(t *testing.T) {
	r, p := startPipeline(t, server.Config{
		RateLimit: server.RateLimitConfig{Rate: 0.001, Burst: 1, PartitionBy: server.PartitionByPeer},
		Bulkhead:  server.BulkheadConfig{Limit: 4, PartitionBy: server.PartitionByPeer},
	}, outer{})
	var pr peer.Peer
	if _, err := r.client.Unary(context.Background(), unaryReq("a"), grpc.Peer(&pr)); err != nil {
		t.Fatal(err)
	}
	// A second connection: another port, the same address.
	conn2 := r.srv.DialTB(t)
	_, err := testingv1.NewTestServiceClient(conn2).Unary(context.Background(), unaryReq("b"))
	if _, qf := limitedDetails(t, err); len(qf.GetViolations()) != 1 || qf.GetViolations()[0].GetSubject() != "peer" {
		t.Errorf("QuotaFailure %v, want subject peer", qf)
	}
	var keys []string
	p.Bulkhead().Partitions().Range(func(key string, _ *bulkhead.Bulkhead) bool {
		keys = append(keys, key)
		return true
	})
	if host, _, _ := net.SplitHostPort(pr.Addr.String()); fmt.Sprint(keys) != "["+host+"]" || host != "127.0.0.1" {
		t.Errorf("bulkhead partitions %v, want [127.0.0.1] (server at %v)", keys, pr.Addr)
	}
}

// The number of caller keys a quota keeps never exceeds MaxPartitions,
// whatever the number of distinct keys callers send: each new key beyond
// the cap either takes the place of an idle key or is decided by the
// overflow limiter, and the observer hears of each. The heap grows by
// less than maxHeapGrowth (1 MiB): the kept keys take about
// maxParts × 150 B, while keeping every key would take about
// distinctKeys × 110 B (11 MB, 2.2 MB under -race).
func TestRateLimitKeysBounded(t *testing.T) {
	const maxParts, maxHeapGrowth = 100, 1 << 20
	var evicted, overflowed atomic.Int64
	p, err := server.New(server.Config{
		RateLimit: server.RateLimitConfig{Rate: 1000, Burst: 1, PartitionBy: server.PartitionByHeader, Header: "x-api-key", MaxPartitions: maxParts},
		Observer: server.Observer{OnEvent: func(_ context.Context, e server.Event) {
			switch e.Kind {
			case server.EventRateLimitEvicted:
				evicted.Add(1)
			case server.EventRateLimitOverflow:
				overflowed.Add(1)
			}
			if e.Key != "header:x-api-key" {
				panic("event key " + e.Key)
			}
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The calls end in an interceptor after the pipeline, not in the test
	// service, which keeps a record of every call it handles.
	answer := func(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
		return &testingv1.QueryResponse{}, nil
	}
	srv := testservice.StartTB(t, testservice.WithTCP(""),
		testservice.WithServerOptions(grpc.ChainUnaryInterceptor(p.UnaryServerInterceptor(), answer)))
	r := struct{ client testingv1.TestServiceClient }{testingv1.NewTestServiceClient(srv.DialTB(t))}
	if _, err := r.client.Query(withKey("warm-up"), &testingv1.QueryRequest{}); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	const keys, workers = distinctKeys, 16
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= keys {
					return
				}
				_, err := r.client.Query(withKey("caller-"+strconv.FormatInt(i, 10)), &testingv1.QueryRequest{})
				if err != nil && status.Code(err) != codes.ResourceExhausted {
					t.Errorf("call %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	runtime.GC()
	runtime.ReadMemStats(&after)

	m := p.RateLimit().Metrics()
	if m.Keys != maxParts {
		t.Errorf("keys kept = %d, want the cap %d", m.Keys, maxParts)
	}
	// The warm-up key and the distinct keys: every one beyond the cap
	// evicted an idle key or went to the overflow limiter.
	if m.Evicted+m.Overflowed != keys+1-maxParts {
		t.Errorf("evicted %d + overflowed %d, want %d", m.Evicted, m.Overflowed, keys+1-maxParts)
	}
	if ev, ov := evicted.Load(), overflowed.Load(); uint64(ev) != m.Evicted || uint64(ov) != m.Overflowed {
		t.Errorf("events: %d evicted, %d overflowed; metrics %+v", ev, ov, m)
	}
	if m.Admitted+m.Limited != keys+1 {
		t.Errorf("decisions %d, want %d", m.Admitted+m.Limited, keys+1)
	}
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d keys: %+v, heap growth %d B", keys, m, growth)
	if growth > maxHeapGrowth {
		t.Errorf("heap grew by %d B after %d distinct keys, want at most %d", growth, keys, maxHeapGrowth)
	}
}

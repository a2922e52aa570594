package server_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// In-flight work never exceeds the limit: first with the bulkhead held full
// by blocked calls (every further call is shed), then under a burst of many
// concurrent short calls.
func TestBulkheadBoundsInFlight(t *testing.T) {
	const limit = 4
	rec := &recorder{}
	r, p := startPipeline(t, server.Config{Bulkhead: server.BulkheadConfig{Limit: limit}, Observer: rec.observer()}, outer{})

	release := r.block(t, "blocker", limit)
	var shed atomic.Int64
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			var err error
			if i%2 == 0 {
				_, err = r.client.Unary(context.Background(), unaryReq("extra"))
			} else {
				var s grpc.ServerStreamingClient[testingv1.ServerStreamResponse]
				s, err = r.client.ServerStream(context.Background(), &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "extra", StreamMessages: 1}})
				if err == nil {
					for err == nil {
						_, err = s.Recv()
					}
				}
			}
			if status.Code(err) == codes.ResourceExhausted {
				shed.Add(1)
			}
		})
	}
	wg.Wait()
	if got := shed.Load(); got != 24 {
		t.Errorf("with the bulkhead full, %d of 24 calls were shed, want all", got)
	}
	if got := r.srv.Service().Attempts("extra"); got != 0 {
		t.Errorf("the handler ran %d shed calls, want 0", got)
	}
	if got := rec.count(server.EventShed); got != 24 {
		t.Errorf("observer saw %d shed events, want 24", got)
	}
	release()

	// A burst of 64 concurrent calls of 5ms each.
	var ok, rejected atomic.Int64
	for range 64 {
		wg.Go(func() {
			_, err := r.client.Unary(context.Background(), &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "burst", Sleep: durationpb.New(5 * time.Millisecond)}})
			switch status.Code(err) {
			case codes.OK:
				ok.Add(1)
			case codes.ResourceExhausted:
				rejected.Add(1)
			default:
				t.Errorf("burst call: %v", err)
			}
		})
	}
	wg.Wait()
	if got := r.gauge.high.Load(); got > limit || got < 1 {
		t.Errorf("high-water mark of calls in the handler = %d, want 1..%d", got, limit)
	}
	if ok.Load() == 0 || ok.Load()+rejected.Load() != 64 {
		t.Errorf("burst: %d ok, %d shed, want some ok and 64 in all", ok.Load(), rejected.Load())
	}
	m := p.Bulkhead().Partitions().Overflow().Metrics()
	if m.InFlight != 0 || m.Limit != limit {
		t.Errorf("after the calls, metrics = %+v, want nothing in flight and limit %d", m, limit)
	}
}

// A shed call carries RESOURCE_EXHAUSTED with RetryInfo and the pushback
// trailer on the client; on the server, the error matches ErrBulkheadFull.
func TestShedCallCarriesPushback(t *testing.T) {
	const delay = 250 * time.Millisecond
	rec := &recorder{}
	r, _ := startPipeline(t, server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, PushbackDelay: delay}, Observer: rec.observer()}, outer{})
	release := r.block(t, "blocker", 1)
	defer release()

	t.Run("unary", func(t *testing.T) {
		var trailer metadata.MD
		_, err := r.client.Unary(context.Background(), unaryReq("shed"), grpc.Trailer(&trailer))
		checkPushback(t, err, trailer, delay)
		serr := r.errs.last()
		if !errors.Is(serr, resilience.ErrBulkheadFull) {
			t.Errorf("server-side error %v does not match ErrBulkheadFull", serr)
		}
		if st, ok := status.FromError(serr); !ok || st.Code() != codes.ResourceExhausted {
			t.Errorf("server-side error %v is not a RESOURCE_EXHAUSTED status", serr)
		}
	})
	t.Run("stream", func(t *testing.T) {
		s, err := r.client.ServerStream(context.Background(), &testingv1.ServerStreamRequest{Behavior: &testingv1.Behavior{CallId: "shed", StreamMessages: 3}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Recv()
		checkPushback(t, err, s.Trailer(), delay)
		if serr := r.errs.last(); !errors.Is(serr, resilience.ErrBulkheadFull) {
			t.Errorf("server-side error %v does not match ErrBulkheadFull", serr)
		}
	})
	if got := r.srv.Service().Attempts("shed"); got != 0 {
		t.Errorf("the handler ran %d shed calls, want 0", got)
	}
	e, ok := rec.first(server.EventShed)
	if !ok || e.Code != codes.ResourceExhausted || e.Delay != delay || e.FullMethod != testingv1.TestService_Unary_FullMethodName {
		t.Errorf("first shed event = %+v, %v; want RESOURCE_EXHAUSTED on Unary with delay %v", e, ok, delay)
	}
}

func checkPushback(t *testing.T, err error, trailer metadata.MD, delay time.Duration) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("got %v, want RESOURCE_EXHAUSTED", err)
	}
	if pb := classify.PushbackOf(st, trailer); !pb.Retry || pb.Delay != delay {
		t.Errorf("PushbackOf = %+v, want a retry after %v", pb, delay)
	}
	if pb := classify.ParsePushbackTrailer(trailer.Get(classify.PushbackTrailer)); !pb.Retry || pb.Delay != delay {
		t.Errorf("trailer %v gives %+v, want a retry after %v", trailer, pb, delay)
	}
	if pb := classify.ParseRetryInfo(st); !pb.Retry || pb.Delay != delay {
		t.Errorf("RetryInfo gives %+v, want a retry after %v", pb, delay)
	}
}

func TestNoPushback(t *testing.T) {
	r, _ := startPipeline(t, server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, NoPushback: true}}, outer{})
	release := r.block(t, "blocker", 1)
	defer release()
	var trailer metadata.MD
	_, err := r.client.Unary(context.Background(), unaryReq("shed"), grpc.Trailer(&trailer))
	st, _ := status.FromError(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("got %v, want RESOURCE_EXHAUSTED", err)
	}
	if pb := classify.PushbackOf(st, trailer); pb.Present {
		t.Errorf("PushbackOf = %+v, want no pushback", pb)
	}
}

// With a queue, a call that finds the bulkhead full waits for a slot; with
// MaxWait, it is shed when the wait runs out.
func TestBulkheadQueue(t *testing.T) {
	t.Run("admitted when a slot frees", func(t *testing.T) {
		r, _ := startPipeline(t, server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, Queue: 1}}, outer{})
		done := make(chan error, 1)
		go func() {
			_, err := r.client.Unary(context.Background(), &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "first", Sleep: durationpb.New(200 * time.Millisecond)}})
			done <- err
		}()
		if err := r.srv.Service().WaitAttempts(context.Background(), "first", 1); err != nil {
			t.Fatal(err)
		}
		if _, err := r.client.Unary(context.Background(), unaryReq("queued")); err != nil {
			t.Errorf("queued call: %v, want OK", err)
		}
		if err := <-done; err != nil {
			t.Errorf("first call: %v", err)
		}
		if got := r.gauge.high.Load(); got != 1 {
			t.Errorf("high-water mark = %d, want 1", got)
		}
	})
	t.Run("shed after MaxWait", func(t *testing.T) {
		r, _ := startPipeline(t, server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, Queue: 1, MaxWait: 30 * time.Millisecond}}, outer{})
		release := r.block(t, "blocker", 1)
		defer release()
		start := time.Now()
		var trailer metadata.MD
		_, err := r.client.Unary(context.Background(), unaryReq("queued"), grpc.Trailer(&trailer))
		checkPushback(t, err, trailer, server.DefaultPushbackDelay)
		if el := time.Since(start); el < 30*time.Millisecond {
			t.Errorf("shed after %v, before MaxWait", el)
		}
	})
}

// One noisy caller fills its own partition; another caller still gets in.
func TestPartitionsIsolateCallers(t *testing.T) {
	rec := &recorder{}
	r, p := startPipeline(t, server.Config{
		Bulkhead: server.BulkheadConfig{Limit: 2, PartitionBy: server.PartitionByHeader, Header: "X-Caller"},
		Observer: rec.observer(),
	}, outer{})
	release := r.block(t, "noisy", 2, "x-caller", "noisy")
	defer release()

	noisy := metadata.AppendToOutgoingContext(context.Background(), "x-caller", "noisy")
	if _, err := r.client.Unary(noisy, unaryReq("noisy-more")); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("noisy caller's third call: %v, want RESOURCE_EXHAUSTED", err)
	}
	quiet := metadata.AppendToOutgoingContext(context.Background(), "x-caller", "quiet")
	for range 3 {
		if _, err := r.client.Unary(quiet, unaryReq("quiet")); err != nil {
			t.Errorf("quiet caller: %v, want OK", err)
		}
	}
	if _, err := r.client.Unary(context.Background(), unaryReq("anonymous")); err != nil {
		t.Errorf("caller without the header: %v, want OK", err)
	}
	if e, ok := rec.first(server.EventShed); !ok || e.Key != p.Bulkhead().DisplayKey("noisy") || e.Key == "noisy" {
		t.Errorf("shed event = %+v, want the hashed key of noisy", e)
	}
	if got := p.Bulkhead().Partitions().Len(); got != 2 {
		t.Errorf("partitions = %d, want 2 (noisy, quiet)", got)
	}
}

// PartitionByMethod gives each method its own limit.
func TestPartitionByMethod(t *testing.T) {
	r, _ := startPipeline(t, server.Config{Bulkhead: server.BulkheadConfig{Limit: 1, PartitionBy: server.PartitionByMethod}}, outer{})
	release := r.block(t, "blocker", 1) // holds Unary's only slot
	defer release()
	if _, err := r.client.Unary(context.Background(), unaryReq("u")); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("Unary: %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, err := r.client.Query(context.Background(), &testingv1.QueryRequest{Behavior: &testingv1.Behavior{CallId: "q"}}); err != nil {
		t.Errorf("Query: %v, want OK", err)
	}
}

// 100,000 distinct caller keys (20,000 under the race detector), sent as
// real calls with the header and read by a KeyFunc, keep the number of
// partitions at the cap: each key beyond it takes the place of an idle
// partition (an eviction) or shares the overflow partition (an overflow),
// and the observer hears of each.
func TestPartitionCountBounded(t *testing.T) {
	const maxParts = 64
	var evicted, overflowed atomic.Int64
	r, p := startPipeline(t, server.Config{
		Bulkhead: server.BulkheadConfig{
			Limit: 1000, PartitionBy: server.PartitionByFunc, MaxPartitions: maxParts,
			KeyFunc: func(ctx context.Context, _ string) string {
				if v := metadata.ValueFromIncomingContext(ctx, "x-caller"); len(v) > 0 {
					return v[0]
				}
				return ""
			},
		},
		Observer: server.Observer{OnEvent: func(_ context.Context, e server.Event) {
			switch e.Kind {
			case server.EventPartitionEvicted:
				evicted.Add(1)
			case server.EventPartitionOverflow:
				overflowed.Add(1)
			}
		}},
	}, outer{})
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
				ctx := metadata.AppendToOutgoingContext(context.Background(), "x-caller", "caller-"+strconv.FormatInt(i, 10))
				if _, err := r.client.Query(ctx, &testingv1.QueryRequest{}); err != nil {
					t.Errorf("call %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	parts := p.Bulkhead().Partitions()
	if got := parts.Len(); got != maxParts {
		t.Errorf("partitions = %d, want the cap %d", got, maxParts)
	}
	var keyed uint64
	parts.Range(func(_ string, b *bulkhead.Bulkhead) bool {
		keyed += b.Metrics().Admitted
		return true
	})
	if keyed != maxParts {
		t.Errorf("the kept partitions admitted %d calls, want one each, %d", keyed, maxParts)
	}
	over := parts.Overflow().Metrics().Admitted
	if ev, ov := evicted.Load(), overflowed.Load(); ev+ov != keys-maxParts || uint64(ov) != over {
		t.Errorf("%d evictions and %d overflows (overflow partition admitted %d), want %d in all and every overflow admitted",
			ev, ov, over, keys-maxParts)
	}
}

// With MaxPartitions keyed partitions, a new key takes the place of an
// idle partition (EventPartitionEvicted) and, while every partition is
// busy, runs in the overflow partition (EventPartitionOverflow): a busy
// partition is never dropped.
func TestPartitionEvictionAndOverflowEvents(t *testing.T) {
	rec := &recorder{}
	r, p := startPipeline(t, server.Config{
		Bulkhead: server.BulkheadConfig{Limit: 1, PartitionBy: server.PartitionByHeader, Header: "x-caller", MaxPartitions: 1, ShowKeys: true},
		Observer: rec.observer(),
	}, outer{})
	call := func(caller string) error {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-caller", caller)
		_, err := r.client.Unary(ctx, unaryReq(caller))
		return err
	}
	release := r.block(t, "busy", 1, "x-caller", "a") // partition a holds a call

	if err := call("b"); err != nil {
		t.Fatalf("caller b while a is busy: %v, want OK in the overflow partition", err)
	}
	if e, ok := rec.first(server.EventPartitionOverflow); !ok || e.Key != "b" {
		t.Errorf("overflow event = %+v, %v; want key b", e, ok)
	}
	if n := rec.count(server.EventPartitionEvicted); n != 0 {
		t.Errorf("%d eviction events while the only partition was busy, want 0", n)
	}
	if got := p.Bulkhead().Partitions().Overflow().Metrics().Admitted; got != 1 {
		t.Errorf("overflow partition admitted %d calls, want 1", got)
	}

	release()
	// The client has its answer before the server is done with the call:
	// wait until errCapture, outermost, saw b's call and then a's end, so
	// that a's slot is free and partition a idle.
	r.errs.next(t)
	r.errs.next(t)
	if err := call("c"); err != nil {
		t.Fatalf("caller c: %v", err)
	}
	if e, ok := rec.first(server.EventPartitionEvicted); !ok || e.Key != "a" {
		t.Errorf("eviction event = %+v, %v; want key a", e, ok)
	}
	var keys []string
	p.Bulkhead().Partitions().Range(func(key string, _ *bulkhead.Bulkhead) bool {
		keys = append(keys, key)
		return true
	})
	if fmt.Sprint(keys) != "[c]" {
		t.Errorf("partitions %v, want only c", keys)
	}
}

// An adaptive limit backs off when the handler reports overload.
func TestAdaptiveLimitBacksOffOnUnavailable(t *testing.T) {
	const initial = 20
	r, p := startPipeline(t, server.Config{Bulkhead: server.BulkheadConfig{
		Limit:    initial,
		Adaptive: func() bulkhead.Strategy { return bulkhead.NewAIMD(bulkhead.AIMDConfig{BackoffRatio: 0.5}) },
	}}, outer{})
	for i := range 5 {
		_, err := r.client.Unary(context.Background(), &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: fmt.Sprint("fail", i), FailAttempts: -1}})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("call %d: %v, want UNAVAILABLE", i, err)
		}
	}
	if got := p.Bulkhead().Partitions().Overflow().Metrics().Limit; got >= initial {
		t.Errorf("limit after 5 UNAVAILABLE = %d, want below %d", got, initial)
	}
}

func TestOutcomeOf(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel2()
	bg := context.Background()
	tests := []struct {
		ctx  context.Context
		err  error
		want bulkhead.Outcome
	}{
		{bg, nil, bulkhead.OutcomeSuccess},
		{bg, status.Error(codes.NotFound, ""), bulkhead.OutcomeSuccess},
		{bg, status.Error(codes.Internal, ""), bulkhead.OutcomeSuccess},
		{bg, status.Error(codes.Unavailable, ""), bulkhead.OutcomeDropped},
		{bg, status.Error(codes.ResourceExhausted, ""), bulkhead.OutcomeDropped},
		{bg, status.Error(codes.DeadlineExceeded, ""), bulkhead.OutcomeDropped},
		{bg, context.DeadlineExceeded, bulkhead.OutcomeDropped},
		{bg, status.Error(codes.Canceled, ""), bulkhead.OutcomeIgnored},
		{bg, context.Canceled, bulkhead.OutcomeIgnored},
		{canceled, nil, bulkhead.OutcomeIgnored},
		{canceled, status.Error(codes.Unavailable, ""), bulkhead.OutcomeIgnored},
		{expired, nil, bulkhead.OutcomeDropped},
	}
	for i, tt := range tests {
		if got := server.OutcomeOf(tt.ctx, tt.err); got != tt.want {
			t.Errorf("%d: OutcomeOf(%v) = %v, want %v", i, tt.err, got, tt.want)
		}
	}
}

package server_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
)

// A CPU strategy sheds over real gRPC the way every server bulkhead does:
// RESOURCE_EXHAUSTED with RetryInfo and the pushback trailer, reported as
// an EventShed. The CPU signal is injected; calls run on loopback TCP.
func TestCPUStrategySheds(t *testing.T) {
	const ceiling, delay = 50, 150 * time.Millisecond
	var hot atomic.Bool
	rec := &recorder{}
	r, p := startPipeline(t, server.Config{
		Bulkhead: server.BulkheadConfig{
			Limit:         ceiling,
			PushbackDelay: delay,
			Adaptive: func() bulkhead.Strategy {
				return bulkhead.NewCPU(bulkhead.CPUConfig{
					Window:  time.Second,
					Buckets: 10,
					CoolOff: 50 * time.Millisecond,
					Usage: func() (float64, bool) {
						if hot.Load() {
							return 0.97, true
						}
						return 0.2, true
					},
				})
			},
		},
		Observer: rec.observer(),
	}, outer{})
	limit := func() int { return p.Bulkhead().Partitions().Overflow().Metrics().Limit }

	// callUntil makes sequential calls until cond holds, for at most 30s.
	n := 0
	callUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after %d calls (limit %d)", what, n, limit())
			}
			n++
			if _, err := r.client.Unary(context.Background(), unaryReq(fmt.Sprint("c", n))); err != nil {
				t.Fatalf("call %d: %v", n, err)
			}
		}
	}

	// Cool CPU: statistics fill up over two buckets, and no limit applies.
	start := time.Now()
	callUntil("two buckets of calls", func() bool { return time.Since(start) > 250*time.Millisecond })
	if got := limit(); got != ceiling {
		t.Fatalf("limit %d with a cool CPU, want %d", got, ceiling)
	}

	// Hot CPU: sequential calls keep about one in flight, and the BBR
	// limit says so.
	hot.Store(true)
	callUntil("the limit to fall", func() bool { return limit() < ceiling })
	l := limit()
	t.Logf("limit with a hot CPU: %d", l)
	release := r.block(t, "holder", l)
	var trailer metadata.MD
	_, err := r.client.Unary(context.Background(), unaryReq("shed"), grpc.Trailer(&trailer))
	checkPushback(t, err, trailer, delay)
	if e, ok := rec.first(server.EventShed); !ok || e.Code != codes.ResourceExhausted {
		t.Errorf("shed event %+v, %v; want RESOURCE_EXHAUSTED", e, ok)
	}
	if got := r.srv.Service().Attempts("shed"); got != 0 {
		t.Errorf("the handler ran the shed call %d times", got)
	}
	release()
	// The client has given up on the held calls; wait for the server to
	// see it and free their slots.
	deadline := time.Now().Add(30 * time.Second)
	for p.Bulkhead().Partitions().Overflow().Metrics().InFlight > 0 {
		if time.Now().After(deadline) {
			t.Fatal("held calls still in flight 30s after their clients gave up")
		}
		time.Sleep(time.Millisecond) // polling the server's state, bounded by deadline
	}

	// Cool again: after the cool-off the limit is the bulkhead's own.
	hot.Store(false)
	callUntil("the limit to come back", func() bool { return limit() == ceiling })
}

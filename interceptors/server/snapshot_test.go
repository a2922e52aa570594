package server_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
)

const unaryMethod = "/grpcresilience.testing.v1.TestService/Unary"

// Subscribers hear the server's events next to Config.Observer until they
// cancel; the snapshot shows the partitions, quotas, faults and deadline
// settings in force, with peer addresses hashed.
func TestSubscribeAndSnapshot(t *testing.T) {
	cfgRec := &recorder{}
	faults := server.FaultConfig{Methods: map[string]server.Fault{"/grpcresilience.testing.v1.TestService/Stream": {ErrorRate: 0.5}}}
	r, p := startPipeline(t, server.Config{
		Exempt:    []string{"pkg.Admin"},
		Deadline:  server.DeadlineConfig{MinRemaining: time.Millisecond, Default: time.Minute},
		Bulkhead:  server.BulkheadConfig{Limit: 1, PartitionBy: server.PartitionByPeer, MaxPartitions: 4},
		RateLimit: server.RateLimitConfig{PartitionBy: server.PartitionByMethod, Methods: map[string]server.RateQuota{"grpcresilience.testing.v1.TestService": {Rate: 0.01, Burst: 10}}},
		Chaos:     server.ChaosConfig{Faults: faults},
		Observer:  cfgRec.observer(),
	}, outer{})
	a, b := &recorder{}, &recorder{}
	cancelA := p.Subscribe(a.observer())
	cancelB := p.Subscribe(b.observer())
	defer cancelB()
	if noop := p.Subscribe(server.Observer{}); noop == nil {
		t.Fatal("Subscribe of an empty Observer returned a nil cancel")
	} else {
		noop()
	}

	release := r.block(t, "held", 1)
	defer release()
	shed := func() {
		t.Helper()
		if _, err := r.client.Unary(context.Background(), unaryReq("shed")); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("call beyond the limit: %v, want it shed", err)
		}
	}
	shed()
	cancelA()
	cancelA() // idempotent
	shed()
	if got := []int{cfgRec.count(server.EventShed), a.count(server.EventShed), b.count(server.EventShed)}; !reflect.DeepEqual(got, []int{2, 1, 2}) {
		t.Fatalf("shed events heard by Config.Observer, A (cancelled after one), B = %v, want [2 1 2]", got)
	}
	peer := p.Bulkhead().DisplayKey("127.0.0.1")
	if e, _ := b.first(server.EventShed); e.Key != peer || strings.Contains(e.Key, "127.0.0.1") || !strings.HasPrefix(peer, "k:") {
		t.Fatalf("shed event Key %q, want the peer address hashed: %q", e.Key, peer)
	}

	s := p.Snapshot()
	if !reflect.DeepEqual(s.Exempt, []string{"pkg.Admin"}) || s.Deadline.Default != time.Minute || s.Deadline.MinRemaining != time.Millisecond {
		t.Errorf("snapshot Exempt %v, Deadline %+v", s.Exempt, s.Deadline)
	}
	if !reflect.DeepEqual(s.Faults, faults) {
		t.Errorf("snapshot Faults %+v, want %+v", s.Faults, faults)
	}
	bh := s.Bulkhead
	if !bh.Enabled || bh.PartitionBy != server.PartitionByPeer || bh.Limit != 1 || bh.MaxPartitions != 4 || bh.ShowKeys {
		t.Errorf("snapshot Bulkhead %+v", bh)
	}
	if len(bh.Partitions) != 1 || bh.Partitions[0].Key != peer || bh.Partitions[0].Metrics.InFlight != 1 || bh.Partitions[0].Metrics.Rejected != 2 {
		t.Errorf("snapshot partitions %+v, want one for %s with 1 in flight and 2 rejected", bh.Partitions, peer)
	}
	q := s.RateLimit.Quotas
	if len(q) != 1 || q[0].Name != "grpcresilience.testing.v1.TestService" || q[0].Class != "service:grpcresilience.testing.v1.TestService" ||
		q[0].Rate != 0.01 || q[0].Burst != 10 || q[0].Store || q[0].Metrics.Admitted != 3 {
		t.Fatalf("snapshot quotas %+v", q)
	}
	// A service quota keyed by method: the key is the method, shown as it is.
	if parts := q[0].Partitions; len(parts) != 1 || parts[0].Method != unaryMethod || parts[0].Key != unaryMethod || parts[0].Tokens < 7 || parts[0].Tokens > 7.5 {
		t.Errorf("quota partitions %+v, want %s with 7 tokens (10 less 3 calls, plus 0.01 a second)", parts, unaryMethod)
	}
	if _, err := json.Marshal(s); err != nil {
		t.Errorf("the snapshot does not marshal: %v", err)
	}
	if err := p.Chaos().Set(server.FaultConfig{}); err != nil {
		t.Fatal(err)
	}
	if got := p.Snapshot().Faults; len(got.Methods) != 0 {
		t.Errorf("Faults after Set(FaultConfig{}) = %+v", got)
	}
}

// A server without bulkhead or rate limit has an empty snapshot of both.
func TestSnapshotOfDisabledStages(t *testing.T) {
	p, err := server.New(server.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s := p.Snapshot()
	if !reflect.DeepEqual(s.Bulkhead, server.BulkheadSnapshot{}) || !reflect.DeepEqual(s.RateLimit, server.RateLimitSnapshot{}) {
		t.Fatalf("snapshot %+v", s)
	}
}

// Snapshots, subscriptions and cancellations run concurrently with calls
// whose caller keys outnumber the caps: the snapshot stays within the caps,
// and every subscriber hears only events that happened while it was
// subscribed.
func TestSnapshotAndSubscribeConcurrent(t *testing.T) {
	const maxParts, callers, calls = 8, 40, 200
	r, p := startPipeline(t, server.Config{
		Bulkhead:  server.BulkheadConfig{Limit: 1, PartitionBy: server.PartitionByHeader, Header: "x-api-key", MaxPartitions: maxParts},
		RateLimit: server.RateLimitConfig{Rate: 5, PartitionBy: server.PartitionByHeader, Header: "x-api-key", MaxPartitions: maxParts},
	}, outer{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < calls; i += 4 {
				cctx := metadata.AppendToOutgoingContext(ctx, "x-api-key", "secret-"+strconv.Itoa(i%callers))
				_, _ = r.client.Unary(cctx, unaryReq("c"))
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	type cancelled struct {
		rec   *recorder
		heard int
	}
	var past []cancelled
	for rounds := 0; ; rounds++ {
		rec := &recorder{}
		stop := p.Subscribe(rec.observer())
		s := p.Snapshot()
		stop()
		if len(past) < 100 {
			past = append(past, cancelled{rec, len(rec.snapshot())})
		}
		if n := len(s.Bulkhead.Partitions); n > maxParts {
			t.Fatalf("snapshot with %d bulkhead partitions, above the cap %d", n, maxParts)
		}
		for _, q := range s.RateLimit.Quotas {
			if n := len(q.Partitions); n > maxParts {
				t.Fatalf("snapshot with %d keys in a quota, above the cap %d", n, maxParts)
			}
			for _, part := range q.Partitions {
				if strings.Contains(part.Key, "secret") {
					t.Fatalf("snapshot shows the caller key %q", part.Key)
				}
			}
		}
		for _, part := range s.Bulkhead.Partitions {
			if strings.Contains(part.Key, "secret") {
				t.Fatalf("snapshot shows the caller key %q", part.Key)
			}
		}
		select {
		case <-done:
			for _, c := range past {
				if n := len(c.rec.snapshot()); n != c.heard {
					t.Fatalf("a subscriber heard %d events after its cancel returned", n-c.heard)
				}
			}
			return
		case <-ctx.Done():
			t.Fatal("the calls did not end")
		default:
		}
	}
}

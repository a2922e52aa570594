package server_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/ratelimit"
)

// storeLog records what a Store was built for and which keys it was asked
// about, around a real ratelimit.Keyed that decides.
type storeLog struct {
	mu     sync.Mutex
	quotas []string
	keys   []string
	down   atomic.Bool
}

type loggedStore struct {
	log  *storeLog
	keys *ratelimit.Keyed
}

var errStoreDown = errors.New("store unreachable")

func (s loggedStore) Take(ctx context.Context, key string, n int) (ratelimit.Decision, error) {
	s.log.mu.Lock()
	s.log.keys = append(s.log.keys, key)
	s.log.mu.Unlock()
	if s.log.down.Load() {
		return ratelimit.Decision{}, errStoreDown
	}
	return s.keys.Take(ctx, key, n)
}

func (l *storeLog) store(quota string, q server.RateQuota) ratelimit.Store {
	l.mu.Lock()
	l.quotas = append(l.quotas, quota+"="+formatQuota(q))
	l.mu.Unlock()
	if quota == "/grpcresilience.testing.v1.TestService/ServerStream" {
		return nil // keeps a local limiter
	}
	return loggedStore{log: l, keys: ratelimit.NewKeyed(ratelimit.KeyedConfig{Rate: q.Rate, Burst: q.Burst})}
}

func formatQuota(q server.RateQuota) string {
	return strconv.FormatFloat(q.Rate, 'g', -1, 64) + "/" + strconv.Itoa(q.Burst)
}

// fieldNamed reports whether err has a *resilience.FieldError for field.
func fieldNamed(err error, field string) bool {
	for _, fe := range resilience.FieldErrors(err) {
		if fe.Field == field {
			return true
		}
	}
	return false
}

// Store is built once per quota, with the quota's name and its rate and
// burst (Burst's default filled in), and decides each call with the
// caller's key; a service entry's keys join the method and the caller's
// key; a nil store keeps the local limiter; a store that fails admits the
// call and the observer hears EventRateLimitStoreFailed under the quota's
// class, with the error.
func TestRateLimitStore(t *testing.T) {
	log := &storeLog{}
	rec := &recorder{}
	r, p := startPipeline(t, server.Config{
		Observer: rec.observer(),
		RateLimit: server.RateLimitConfig{
			Rate: 0.001, Burst: 2, PartitionBy: server.PartitionByHeader, Header: "x-api-key",
			Methods: map[string]server.RateQuota{
				testService:        {Rate: 0.001, Burst: 1},
				methodQuery:        {Rate: 5},
				methodServerStream: {Rate: 0.001, Burst: 1},
			},
			Store: log.store,
		},
	}, outer{})
	slices.Sort(log.quotas)
	want := []string{methodQuery + "=5/5", methodServerStream + "=0.001/1", "=0.001/2", testService + "=0.001/1"}
	if !slices.Equal(log.quotas, want) {
		t.Errorf("Store built for %q, want %q", log.quotas, want)
	}

	ctx := withKey("dave")
	if _, err := r.client.Unary(ctx, unaryReq("s")); err != nil {
		t.Fatalf("first call: %v", err)
	}
	if _, err := r.client.Unary(ctx, unaryReq("s")); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second call: %v, want RESOURCE_EXHAUSTED from the store's quota (burst 1)", err)
	}
	log.mu.Lock()
	keys := slices.Clone(log.keys)
	log.mu.Unlock()
	if wantKey := methodUnary + "\x00dave"; len(keys) != 2 || keys[0] != wantKey {
		t.Errorf("store asked for %q, want %q twice", keys, wantKey)
	}
	if m := p.RateLimit().Metrics(); m.Admitted != 1 || m.Limited != 1 { // before the store fails
		t.Errorf("metrics %+v, want the store's decisions: 1 admitted, 1 limited", m)
	}

	log.down.Store(true)
	for range 3 {
		if _, err := r.client.Unary(ctx, unaryReq("s")); err != nil {
			t.Fatalf("call with the store down: %v, want it admitted", err)
		}
	}
	e, ok := rec.first(server.EventRateLimitStoreFailed)
	if !ok || !errors.Is(e.Err, errStoreDown) || e.Key != "method:"+methodUnary+",header:x-api-key" || e.FullMethod != methodUnary {
		t.Errorf("store failure event %+v (found %v), want the quota's class and the store's error", e, ok)
	}
	if n := rec.count(server.EventRateLimitStoreFailed); n != 3 {
		t.Errorf("%d store failure events, want 3", n)
	}
	if m := p.RateLimit().Metrics(); m.Admitted != 4 {
		t.Errorf("metrics %+v, want the 3 calls admitted without a decision counted as admitted", m)
	}
}

// Store and MaxPartitions together are a configuration error, and so is
// a Store with no quota to decide.
func TestRateLimitStoreValidate(t *testing.T) {
	store := func(string, server.RateQuota) ratelimit.Store { return nil }
	err := server.RateLimitConfig{Rate: 1, MaxPartitions: 10, Store: store}.Validate()
	if !fieldNamed(err, "MaxPartitions") {
		t.Errorf("Store with MaxPartitions: %v, want a MaxPartitions field error", err)
	}
	if err := (server.RateLimitConfig{Store: store}).Validate(); !fieldNamed(err, "Store") {
		t.Errorf("Store without a quota: %v, want a Store field error", err)
	}
}

package config_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors/config"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/ratelimit"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// A Reloader gives its client pipelines ReloaderConfig.OnBreakerCreated
// and its server's rate limit ReloaderConfig.RateLimitStore, so that
// pipelines built from a file can join a fleet.
func TestReloaderJoinsAFleet(t *testing.T) {
	const yaml = `
method_policies:
  - name: [{service: grpcresilience.testing.v1.TestService, method: Unary}]
    breaker: {failure_threshold: 2}
server:
  rate_limit: {rate: 0.001, burst: 1}
`
	var mu sync.Mutex
	var breakers []string
	var quotas []string
	r, err := config.NewReloader(config.ReloaderConfig{
		Config: mustParse(t, yaml),
		OnBreakerCreated: func(name string, _ *breaker.Breaker) func() {
			mu.Lock()
			breakers = append(breakers, name)
			mu.Unlock()
			return nil
		},
		RateLimitStore: func(quota string, q server.RateQuota) ratelimit.Store {
			mu.Lock()
			quotas = append(quotas, quota)
			mu.Unlock()
			return ratelimit.NewKeyed(ratelimit.KeyedConfig{Rate: q.Rate, Burst: q.Burst})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := testservice.StartTB(t, testservice.WithServerOptions(r.ServerOptions()...))
	conn := srv.DialTB(t, r.DialOptions()...)
	client := testingv1.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Unary(ctx, &testingv1.UnaryRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Unary(ctx, &testingv1.UnaryRequest{}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second call: %v, want RESOURCE_EXHAUSTED from the store's quota", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := "default " + conn.Target() + testingv1.TestService_Unary_FullMethodName; len(breakers) != 1 || breakers[0] != want {
		t.Errorf("breakers created %q, want %q", breakers, want)
	}
	if len(quotas) != 1 || quotas[0] != "" {
		t.Errorf("stores built for quotas %q, want the default quota", quotas)
	}
}

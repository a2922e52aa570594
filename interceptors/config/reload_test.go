package config_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors/config"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// before and after differ in IdempotentUnary's breaker; Unary's policy is
// the same text, though it moved and gained a name, and Query's is
// unchanged.
const before = `
method_policies:
  - name: [{service: grpcresilience.testing.v1.TestService, method: Unary}]
    breaker: {failure_threshold: 2, open_duration: 60s}
  - name: [{service: grpcresilience.testing.v1.TestService, method: IdempotentUnary}]
    breaker: {failure_threshold: 2, open_duration: 60s}
  - name: [{service: grpcresilience.testing.v1.TestService, method: Query}]
    retry: {max_attempts: 5, backoff: {kind: constant, delay: 1ms}, budget: {kind: none}}
`

const after = `
method_policies:
  - name: [{service: grpcresilience.testing.v1.TestService, method: Query}]
    retry: {max_attempts: 5, backoff: {kind: constant, delay: 1ms}, budget: {kind: none}}
  - name: [{service: grpcresilience.testing.v1.TestService, method: IdempotentUnary}]
    breaker: {failure_threshold: 3, open_duration: 60s}
  - name:
      - {service: grpcresilience.testing.v1.TestService, method: Unary}
      - {service: grpcresilience.testing.v1.TestService, method: ServerStream}
    breaker: {failure_threshold: 2, open_duration: 60s}
`

func mustParse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), config.FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestReload swaps configurations back and forth while calls run, under
// -race: no call fails because of a swap, a call held in the server across
// a swap completes, the open breaker of the unchanged Unary policy stays
// open (the same breaker), and the changed IdempotentUnary policy gets a
// fresh, closed breaker.
func TestReload(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { testReload(t, tr.opts) })
	}
}

func testReload(t *testing.T, topts []testservice.Option) {
	cfgBefore, cfgAfter := mustParse(t, before), mustParse(t, after)
	r, err := config.NewReloader(config.ReloaderConfig{Config: cfgBefore})
	if err != nil {
		t.Fatal(err)
	}
	srv := testservice.StartTB(t, append([]testservice.Option{testservice.WithServerOptions(r.ServerOptions()...)}, topts...)...)
	conn := srv.DialTB(t, r.DialOptions()...)
	client, svc, target := testingv1.NewTestServiceClient(conn), srv.Service(), conn.Target()
	ctx := ctxTimeout(t, 20*time.Second)

	// Open the breakers of Unary and IdempotentUnary.
	for i := range 2 {
		if _, err := client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Failing("u", -1, codes.Internal)}); status.Code(err) != codes.Internal {
			t.Fatalf("Unary %d: %v", i, err)
		}
		if _, err := client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: testservice.Failing("i", -1, codes.Internal)}); status.Code(err) != codes.Internal {
			t.Fatalf("IdempotentUnary %d: %v", i, err)
		}
	}
	unaryBreaker := r.Breaker(target, testingv1.TestService_Unary_FullMethodName)
	if unaryBreaker == nil || unaryBreaker.State() != breaker.Open {
		t.Fatalf("Unary's breaker = %v, want open", unaryBreaker)
	}
	if b := r.Breaker(target, testingv1.TestService_IdempotentUnary_FullMethodName); b.State() != breaker.Open {
		t.Fatalf("IdempotentUnary's breaker is %v, want open", b.State())
	}

	// A call held in the server while the configuration changes.
	held := make(chan error, 1)
	go func() {
		_, err := client.Query(ctx, &testingv1.QueryRequest{Behavior: &testingv1.Behavior{CallId: "held", Sleep: durationpb.New(200 * time.Millisecond)}})
		held <- err
	}()
	if err := svc.WaitAttempts(ctx, "held", 1); err != nil {
		t.Fatal(err)
	}

	// Calls in flight: Query fails its first attempt and is retried, over
	// and over, while the configuration is swapped back and forth; each
	// swap waits for a call to end after it.
	var wg sync.WaitGroup
	var calls atomic.Int64
	stop, progress := make(chan struct{}), make(chan struct{}, 1)
	// next waits until a call ended after it was called: the first
	// receive may be a signal from before, the second is not.
	next := func() {
		for range 2 {
			select {
			case <-progress:
			case <-ctx.Done():
				t.Fatal("the calls made no progress")
			}
		}
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				_, err := client.Query(ctx, &testingv1.QueryRequest{Behavior: testservice.Failing(id, 1, codes.Unavailable)})
				calls.Add(1)
				select {
				case progress <- struct{}{}:
				default:
				}
				if err != nil {
					t.Errorf("call %s failed across a reload: %v", id, err)
				}
			}
		}()
	}
	for i := range 40 {
		cfg := cfgAfter
		if i%2 == 1 {
			cfg = cfgBefore
		}
		if err := r.Update(cfg); err != nil {
			t.Fatal(err)
		}
		next()
	}
	if err := r.Update(cfgAfter); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		next()
	}
	close(stop)
	wg.Wait()
	if err := <-held; err != nil {
		t.Fatalf("the call held across the swaps failed: %v", err)
	}
	if calls.Load() == 0 {
		t.Fatal("no call ran during the swaps")
	}

	// Unary's policy did not change: its open breaker survived.
	if b := r.Breaker(target, testingv1.TestService_Unary_FullMethodName); b != unaryBreaker || b.State() != breaker.Open {
		t.Fatalf("Unary's breaker after reload: %p %v, want the same open breaker %p", b, b.State(), unaryBreaker)
	}
	seen := svc.Attempts("u")
	_, err = client.Unary(ctx, &testingv1.UnaryRequest{Behavior: testservice.Failing("u", -1, codes.Internal)})
	if !errors.Is(err, resilience.ErrCircuitOpen) {
		t.Fatalf("Unary after reload: %v, want ErrCircuitOpen", err)
	}
	if got := svc.Attempts("u"); got != seen {
		t.Fatalf("Unary reached the server after reload (%d attempts, had %d)", got, seen)
	}

	// IdempotentUnary's policy changed: a fresh breaker, closed, that calls
	// the server and opens after 3 failures now.
	if b := r.Breaker(target, testingv1.TestService_IdempotentUnary_FullMethodName); b.State() != breaker.Closed {
		t.Fatalf("IdempotentUnary's breaker after reload is %v, want closed", b.State())
	}
	for i := range 3 {
		if _, err := client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: testservice.Failing("i2", -1, codes.Internal)}); status.Code(err) != codes.Internal {
			t.Fatalf("IdempotentUnary %d after reload: %v, want the server's INTERNAL", i, err)
		}
	}
	if _, err := client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{Behavior: testservice.Failing("i2", -1, codes.Internal)}); !errors.Is(err, resilience.ErrCircuitOpen) {
		t.Fatalf("IdempotentUnary's 4th call after reload: %v, want ErrCircuitOpen", err)
	}
}

// TestReloadServer checks that a change of chaos faults alone keeps the
// server pipeline (and its bulkhead) and swaps the faults in, while a
// change of the bulkhead builds a new pipeline; calls see the faults of
// the configuration in force.
func TestReloadServer(t *testing.T) {
	const base = `
server:
  bulkhead: {limit: 4}
  chaos: {seed: 1}
`
	const faulty = `
server:
  bulkhead: {limit: 4}
  chaos:
    seed: 1
    methods: {"/grpcresilience.testing.v1.TestService/Unary": {error_rate: 1, code: DATA_LOSS}}
`
	const bigger = `
server:
  bulkhead: {limit: 8}
`
	r, err := config.NewReloader(config.ReloaderConfig{Config: mustParse(t, base)})
	if err != nil {
		t.Fatal(err)
	}
	srv := testservice.StartTB(t, testservice.WithServerOptions(r.ServerOptions()...))
	client := testingv1.NewTestServiceClient(srv.DialTB(t, r.DialOptions()...))
	ctx := ctxTimeout(t, 10*time.Second)
	first := r.Server()

	if err := r.Update(mustParse(t, faulty)); err != nil {
		t.Fatal(err)
	}
	if r.Server() != first {
		t.Fatal("a change of faults alone replaced the server pipeline")
	}
	if _, err := client.Unary(ctx, &testingv1.UnaryRequest{}); status.Code(err) != codes.DataLoss {
		t.Fatalf("Unary with the fault: %v, want DATA_LOSS", err)
	}
	if err := r.Update(mustParse(t, base)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Unary(ctx, &testingv1.UnaryRequest{}); err != nil {
		t.Fatalf("Unary once the fault is gone: %v", err)
	}
	if err := r.Update(mustParse(t, bigger)); err != nil {
		t.Fatal(err)
	}
	if r.Server() == first {
		t.Fatal("a change of the bulkhead kept the old server pipeline")
	}
	if _, err := client.Unary(ctx, &testingv1.UnaryRequest{}); err != nil {
		t.Fatalf("Unary on the new pipeline: %v", err)
	}
}

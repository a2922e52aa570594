package server_test

import (
	"context"
	"fmt"
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
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// A server whose bulkhead admits one call at a time: while a slow call
// runs, the next one is shed with RESOURCE_EXHAUSTED and a pushback the
// client can honour.
func Example() {
	s, err := server.New(server.Config{
		Deadline: server.DeadlineConfig{MinRemaining: time.Millisecond},
		Bulkhead: server.BulkheadConfig{Limit: 1, PushbackDelay: 200 * time.Millisecond},
	})
	if err != nil {
		panic(err)
	}
	srv, err := testservice.Start(testservice.WithTCP("127.0.0.1:0"), testservice.WithServerOptions(
		grpc.ChainUnaryInterceptor(s.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(s.StreamServerInterceptor()),
	))
	if err != nil {
		panic(err)
	}
	defer srv.Stop()
	conn, err := srv.Dial()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	client := testingv1.NewTestServiceClient(conn)

	// A slow call takes the only slot.
	ctx, cancel := context.WithCancel(context.Background())
	slow := make(chan struct{})
	go func() {
		defer close(slow)
		_, _ = client.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "slow", Sleep: durationpb.New(time.Hour)}})
	}()
	if err := srv.Service().WaitAttempts(context.Background(), "slow", 1); err != nil {
		panic(err)
	}

	var trailer metadata.MD
	_, err = client.Unary(context.Background(), &testingv1.UnaryRequest{}, grpc.Trailer(&trailer))
	st, _ := status.FromError(err)
	pb := classify.PushbackOf(st, trailer)
	fmt.Println(st.Code(), "retry after", pb.Delay)

	cancel()
	<-slow
	// Output:
	// ResourceExhausted retry after 200ms
}

// A chaos drill: healthy, then a partial outage of one method, then a full
// outage, then recovery, switched at run time.
func ExampleChaos_Set() {
	s, err := server.New(server.Config{Chaos: server.ChaosConfig{Seed: 1}})
	if err != nil {
		panic(err)
	}
	chaos := s.Chaos()
	srv, err := testservice.Start(testservice.WithTCP("127.0.0.1:0"), testservice.WithServerOptions(
		grpc.ChainUnaryInterceptor(s.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(s.StreamServerInterceptor()),
	))
	if err != nil {
		panic(err)
	}
	defer srv.Stop()
	conn, err := srv.Dial()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	client := testingv1.NewTestServiceClient(conn)

	probe := func(step string) {
		_, errU := client.Unary(context.Background(), &testingv1.UnaryRequest{})
		_, errQ := client.Query(context.Background(), &testingv1.QueryRequest{})
		fmt.Printf("%-8s Unary %v, Query %v\n", step, status.Code(errU), status.Code(errQ))
	}
	probe("healthy")
	_ = chaos.Set(server.FaultConfig{Methods: map[string]server.Fault{
		testingv1.TestService_Unary_FullMethodName: {ErrorRate: 1},
	}})
	probe("partial")
	_ = chaos.Set(server.FaultConfig{All: server.Fault{ErrorRate: 1, Code: codes.Unavailable}})
	probe("outage")
	_ = chaos.Set(server.FaultConfig{})
	probe("recovery")
	// Output:
	// healthy  Unary OK, Query OK
	// partial  Unary Unavailable, Query OK
	// outage   Unary Unavailable, Query Unavailable
	// recovery Unary OK, Query OK
}

// Validate reports every bad setting at once, each as a
// *resilience.FieldError naming its path from Config, so that a config
// loader can point at its own keys.
func ExampleConfig_Validate() {
	err := server.Config{
		Exempt:   []string{"grpc.testing.TestService", "/a/b/c"},
		Bulkhead: server.BulkheadConfig{Limit: 8, Queue: -1},
		Chaos: server.ChaosConfig{Faults: server.FaultConfig{Methods: map[string]server.Fault{
			"/grpc.testing.TestService/EmptyCall": {ErrorRate: 1.5},
		}}},
	}.Validate()
	for _, fe := range resilience.FieldErrors(err) {
		fmt.Println(fe.Field, "=", fe.Value)
	}
	// Output:
	// Exempt[1] = /a/b/c
	// Bulkhead.Queue = -1
	// Chaos.Faults.Methods[/grpc.testing.TestService/EmptyCall].ErrorRate = 1.5
}

// An Observer hears about every shed call, deadline rejection, default
// deadline, injected fault and bulkhead partition eviction or overflow.
// telemetry.Telemetry.ServerObserver returns one that records spans,
// metrics and logs.
func ExampleObserver() {
	s, err := server.New(server.Config{
		Deadline: server.DeadlineConfig{Default: time.Second},
		Observer: server.Observer{OnEvent: func(ctx context.Context, e server.Event) {
			fmt.Println(e.Kind, e.FullMethod, e.Delay)
		}},
	})
	if err != nil {
		panic(err)
	}
	srv, err := testservice.Start(testservice.WithTCP("127.0.0.1:0"), testservice.WithServerOptions(
		grpc.ChainUnaryInterceptor(s.UnaryServerInterceptor()),
	))
	if err != nil {
		panic(err)
	}
	defer srv.Stop()
	conn, err := srv.Dial()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	// A call without a deadline gets the default one.
	_, _ = testingv1.NewTestServiceClient(conn).Unary(context.Background(), &testingv1.UnaryRequest{})
	// Output:
	// default_deadline /grpcresilience.testing.v1.TestService/Unary 1s
}

// Shedding on CPU usage: up to 500 calls at once while the CPUs this
// process may use have headroom; above 85% busy, only as many as the
// server has lately completed without queueing.
func ExampleBulkheadConfig_cpu() {
	s, err := server.New(server.Config{
		Bulkhead: server.BulkheadConfig{
			Limit: 500,
			Adaptive: func() bulkhead.Strategy {
				return bulkhead.NewCPU(bulkhead.CPUConfig{Threshold: 0.85})
			},
		},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(s.Bulkhead().Partitions().Overflow().Metrics().Limit)
	// Output:
	// 500
}

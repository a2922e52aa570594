package server_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// A server whose rate limit gives each API key its own quota. Its
// snapshot shows each key's quota, the key as a keyed hash: API keys are
// secrets, so they never leave the server as they came, unless
// RateLimitConfig.ShowKeys says so.
func ExampleServer_Snapshot() {
	s, err := server.New(server.Config{
		RateLimit: server.RateLimitConfig{Rate: 10, PartitionBy: server.PartitionByHeader, Header: "x-api-key"},
		// The processes of a fleet share a hash key, so that they show a
		// caller under the same name; without it, each process draws one.
		KeyHashKey: []byte("a fleet-wide secret of 16+ bytes"),
	})
	if err != nil {
		panic(err)
	}
	srv, err := testservice.Start(testservice.WithServerOptions(grpc.ChainUnaryInterceptor(s.UnaryServerInterceptor())))
	if err != nil {
		panic(err)
	}
	defer srv.Stop()
	conn, err := srv.Dial()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-api-key", "sk-live-secret")
	if _, err := testingv1.NewTestServiceClient(conn).Unary(ctx, &testingv1.UnaryRequest{}); err != nil {
		panic(err)
	}

	for _, q := range s.Snapshot().RateLimit.Quotas {
		fmt.Printf("quota %s: %g calls/s, %d admitted\n", q.Class, q.Rate, q.Metrics.Admitted)
		for _, p := range q.Partitions {
			fmt.Println("key shown as a hash:", strings.HasPrefix(p.Key, "k:") && p.Key == s.RateLimit().DisplayKey("sk-live-secret"))
			fmt.Printf("tokens left: %.0f\n", p.Tokens)
		}
	}
	// Output:
	// quota header:x-api-key: 10 calls/s, 1 admitted
	// key shown as a hash: true
	// tokens left: 9
}

// Subscribe adds an observer to a running server, such as a console,
// without changing its configuration; cancel removes it.
func ExampleServer_Subscribe() {
	s, err := server.New(server.Config{Deadline: server.DeadlineConfig{Default: time.Second}})
	if err != nil {
		panic(err)
	}
	srv, err := testservice.Start(testservice.WithServerOptions(grpc.ChainUnaryInterceptor(s.UnaryServerInterceptor())))
	if err != nil {
		panic(err)
	}
	defer srv.Stop()
	conn, err := srv.Dial()
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	events := make(chan server.Event, 10)
	cancel := s.Subscribe(server.Observer{OnEvent: func(_ context.Context, e server.Event) { events <- e }})
	if _, err := testingv1.NewTestServiceClient(conn).Unary(context.Background(), &testingv1.UnaryRequest{}); err != nil {
		panic(err)
	}
	cancel()
	e := <-events
	fmt.Println(e.Kind, e.Delay)
	// Output:
	// default_deadline 1s
}

package testservice_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// A server that fails the first two attempts of call "c1" with UNAVAILABLE
// and answers the third.
func Example() {
	srv, err := testservice.Start(testservice.WithTCP("127.0.0.1:0"))
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

	req := &testingv1.UnaryRequest{Behavior: testservice.Failing("c1", 2, codes.Unavailable)}
	for range 3 {
		resp, err := client.Unary(context.Background(), req)
		if err != nil {
			fmt.Println(status.Code(err))
			continue
		}
		fmt.Println("OK on attempt", resp.GetReply().GetAttempt())
	}
	fmt.Println("server saw", srv.Service().Attempts("c1"), "attempts")
	// Output:
	// Unavailable
	// Unavailable
	// OK on attempt 3
	// server saw 3 attempts
}

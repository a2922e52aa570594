package micro

import (
	"testing"

	"google.golang.org/grpc"

	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// BenchmarkLoopbackUnary measures a whole unary call to a testservice
// server on 127.0.0.1 through each library's client interceptor, serial:
// ns/op is the round trip, and allocs/op minus bare's is what the
// interceptor adds to gRPC's own allocations on a real connection.
func BenchmarkLoopbackUnary(b *testing.B) {
	srv := testservice.StartTB(b, testservice.WithTCP(""))
	ctx := callerContext(b)
	req := &testingv1.IdempotentUnaryRequest{Payload: []byte("ping")}
	for _, p := range pipelines(b) {
		client := srv.Client(b, grpc.WithDisableRetry(), grpc.WithUnaryInterceptor(p.ic))
		if _, err := client.IdempotentUnary(ctx, req); err != nil { // connect first
			b.Fatal(err)
		}
		b.Run(p.lib, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.IdempotentUnary(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package interceptors_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// streamPolicy sets every pattern that runs on a stream's success path.
func streamPolicy() interceptors.Policy {
	return interceptors.Policy{
		Retry:          fastRetry(3),
		Breaker:        &interceptors.BreakerPolicy{},
		Bulkhead:       &interceptors.BulkheadPolicy{Limit: 1 << 20},
		DefaultTimeout: time.Minute,
	}
}

// BenchmarkStreamSuccess measures streams whose first attempt succeeds,
// over bufconn: a server stream of 1 message and a bidi stream of 10
// echoed messages, with no interceptor ("bare") and through the pipeline
// with retry, breaker, bulkhead and default timeout (the caller having a
// deadline), with and without an observer. The difference to "bare" is the
// pipeline's cost in the same run.
func BenchmarkStreamSuccess(b *testing.B) {
	srv := testservice.StartTB(b)
	conns := []struct {
		name string
		ic   []grpc.StreamClientInterceptor
	}{
		{"bare", nil},
		{"pipeline", []grpc.StreamClientInterceptor{newPipeline(b, streamPolicy()).StreamClientInterceptor()}},
		{"pipeline+observer", []grpc.StreamClientInterceptor{newClient(b, interceptors.Config{Default: streamPolicy(), Observer: nopObserver()}).StreamClientInterceptor()}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	for _, shape := range []string{"server-stream", "bidi-10"} {
		for _, c := range conns {
			b.Run(shape+"/"+c.name, func(b *testing.B) {
				client := testingv1.NewTestServiceClient(srv.DialTB(b, grpc.WithDisableRetry(), grpc.WithChainStreamInterceptor(c.ic...)))
				run := serverStreamOnce
				if shape == "bidi-10" {
					run = bidiOnce
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := run(ctx, client); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

var benchBehavior = &testingv1.Behavior{CallId: "bench", StreamMessages: 1}

func serverStreamOnce(ctx context.Context, client testingv1.TestServiceClient) error {
	st, err := client.ServerStream(ctx, &testingv1.ServerStreamRequest{Behavior: benchBehavior})
	if err != nil {
		return err
	}
	for {
		if _, err := st.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func bidiOnce(ctx context.Context, client testingv1.TestServiceClient) error {
	st, err := client.BidiStream(ctx)
	if err != nil {
		return err
	}
	req := &testingv1.BidiStreamRequest{Behavior: benchBehavior, Payload: []byte("0123456789")}
	for range 10 {
		if err := st.Send(req); err != nil {
			return err
		}
		if _, err := st.Recv(); err != nil {
			return err
		}
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

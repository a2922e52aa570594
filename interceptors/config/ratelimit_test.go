package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	"github.com/engineeringlabs/grpc-resilience/interceptors/config"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// rateLimits gives each caller (header x-caller) one Unary call, and Query
// no server quota but a client limit of 2 attempts. The rates are so low
// (one permit in about 17 minutes) that no permit comes back during the
// test, whatever the machine's speed.
const rateLimits = `
method_policies:
  - name: [{service: grpcresilience.testing.v1.TestService, method: Query}]
    rate_limit: {rate: 0.001, burst: 2}
server:
  rate_limit:
    rate: 0.001
    burst: 1
    partition_by: header
    header: x-caller
    methods:
      /grpcresilience.testing.v1.TestService/Query: {}
`

// TestRateLimitRoundTrip loads a file with a client and a server rate
// limit, serves and dials with it over bufconn and loopback TCP, and
// checks both: the server admits each caller's burst, refuses the next
// call with RESOURCE_EXHAUSTED, RetryInfo, pushback and a QuotaFailure
// that names the quota but not the caller's key, and keeps another
// caller's quota apart; the client refuses attempts beyond its own burst
// locally, with RESOURCE_EXHAUSTED matching resilience.ErrRateLimited,
// without reaching the server.
func TestRateLimitRoundTrip(t *testing.T) {
	cfg, err := config.Parse([]byte(rateLimits), config.FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			srv, conn := start(t, cfg, tr.opts)
			svc, client := srv.Service(), testingv1.NewTestServiceClient(conn)
			unary := func(caller, id string, opts ...grpc.CallOption) error {
				ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second), "x-caller", caller)
				_, err := client.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: id}}, opts...)
				return err
			}

			t.Run("server quota per caller", func(t *testing.T) {
				const secret = "caller-secret-7f3a"
				if err := unary(secret, "s1"); err != nil {
					t.Fatalf("first call: %v", err)
				}
				var trailer metadata.MD
				err := unary(secret, "s2", grpc.Trailer(&trailer))
				st := status.Convert(err)
				if st.Code() != codes.ResourceExhausted {
					t.Fatalf("second call: %v, want RESOURCE_EXHAUSTED", err)
				}
				if got := svc.Attempts("s2"); got != 0 {
					t.Fatalf("the refused call reached the handler %d times", got)
				}
				var retryInfo *errdetails.RetryInfo
				var quota *errdetails.QuotaFailure
				for _, d := range st.Details() {
					switch d := d.(type) {
					case *errdetails.RetryInfo:
						retryInfo = d
					case *errdetails.QuotaFailure:
						quota = d
					}
				}
				if retryInfo == nil || retryInfo.GetRetryDelay().AsDuration() <= 0 {
					t.Errorf("RetryInfo = %v, want a positive delay", retryInfo)
				}
				if pb := classify.ParsePushbackTrailer(trailer.Get(classify.PushbackTrailer)); !pb.Retry || pb.Delay <= 0 {
					t.Errorf("pushback trailer %q = %+v, want a positive delay", trailer.Get(classify.PushbackTrailer), pb)
				}
				if quota == nil || len(quota.GetViolations()) == 0 || quota.GetViolations()[0].GetSubject() != "header:x-caller" {
					t.Errorf("QuotaFailure = %v, want the subject header:x-caller", quota)
				}
				if strings.Contains(st.Message()+quota.String(), secret) {
					t.Errorf("the refusal echoes the caller's key: %q %v", st.Message(), quota)
				}
				if err := unary("another-caller", "s3"); err != nil {
					t.Fatalf("another caller's first call: %v", err)
				}
			})

			t.Run("client limit refuses locally", func(t *testing.T) {
				for i := range 2 {
					if _, err := client.Query(ctxTimeout(t, 10*time.Second), &testingv1.QueryRequest{Behavior: &testingv1.Behavior{CallId: "q"}}); err != nil {
						t.Fatalf("query %d: %v", i+1, err)
					}
				}
				_, err := client.Query(ctxTimeout(t, 10*time.Second), &testingv1.QueryRequest{Behavior: &testingv1.Behavior{CallId: "q"}})
				if status.Code(err) != codes.ResourceExhausted || !errors.Is(err, resilience.ErrRateLimited) {
					t.Fatalf("third query: err = %v, want RESOURCE_EXHAUSTED matching ErrRateLimited", err)
				}
				if got := svc.Attempts("q"); got != 2 {
					t.Fatalf("server saw %d queries, want 2", got)
				}
			})
		})
	}
}

package console

import (
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// A client whose throttle refuses attempts shows them on its row, with
// the probability of the next refusal, and the row counts as trouble.
func TestThrottleRow(t *testing.T) {
	srv := testservice.StartTB(t)
	client, err := interceptors.NewClient(interceptors.Config{Default: interceptors.Policy{Throttle: &interceptors.ThrottlePolicy{K: 1.1}}})
	if err != nil {
		t.Fatal(err)
	}
	conn := srv.DialTB(t, grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(client.UnaryClientInterceptor()))
	api := testingv1.NewTestServiceClient(conn)
	tick := make(chan time.Time)
	c := newConsole(Config{}, time.Now, tick)
	t.Cleanup(func() { _ = c.Close() })
	t.Cleanup(c.AddClient("payments", client))
	r := &rig{console: c, tick: tick}

	if _, err := api.Unary(t.Context(), &testingv1.UnaryRequest{}); err != nil {
		t.Fatal(err)
	}
	r.sample(t) // the row's first reading
	for i := range 200 {
		_, _ = api.Unary(t.Context(), &testingv1.UnaryRequest{Behavior: testservice.Failing("down-"+strconv.Itoa(i), -1, codes.Unavailable)})
	}
	s := r.sample(t)
	cl := findPipeline(t, s, "client", "payments")
	if len(cl.Rows) == 0 {
		t.Fatal("no rows")
	}
	row := cl.Rows[0]
	if row.Throttle == nil || row.Throttle.Probability <= 0 || row.Throttle.RejectedPerSec <= 0 || row.Throttle.K != 1.1 || row.Trouble < TroubleLimited {
		t.Fatalf("row %+v throttle %+v, want a throttle refusing attempts, as trouble", row, row.Throttle)
	}
}

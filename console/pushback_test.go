package console

import (
	"math"
	"testing"

	"google.golang.org/grpc/codes"

	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

// A retry that waits what the server asked for shows as a pushback wait on
// the method's row: how many per second and their mean wait.
func TestPushbackWaits(t *testing.T) {
	r := newRig(t, rigConfig{manual: true})
	if _, err := r.api.Unary(t.Context(), &testingv1.UnaryRequest{}); err != nil {
		t.Fatal(err)
	}
	r.sample(t) // the row's first reading: rates start from here
	const calls = 3
	for i := range calls {
		b := testservice.Failing("pushback-"+string(rune('a'+i)), 1, codes.Unavailable)
		b.PushbackMs = "20"
		if _, err := r.api.Unary(t.Context(), &testingv1.UnaryRequest{Behavior: b}); err != nil {
			t.Fatal(err)
		}
	}
	s := r.sample(t)
	cl := findPipeline(t, s, "client", "payments")
	for _, row := range cl.Rows {
		if row.Method != testingv1.TestService_Unary_FullMethodName {
			continue
		}
		if row.Retry == nil || row.Retry.PushbackPerSec <= 0 || math.Abs(row.Retry.PushbackWaitMS-20) > 0.001 {
			t.Fatalf("row retry %+v, want pushback waits of 20ms", row.Retry)
		}
		if row.Retry.RetriesPerSec != row.Retry.PushbackPerSec {
			t.Errorf("retries %v/s, pushback %v/s: want every retry counted as after pushback", row.Retry.RetriesPerSec, row.Retry.PushbackPerSec)
		}
		return
	}
	t.Fatalf("no row for %s in %+v", testingv1.TestService_Unary_FullMethodName, cl.Rows)
}

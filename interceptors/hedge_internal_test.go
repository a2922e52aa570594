package interceptors

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// TestHedgeEndNeverSucceedsWithoutReply checks that a hedged call with no
// winner always fails, also in the state the hedging loop never leaves: no
// attempt reported anything.
func TestHedgeEndNeverSucceedsWithoutReply(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "down")
	internal := status.Error(codes.Internal, "bug")
	for _, tc := range []struct {
		name string
		end  hedgeEnd
		want codes.Code
	}{
		{"no result at all", hedgeEnd{}, codes.Internal},
		{"no result, exhausted flag", hedgeEnd{exhausted: true}, codes.Internal},
		{"fatal error", hedgeEnd{final: internal, last: unavailable}, codes.Internal},
		{"last error", hedgeEnd{last: unavailable}, codes.Unavailable},
		{"exhausted", hedgeEnd{last: unavailable, exhausted: true}, codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.end.err(3)
			if err == nil {
				t.Fatal("err = nil: a call without a winner would report success with an empty reply")
			}
			if got := status.Code(err); got != tc.want {
				t.Errorf("code = %v, want %v (err %v)", got, tc.want, err)
			}
			var ex *resilience.RetriesExhaustedError
			if got := errors.As(err, &ex); got != (tc.name == "exhausted") {
				t.Errorf("errors.As RetriesExhaustedError = %v for %v", got, err)
			}
		})
	}
}

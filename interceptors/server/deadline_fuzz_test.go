package server

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// FuzzDeadlineRejection checks the duration arithmetic of deadline
// enforcement over every pair of durations: a call is rejected exactly when
// its time is up or below the minimum, and the rejection is
// DEADLINE_EXCEEDED with a TimeoutError whose After is never negative.
func FuzzDeadlineRejection(f *testing.F) {
	f.Add(int64(0), int64(0))
	f.Add(int64(-1), int64(time.Millisecond))
	f.Add(int64(time.Second), int64(5*time.Millisecond))
	f.Add(int64(-1<<63), int64(1<<63-1))
	f.Fuzz(func(t *testing.T, remaining, minRemaining int64) {
		r, m := time.Duration(remaining), time.Duration(minRemaining)
		late := tooLate(r, m)
		if want := r <= 0 || r < m; late != want {
			t.Fatalf("tooLate(%v, %v) = %v", r, m, late)
		}
		err := deadlineError(r, m)
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("deadlineError(%v, %v) = %v, want DEADLINE_EXCEEDED", r, m, err)
		}
		var te *resilience.TimeoutError
		if !errors.As(err, &te) || te.After < 0 {
			t.Fatalf("deadlineError(%v, %v) = %v, want a TimeoutError with After >= 0", r, m, err)
		}
	})
}

package throttle_test

import (
	"errors"
	"fmt"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/throttle"
)

// A rejection says how likely it was: the caller can log it, or fall back
// differently when the throttle rejects almost everything.
func ExampleRejectedError() {
	t := throttle.New(throttle.Config{MinRequests: 10})
	for range 10 {
		p, _ := t.Allow()
		p.Done(throttle.Rejected)
	}
	var rejection error
	for rejection == nil {
		p, err := t.Allow() // the first draw against the odds passes
		if err != nil {
			rejection = err
			break
		}
		p.Done(throttle.Rejected)
	}
	re, _ := errors.AsType[*throttle.RejectedError](rejection)
	fmt.Println(errors.Is(rejection, resilience.ErrThrottled), re.Probability > 0.9)
	// Output:
	// true true
}

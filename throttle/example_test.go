package throttle_test

import (
	"context"
	"errors"
	"fmt"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/throttle"
)

var errOverloaded = errors.New("overloaded")

// A backend that refuses every request: after MinRequests refusals the
// throttle starts rejecting requests itself, letting one a second through.
func Example() {
	t := throttle.New(throttle.Config{MinRequests: 10})
	backend := func(context.Context) error { return errOverloaded }

	sent, throttled := 0, 0
	for range 1000 {
		err := t.Execute(context.Background(), func(ctx context.Context) error {
			sent++
			return backend(ctx)
		})
		if errors.Is(err, resilience.ErrThrottled) {
			throttled++
		}
	}
	fmt.Println("most requests throttled:", throttled > 900)
	fmt.Println("sent and throttled add up:", sent+throttled == 1000)
	// Output:
	// most requests throttled: true
	// sent and throttled add up: true
}

// The two-step form, for code that cannot wrap the request in a function,
// such as an interceptor.
func ExampleThrottle_Allow() {
	t := throttle.New(throttle.Config{})
	p, err := t.Allow()
	if err != nil {
		fmt.Println("rejected locally:", err)
		return
	}
	// ... send the request; the backend accepted it:
	p.Done(throttle.Accepted)
	m := t.Metrics()
	fmt.Println(m.Requests, m.Accepts, m.Probability)
	// Output: 1 1 0
}

// A registry keeps one throttle per backend, bounded in number.
func ExampleRegistry() {
	r := throttle.NewRegistry(throttle.RegistryConfig{
		Throttle: throttle.Config{K: 1.5},
		MaxKeys:  100,
		OnOverflow: func(name string) {
			fmt.Println("sharing the overflow throttle:", name)
		},
	})
	t := r.Get("payments:443")
	fmt.Println(t == r.Get("payments:443"), r.Len())
	// Output: true 1
}

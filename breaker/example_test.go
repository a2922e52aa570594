package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
)

// A circuit breaker: configure, check the state, execute
// with protection and fail fast on an open circuit.
func Example() {
	b := breaker.New(breaker.Config{
		FailureThreshold: 5,                // failures before opening
		Timeout:          60 * time.Second, // wait before retry
		SuccessThreshold: 2,                // successes to close
	})
	ctx := context.Background()
	externalAPICall := func(ctx context.Context) error { return errors.New("connection refused") }

	printState := func() {
		switch b.State() {
		case breaker.Closed:
			fmt.Println("Normal operation")
		case breaker.Open:
			fmt.Println("Circuit is open!")
		case breaker.HalfOpen:
			fmt.Println("Testing recovery")
		}
	}

	printState()
	for range 5 {
		_ = b.Execute(ctx, externalAPICall)
	}
	printState()

	err := b.Execute(ctx, externalAPICall)
	switch {
	case err == nil:
		fmt.Println("process data")
	case errors.Is(err, resilience.ErrCircuitOpen):
		// Circuit is open, fail fast
		fmt.Println("return cached data:", err)
	default:
		fmt.Println("handle error:", err)
	}
	// Output:
	// Normal operation
	// Circuit is open!
	// return cached data: breaker: circuit open
}

// Streams and interceptors use the two-step form: Allow before the call,
// record the outcome on the permit when it is over.
func ExampleBreaker_Allow() {
	b := breaker.New(breaker.Config{})
	permit, err := b.Allow()
	if err != nil {
		fmt.Println("rejected:", err)
		return
	}
	streamErr := context.Canceled // the caller went away mid-stream
	permit.Record(streamErr)      // classified as Ignored: says nothing about the service
	m := b.Metrics()
	fmt.Println(m.State, m.Calls, m.Ignored, m.Failures)
	// Output: closed 1 1 0
}

// A caller that reads the clock at the end of each call anyway (for its own
// latency metric, say) hands that reading to the breaker with DoneAt, which
// then reads no clock of its own to time the call.
func ExamplePermit_DoneAt() {
	b := breaker.New(breaker.Config{SlowCallDuration: time.Second})
	permit, err := b.Allow()
	if err != nil {
		fmt.Println("rejected:", err)
		return
	}
	start := time.Now()
	// ... the call ...
	end := start.Add(1500 * time.Millisecond) // as if the call took 1.5s: end := time.Now()
	permit.DoneAt(breaker.Success, end)
	m := b.Metrics()
	fmt.Println(m.Successes, m.SlowCalls)
	// Output: 1 1
}

// A sliding window opens the breaker on a failure rate rather than on a run
// of consecutive failures.
func ExampleConfig_slidingWindow() {
	b := breaker.New(breaker.Config{
		WindowSize:           10, // the last 10 calls
		MinimumCalls:         4,  // judge no rate before 4 calls
		FailureRateThreshold: 50, // percent
		OnStateChange: func(c breaker.StateChange) {
			fmt.Printf("%v -> %v (%v)\n", c.From, c.To, c.Reason)
		},
	})
	for _, failed := range []bool{false, true, false, true} {
		p, _ := b.Allow()
		if failed {
			p.Done(breaker.Failure)
		} else {
			p.Done(breaker.Success)
		}
	}
	// Output: closed -> open (failure-rate)
}

// The open duration grows while probes keep failing, up to a cap, and
// starts over once the breaker closed.
func ExampleExponentialOpenDuration() {
	openFor := breaker.ExponentialOpenDuration(time.Second, 30*time.Second, 2)
	for opens := 1; opens <= 6; opens++ {
		fmt.Print(openFor(opens), " ")
	}
	fmt.Println()
	_ = breaker.New(breaker.Config{OpenDurationFunc: openFor})
	// Output: 1s 2s 4s 8s 16s 30s
}

// A registry keeps one breaker per name, for example per gRPC method, with
// a bound on how many. When it is full, an idle closed breaker makes room
// for a new name; an open one never does, and a name that finds no room
// shares the overflow breaker.
func ExampleRegistry() {
	r := breaker.NewRegistry(breaker.RegistryConfig{
		Breaker: breaker.Config{
			FailureThreshold: 1,
			OnStateChange: func(c breaker.StateChange) {
				fmt.Printf("%s: %v -> %v\n", c.Name, c.From, c.To)
			},
		},
		MaxKeys:    2,
		OnEvict:    func(name string) { fmt.Println("evicted", name) },
		OnOverflow: func(name string) { fmt.Println("overflow", name) },
	})
	ctx := context.Background()
	users := r.Get("/users.Users/Get")
	_ = users.Execute(ctx, func(context.Context) error { return errors.New("unavailable") })
	_ = r.Get("/orders.Orders/List")
	_ = r.Get("/billing.Billing/Charge") // the idle orders breaker makes room
	r.Get("/billing.Billing/Charge").ForceOpen()
	b := r.Get("/audit.Audit/Log") // users is open, billing forced open: no room
	fmt.Println(b == r.Overflow(), b.Metrics().Name)
	for name, b := range r.All() {
		fmt.Println(name, b.State())
	}
	// Output:
	// /users.Users/Get: closed -> open
	// evicted /orders.Orders/List
	// /billing.Billing/Charge: closed -> open
	// overflow /audit.Audit/Log
	// true (overflow)
	// /billing.Billing/Charge open
	// /users.Users/Get open
}

// Isolate a dependency by hand, then hand control back.
func ExampleBreaker_ForceOpen() {
	b := breaker.New(breaker.Config{Name: "payments"})
	b.ForceOpen()
	err := b.Execute(context.Background(), func(context.Context) error { return nil })
	fmt.Println(err, b.Mode())
	b.Reset()
	fmt.Println(b.State(), b.Mode())
	// Output:
	// breaker "payments": circuit forced open forced-open
	// closed auto
}

// Validate names every field New would replace by its default, each as a
// *resilience.FieldError.
func ExampleConfig_Validate() {
	err := breaker.Config{FailureThreshold: -1, FailureRateThreshold: 150}.Validate()
	for _, fe := range resilience.FieldErrors(err) {
		fmt.Printf("%s = %v: %s\n", fe.Field, fe.Value, fe.Reason)
	}
	// Output:
	// FailureThreshold = -1: must not be negative
	// FailureRateThreshold = 150: must be a percentage between 0 and 100
}

// Metrics is a snapshot of counts and rates, for dashboards and tests.
func ExampleBreaker_Metrics() {
	b := breaker.New(breaker.Config{FailureThreshold: 3})
	ctx := context.Background()
	_ = b.Execute(ctx, func(context.Context) error { return nil })
	_ = b.Execute(ctx, func(context.Context) error { return errors.New("boom") })
	m := b.Metrics()
	fmt.Printf("state=%v calls=%d failures=%d consecutive=%d rejections=%d\n",
		m.State, m.Calls, m.Failures, m.ConsecutiveFailures, m.Rejections)
	// Output: state=closed calls=2 failures=1 consecutive=1 rejections=0
}

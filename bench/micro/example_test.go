package micro

import "fmt"

// Each library's breaker runs the operation BenchmarkBreakerAllowRecord
// measures: a permit asked for and a success recorded, on a closed breaker.
func Example_breakers() {
	for _, o := range breakers() {
		fmt.Println(o.lib, o.run())
	}
	// Output:
	// ours <nil>
	// sony-gobreaker <nil>
	// failsafe-go <nil>
	// eapache <nil>
	// hystrix-go <nil>
}

// The bench measures the same retry success path in each library that has
// one; a plain call is the baseline.
func Example_retries() {
	for _, o := range retries() {
		fmt.Println(o.lib, o.run())
	}
	// Output:
	// plain-call <nil>
	// ours <nil>
	// cenkalti-backoff <nil>
	// failsafe-go <nil>
	// eapache <nil>
}

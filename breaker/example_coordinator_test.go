package breaker_test

import (
	"fmt"
	"sync/atomic"

	"github.com/engineeringlabs/grpc-resilience/breaker"
)

// Something outside the breaker knows the service is failing (another
// process saw it, a health check, an operator): Trip opens the breaker as
// its own threshold would have.
func ExampleBreaker_Trip() {
	b := breaker.New(breaker.Config{
		OnStateChange: func(c breaker.StateChange) {
			fmt.Printf("%v -> %v (%v)\n", c.From, c.To, c.Reason)
		},
	})
	b.Trip()
	b.Trip() // already open: nothing
	fmt.Println(b.State())
	// Output:
	// closed -> open (tripped)
	// open
}

// A coordinator hears every state change and decides when an open breaker
// may half-open: here, only while a flag allows probing (in a fleet, while
// this process holds the right to probe).
func ExampleBreaker_Coordinate() {
	var mayProbe atomic.Bool
	b := breaker.New(breaker.Config{FailureThreshold: 1, Timeout: 1}) // open for 1ns
	detach := b.Coordinate(breaker.Coordinator{
		OnStateChange: func(c breaker.StateChange) {
			// Quick, never blocking: hand the change to another
			// goroutine when it needs network I/O.
			fmt.Println("coordinator heard:", c.To)
		},
		AllowHalfOpen: mayProbe.Load,
	})
	defer detach()

	p, _ := b.Allow()
	p.Done(breaker.Failure)
	fmt.Println("gate shut:", b.State())
	mayProbe.Store(true)
	fmt.Println("gate open:", b.State())
	// Output:
	// coordinator heard: open
	// gate shut: open
	// coordinator heard: half-open
	// gate open: half-open
}

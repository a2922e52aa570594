// Package resilience is the shared vocabulary of grpc-resilience: the errors
// every pattern returns and the timeout pattern, [WithTimeout].
//
// The patterns themselves live in sub-packages that know nothing of gRPC:
// retry (backoff, jitter, budgets), breaker (circuit breaker) and bulkhead
// (bounded concurrency). The interceptors package turns them into gRPC client
// and server interceptors.
//
// Layer them with the timeout innermost, the circuit breaker in the middle and
// retry outermost, so that each attempt has its own timeout, an open circuit
// fails fast without consuming an attempt's time, and retry sees every
// outcome.
//
// Every error in this package can be matched with [errors.Is] or [errors.As]
// after any amount of wrapping.
package resilience

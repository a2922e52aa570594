// Package interceptors is the gRPC side of grpc-resilience: it turns gRPC
// status codes into outcomes for the retry, breaker and bulkhead engines and
// applies retry, hedging, circuit breaking, bulkheads, timeouts and fallback
// to unary client calls.
//
// # One pipeline
//
// Most users build one [Client] from a [Policy] and install its interceptor:
//
//	c, err := interceptors.NewClient(interceptors.Policy{
//		Retry:          &interceptors.RetryPolicy{MaxAttempts: 4, AttemptTimeout: time.Second},
//		Breaker:        &interceptors.BreakerPolicy{},
//		DefaultTimeout: 5 * time.Second,
//	}, interceptors.WithMethodPolicy("/pkg.Svc/Get", getPolicy))
//	conn, err := grpc.NewClient(target,
//		grpc.WithDisableRetry(), // see "Stacking" below
//		grpc.WithChainUnaryInterceptor(c.UnaryClientInterceptor()))
//
// A policy applies per method ("/pkg.Svc/Method"), per service ("pkg.Svc")
// or by default; the most specific one replaces the others as a whole.
//
// # Order of the patterns
//
// Per call, outermost first:
//
//	default timeout   a deadline for calls that have none, covering everything
//	fallback          sees the final error, inside that deadline
//	hedging or retry  alternatives per method, as in gRFC A6
//	circuit breaker   one attempt = one permit; a rejection never reaches the network
//	bulkhead          bounds the attempts in flight on the client
//	attempt timeout   per attempt, inside the caller's deadline
//	the call
//
// Retries and hedges therefore pass through the breaker and the bulkhead one
// by one: an open circuit stops a retry loop at once (its rejection is not
// retried), and a bulkhead counts attempts, not calls.
//
// # gRPC semantics
//
// The classification table of package classify decides which codes are
// retried and how they count for the breaker; RetryPolicy.Table and
// BreakerPolicy.Table replace it. Whether a method is idempotent comes from
// its proto descriptor (idempotency_level) unless Policy.Idempotent or the
// per-call [WithIdempotent] says otherwise; it matters for
// DEADLINE_EXCEEDED after a per-attempt timeout, for rules such as
// RetryIfIdempotent, and for hedging, which applies to idempotent methods
// only.
//
// Every attempt reads the server's grpc-retry-pushback-ms trailer and
// google.rpc.RetryInfo: a non-negative delay replaces the backoff's, a
// negative or malformed one forbids further attempts. Attempts after the
// first carry the grpc-previous-rpc-attempts header. The caller's deadline
// bounds the whole call: no wait ends past it and no attempt starts after
// it; a per-attempt timeout is the inner one, and only its
// DEADLINE_EXCEEDED may be retried.
//
// # Errors
//
// Every error the pipeline returns is a gRPC status: status.FromError
// works. Errors the pipeline makes itself are [StatusError]s that also
// match the root package's vocabulary with errors.Is and errors.As:
//
//	open circuit         UNAVAILABLE         errors.Is(err, resilience.ErrCircuitOpen)
//	full bulkhead        RESOURCE_EXHAUSTED  errors.Is(err, resilience.ErrBulkheadFull)
//	attempt/default timeout  DEADLINE_EXCEEDED  errors.As(err, new(*resilience.TimeoutError))
//	retries exhausted    last attempt's status  errors.As(err, new(*resilience.RetriesExhaustedError))
//
// A full bulkhead is RESOURCE_EXHAUSTED, the code gRPC uses for a local
// resource that ran out: it is not retried (no pushback) and it does not
// count for the breaker, since no server was asked.
//
// # Per-call options
//
// [WithMaxAttempts], [DisableRetry], [WithAttemptTimeout] and
// [WithIdempotent] are grpc.CallOptions that change one call; they pass
// through to the invoker, where they do nothing.
//
// # Composing by hand
//
// [UnaryClientRetry], [UnaryClientHedge], [UnaryClientBreaker],
// [UnaryClientBulkhead], [UnaryClientFallback] and [UnaryClientTimeout]
// apply one pattern each, built from the same parts as the pipeline. Use
// go-grpc-middleware v2's selector.UnaryClientInterceptor to apply one to
// some methods only.
//
// # Stacking with gRPC's own retries
//
// gRPC retries by itself when the service config has a retryPolicy or
// hedgingPolicy, and transparently retries attempts that never left the
// client. Interceptor retries run above gRPC's: every attempt of this
// package is a whole RPC to gRPC, which may retry it again, so the attempts
// multiply (4 here times 3 there makes up to 12 attempts on the server),
// gRPC's retries bypass this package's breaker and budget, and both add a
// grpc-previous-rpc-attempts header. Normally dial with
// grpc.WithDisableRetry() and let this package retry. To keep gRPC's
// retries instead, configure no Retry or Hedging here and keep the breaker,
// bulkhead, timeouts and fallback, which then see each call as one attempt.
//
// # Telemetry
//
// An [Observer] (WithObserver) hears of every call, attempt and event, with
// the context of each so that spans can be put in it and trace context
// injected per attempt. Without one, the hooks cost a nil check.
//
// # Cost
//
// A call whose first attempt succeeds allocates nothing in the pipeline
// besides the contexts its timeouts need (the default timeout when the
// caller set no deadline, the per-attempt timeout when configured). Hedged
// calls allocate per call: a goroutine, a result channel and a reply
// message per extra attempt.
package interceptors

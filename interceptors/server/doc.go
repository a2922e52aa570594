// Package server holds the server-side resilience interceptors of
// grpc-resilience: deadline enforcement, a default deadline, rate limits
// (quotas of calls per second per caller key), a bulkhead that sheds load
// per method or per caller key (optionally with an adaptive limit), and a
// fault-injection (chaos) interceptor for tests and drills.
//
// A [Server] built from a [Config] holds them all:
//
//	rs, err := server.New(server.Config{
//		Deadline: server.DeadlineConfig{MinRemaining: 5 * time.Millisecond},
//		Bulkhead: server.BulkheadConfig{Limit: 64, PartitionBy: server.PartitionByMethod},
//	})
//	if err != nil { ... } // every bad field, as *resilience.FieldError values
//	s := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(rs.UnaryServerInterceptor()),
//		grpc.ChainStreamInterceptor(rs.StreamServerInterceptor()),
//	)
//
// Every zero field of Config has a useful default: Config{} rejects only
// calls whose deadline has passed. A stage whose Config is zero costs next
// to nothing, so there is one way to build the pipeline, whichever stages
// a server uses.
//
// The Server applies its stages in this order, outermost first:
//
//  1. Exemption: health checks (grpc.health.v1.Health), server reflection
//     (v1 and v1alpha) and the methods and services of [Config.Exempt] go
//     straight to the handler. They are never shed, never rejected for
//     their deadline and never faulted, so that a load balancer still sees
//     a healthy, if busy, server.
//  2. Deadline enforcement: a call whose deadline has passed, or leaves less
//     than [DeadlineConfig.MinRemaining], is rejected with DEADLINE_EXCEEDED
//     before it takes a bulkhead slot or runs any code.
//  3. Default deadline: a call without a deadline gets
//     [DeadlineConfig.Default], so that a queued or slow call cannot hold a
//     slot forever.
//  4. Rate limit: a call over its key's quota ([RateLimitConfig]) is
//     rejected at once with RESOURCE_EXHAUSTED, a google.rpc.RetryInfo
//     detail carrying exactly the time until the key's next permit, the
//     same delay in a grpc-retry-pushback-ms trailer, and a
//     google.rpc.QuotaFailure detail naming the quota (never the caller's
//     key). It comes before the bulkhead so that a caller over its quota
//     never takes a slot from callers within theirs.
//  5. Bulkhead: at most [BulkheadConfig.Limit] calls per partition run at
//     once; the next one is shed at once with RESOURCE_EXHAUSTED, a
//     google.rpc.RetryInfo detail and a grpc-retry-pushback-ms trailer.
//  6. Fault injection ([Chaos]): errors, latency and stream aborts as the
//     current [FaultConfig] says. It runs inside the bulkhead on purpose:
//     injected latency occupies slots exactly as a slow dependency would,
//     so that a drill that slows the server down shows shedding, and
//     injected UNAVAILABLE or DEADLINE_EXCEEDED errors reach the adaptive
//     limit as drops, as real ones would. Chaos outside the bulkhead would
//     slow callers down without loading the server, which tests nothing.
//  7. The handler.
//
// [Server.Chaos] changes the fault schedule at run time, and
// [Server.Bulkhead] and [Server.RateLimit] expose the bulkhead's partitions
// and the rate limit's counters for metrics.
//
// Every error these interceptors return is a gRPC status ([status.FromError]
// works) that also unwraps to the vocabulary of the resilience package: a
// shed call matches [resilience.ErrBulkheadFull], a rate-limited call
// [resilience.ErrRateLimited] (a *[resilience.RateLimitedError]), a deadline rejection
// matches *[resilience.TimeoutError] and [context.DeadlineExceeded], an
// injected fault matches [ErrFaultInjected]. The client sees only the status.
//
// An [Observer] hears about every shed call, rate-limited call, deadline
// rejection, default deadline and injected fault, with the call's context,
// so that telemetry can annotate the server span, and about every bulkhead
// partition or rate-limit key evicted or refused because
// [BulkheadConfig.MaxPartitions] or [RateLimitConfig.MaxPartitions] was
// reached.
package server

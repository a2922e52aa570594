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
// reached. [Server.Subscribe] adds observers to a running server, such as
// a console, without changing its configuration; [Server.Snapshot] returns
// the state of every stage as plain data.
//
// # CPU-aware shedding
//
// With [bulkhead.NewCPU] as the [BulkheadConfig].Adaptive strategy, the
// bulkhead admits up to Limit calls while the CPUs the process may use have
// headroom, and, once they are more than 80% busy (by default), only as
// many as the server has lately shown it completes without queueing: its
// best throughput over the last five seconds times its best latency. Shed
// calls go out like every other bulkhead rejection, with
// RESOURCE_EXHAUSTED, RetryInfo and the pushback trailer. The CPU usage is
// read from the process's cgroup (v2, then v1) or /proc/stat; where none
// can be read, as off Linux, the strategy never sheds on CPU. With
// partitions, each has its own throughput and latency and all share the
// one CPU reading. docs/server.md describes it at length.
//
// # Caller keys
//
// A partition key taken from a header (an API key, a tenant's token), a
// peer address (which identifies a person) or a KeyFunc may be a secret.
// Wherever such a key leaves the server for display, it is shown as a
// keyed hash: "k:" and the first 12 hexadecimal digits of its
// HMAC-SHA256 under [Config.KeyHashKey], or under a random key of the
// process's own when that is empty, such as "k:3f2a9c0e71b4". That form
// is what [Event].Key carries for the bulkhead's events (and so what
// telemetry puts in span events, metric attributes and log records), and
// what [Server.Snapshot] shows for bulkhead partitions and rate-limit keys;
// [Bulkhead.DisplayKey] and [RateLimit.DisplayKey] give it for any key.
// The same caller has the same display form for as long as the hash key
// stays the same, so a dashboard can follow one caller without learning
// who it is; give the processes of a fleet one KeyHashKey so that they
// agree. Rate-limit events and the QuotaFailure sent to a limited caller
// name the quota's class, never a key.
//
// Method names (PartitionByMethod) are not secrets and are shown as they
// are. [BulkheadConfig.ShowKeys] and [RateLimitConfig.ShowKeys] show the
// keys of one stage as they are, for keys known to be harmless, such as
// tenant names.
package server

// Package telemetry turns what the grpc-resilience pipelines do into
// OpenTelemetry spans and metrics and log/slog records: one span per logical
// client call, one child span per attempt (retry or hedge) whose trace
// context is injected into that attempt's metadata, events for rejections
// and retries, metrics of attempts, retries, rejections, rate limits,
// breakers and bulkheads, and logs at levels that keep a healthy system quiet.
//
//	tel, err := telemetry.New(telemetry.Config{}) // the otel globals, slog.Default()
//	client, err := interceptors.NewClient(interceptors.Config{Default: policy, Observer: tel.ClientObserver()})
//	conn, err := grpc.NewClient(target, grpc.WithDisableRetry(),
//		grpc.WithChainUnaryInterceptor(client.UnaryClientInterceptor()))
//
//	rs, err := server.New(server.Config{Observer: tel.ServerObserver(), ...})
//	s := grpc.NewServer(grpc.StatsHandler(otelgrpc.NewServerHandler()),
//		grpc.ChainUnaryInterceptor(rs.UnaryServerInterceptor()))
//
// # Providers
//
// Config.TracerProvider, MeterProvider and Logger default to
// otel.GetTracerProvider(), otel.GetMeterProvider() and slog.Default().
// Config.Propagator defaults to otel.GetTextMapPropagator() once the
// application has set a global propagator, and until then to W3C Trace
// Context and Baggage: the global propagator's own default injects nothing,
// which would leave every server span without its caller. A server extracts
// the context with its own propagator: give otelgrpc's server handler
// otelgrpc.WithPropagators(propagation.TraceContext{}) or set the global
// one.
//
// # Cost
//
// With no provider configured, telemetry costs next to nothing: no span is
// started while the global TracerProvider is unset (a provider set later
// is picked up on the next call) or when Config.TracerProvider is a
// trace/noop provider, and a call's timing state is kept only when a span
// or a duration histogram needs it. When both Config.TracerProvider and
// Config.MeterProvider are no-op providers, the client hooks return at
// once and only log.
//
// With the SDK, an unsampled call, the common case under a ratio sampler,
// still starts its call span and its attempt spans (the sampler decides
// each, and the attempt's trace context goes to the server with its
// sampled flag off, so that the server's sampler follows the client's)
// and records the five measurements of a call (attempts, call and attempt
// durations, and the attempt in flight, up and down). It adds no attribute
// building: attribute sets are built once per method, status code and
// outcome, in a cache of 1024 methods (CacheMethods). The SDK itself
// allocates the non-recording span and the context that carries it, and
// normalises and hashes the attribute set of every measurement. An
// unsampled call makes 11 allocations beyond the pipeline's: per span, the
// SDK's span, its context and this package's state; for the attempt, the
// traceparent string and gRPC's outgoing metadata (4).
//
// BenchmarkTelemetry here and in the bench module measure the full unary
// pipeline (retry with its default budget, breaker and client bulkhead)
// over an in-process invoker. On this project's loaded 2-core machine,
// with the CPU time of a fixed number of calls as the measure (wall time
// there varies 2-4x between runs): telemetry on no-op providers allocates
// nothing and its hooks do not show in a CPU profile; the SDK with
// ParentBased(TraceIDRatioBased(0.01)) and a manual metric reader costs
// about 5µs of CPU per call, some 13 times the no-op pipeline's, of which
// the two unsampled spans take about a fifth, the five SDK measurements a
// quarter, the injection of the trace context an eighth, and allocation
// and garbage collection most of the rest; sampling every call costs about
// 17µs. A real unary call over loopback costs about 100µs of CPU, client
// and server together, so there the SDK at 1% adds about 5%, within the
// noise of BenchmarkTelemetryLoopback.
//
// # Spans
//
// The client observer starts, for each logical call, a span named as gRFC
// A72 names it, "Sent.pkg.Service.Method" (the full method name with its
// slashes turned into dots), of kind client, as a child of the span in the
// caller's context. Each attempt that reaches the invoker gets a child span
// of it, "Attempt.pkg.Service.Method", of kind client, and the attempt's
// trace context is injected into the attempt's outgoing metadata with the
// propagator (into a copy of it, replacing the propagator's keys, as
// otelgrpc does), so that the server's span nests under its attempt.
// Attempts that run concurrently (hedges) are siblings under the call.
// A span whose call or attempt fails gets the error status, described by
// the gRPC code and message.
//
// Attributes of the call span:
//
//	rpc.system                 "grpc"
//	rpc.service, rpc.method    "pkg.Service", "Method"
//	rpc.grpc.status_code       the call's final code (int), set at its end
//	resilience.pattern         "single", "retry" or "hedging"
//	resilience.max_attempts    the most attempts allowed, the first included
//	resilience.idempotent      whether the call counted as idempotent
//	resilience.attempts        attempts that reached the invoker, set at the end
//	resilience.fallback        whether the fallback answered, set at the end
//	resilience.outcome         "ok", "error", "retries_exhausted" or "fallback"
//
// Attributes of an attempt span:
//
//	rpc.system, rpc.service, rpc.method
//	rpc.grpc.status_code                 the attempt's code (int)
//	resilience.attempt                   its number, from 1
//	resilience.attempt.delay_ms          the wait before it: backoff or pushback,
//	                                     for a hedge the time since the previous attempt
//	resilience.attempt.hedge             an extra attempt of a hedged call
//	resilience.attempt.pushback_honoured the delay was the server's pushback
//	resilience.attempt.timeout_ms        its own timeout, when it has one
//	resilience.attempt.timed_out         it ran out of its own timeout
//	resilience.attempt.server_pushback_ms what the server's pushback or RetryInfo
//	                                     asked for after it; -1 means "do not retry"
//	resilience.breaker.state             the state that granted it: "closed",
//	                                     or "half-open" for a probe (with a breaker)
//	resilience.bulkhead.wait_ms          time it waited for a client bulkhead slot
//	                                     (with a bulkhead)
//
// Events on the call span, each with resilience.attempt, and resilience.error
// when an error caused it:
//
//	resilience.retry               a retry was decided (rpc.grpc.status_code,
//	                               resilience.attempt.delay_ms)
//	resilience.retries_exhausted   the last allowed attempt failed retryably
//	resilience.retry.deadline      the retry's wait would pass the call's deadline
//	resilience.retry.budget_denied the retry budget refused a retry or hedge
//	resilience.breaker.rejected    the breaker rejected an attempt
//	                               (resilience.breaker.state); error status
//	resilience.bulkhead.rejected   the client bulkhead rejected an attempt; error status
//	resilience.rate_limited        the client's rate limit refused an attempt
//	                               (resilience.rate_limit.retry_after_ms); error status
//	resilience.throttled           the client's adaptive throttle rejected an attempt
//	                               (resilience.throttle.probability, the rejection
//	                               probability it drew against); error status
//	resilience.hedge               a hedged attempt starts
//	resilience.fallback            the fallback was asked to answer
//
// The server observer adds events to the span it finds in the call's
// context, normally otelgrpc's server span; without a recording span there
// it adds none (it does not start spans of its own):
//
//	resilience.shed              the bulkhead shed the call (rpc.grpc.status_code,
//	                             resilience.bulkhead.key: the partition's key as the
//	                             server shows it, a keyed hash such as "k:3f2a9c0e71b4"
//	                             unless BulkheadConfig.ShowKeys; resilience.attempt.server_pushback_ms)
//	resilience.rate_limited      the rate limit rejected the call (rpc.grpc.status_code,
//	                             resilience.rate_limit.partition: the quota's class,
//	                             such as "header:x-api-key", never the caller's key;
//	                             resilience.rate_limit.retry_after_ms)
//	resilience.rate_limit.store_failed
//	                             the rate limit's shared store could not decide and
//	                             the call was admitted (resilience.rate_limit.partition,
//	                             exception.message)
//	resilience.deadline.rejected rejected for its deadline
//	                             (resilience.deadline.remaining_ms)
//	resilience.deadline.default  the call got the default deadline
//	                             (resilience.attempt.timeout_ms)
//	resilience.fault             the chaos interceptor injected a fault
//	                             (resilience.fault.kind: "latency", "error" or "abort")
//
// # With and without otelgrpc
//
// Recommended set-up: on the client, this package's observer alone; on the
// server, otelgrpc's server stats handler (it makes the server span and
// extracts the trace context) and this package's server observer. The trace
// of a call retried twice is then
//
//	Sent.pkg.Service.Method             (client, call)
//	├── Attempt.pkg.Service.Method      (client, resilience.attempt=1)
//	│   └── pkg.Service/Method          (server, otelgrpc)
//	├── Attempt.pkg.Service.Method      (resilience.attempt=2)
//	│   └── pkg.Service/Method          (server)
//	└── Attempt.pkg.Service.Method      (resilience.attempt=3)
//	    └── pkg.Service/Method          (server)
//
// With otelgrpc's client stats handler installed as well
// (grpc.WithStatsHandler(otelgrpc.NewClientHandler())), gRPC calls it once
// per attempt, inside the attempt's context: its span, named
// "pkg.Service/Method", is a child of the attempt span, it injects its own span's context (replacing the one this
// package injected, so no header is sent twice) and the server span nests
// under it. There is still one call span; each attempt then has two client
// spans, ours with the resilience attributes and otelgrpc's with its
// message events. To keep otelgrpc's client metrics without its spans,
// give its client handler otelgrpc.WithTracerProvider(noop.NewTracerProvider()):
// its non-recording span carries our attempt's context, which it injects.
// The tests of this package run both set-ups over real servers.
//
// # Metrics
//
// Instruments are created once, in New, from the meter named ScopeName.
// Attribute sets are built once per method and code, so that recording
// allocates nothing. rpc.* below stands for rpc.system, rpc.service and
// rpc.method.
//
//	name                                 instrument               unit       attributes
//	resilience.client.attempts           Int64Counter             {attempt}  rpc.*, rpc.grpc.status_code
//	resilience.client.retries            Int64Counter             {retry}    rpc.*, rpc.grpc.status_code (of the failed attempt)
//	resilience.client.hedges             Int64Counter             {hedge}    rpc.*
//	resilience.client.rejections         Int64Counter             {rejection} rpc.*, resilience.reason: breaker_open,
//	                                                                         breaker_half_open, bulkhead_full, retry_budget, retry_deadline
//	resilience.client.attempts.active    Int64UpDownCounter       {attempt}  rpc.*: attempts in flight
//	resilience.client.call.duration      Float64Histogram         s          rpc.*, rpc.grpc.status_code, resilience.outcome
//	resilience.client.attempt.duration   Float64Histogram         s          rpc.*, rpc.grpc.status_code
//	resilience.client.bulkhead.wait      Float64Histogram         s          rpc.*: an attempt's wait for a client bulkhead slot
//	resilience.breaker.state             Int64ObservableGauge     {state}    resilience.breaker.name: 0 closed, 1 open, 2 half-open
//	resilience.breaker.transitions       Int64Counter             {transition} resilience.breaker.name, .from, .to
//	resilience.bulkhead.in_flight        Int64ObservableGauge     {call}     resilience.bulkhead.name, resilience.bulkhead.key
//	resilience.bulkhead.limit            Int64ObservableGauge     {call}     resilience.bulkhead.name, resilience.bulkhead.key
//	resilience.bulkhead.waiting          Int64ObservableGauge     {call}     resilience.bulkhead.name, resilience.bulkhead.key
//	                                                                         (the key hashed, as below)
//	resilience.server.rejections         Int64Counter             {call}     rpc.*, resilience.reason: shed, deadline
//	resilience.server.faults             Int64Counter             {fault}    rpc.*, resilience.fault.kind
//	resilience.server.default_deadlines  Int64Counter             {call}     rpc.*
//	resilience.cache.evictions           Int64Counter             {entry}    resilience.cache: an idle entry dropped to make room
//	resilience.cache.overflows           Int64Counter             {key}      resilience.cache: a new key sent to the shared overflow entry
//	resilience.client.rate_limited       Int64Counter             {attempt}  rpc.*: attempts the client's rate limit refused
//	resilience.client.throttled          Int64Counter             {attempt}  rpc.*: attempts the client's adaptive throttle rejected
//	resilience.server.rate_limited       Int64Counter             {call}     rpc.*, resilience.rate_limit.partition (the quota's class)
//	resilience.server.rate_limit.store_failures
//	                                     Int64Counter             {call}     rpc.*, resilience.rate_limit.partition: calls admitted because RateLimitConfig.Store failed
//	resilience.rate_limit.admitted       Int64ObservableCounter   {call}     resilience.rate_limit.name
//	resilience.rate_limit.limited        Int64ObservableCounter   {call}     resilience.rate_limit.name
//	resilience.rate_limit.keys           Int64ObservableGauge     {key}      resilience.rate_limit.name: keys with a limiter of their own
//
// The breaker gauge reports the breakers that changed state at least once
// (a breaker starts closed and the observer hears of transitions only).
// The bulkhead gauges report the bulkheads handed to ObserveBulkhead,
// ObservePartitioned or ObserveServer. Their resilience.bulkhead.key, like
// the key of a server's shed events and cache log records, is never a
// caller's key as it came: it is a keyed hash such as "k:3f2a9c0e71b4"
// (see "Caller keys" in the server package's documentation), unless the
// server's BulkheadConfig.ShowKeys says otherwise or the keys are method
// names (PartitionByMethod), which ObserveServer shows as they are. The
// client pipeline does not
// expose its bulkheads, so on the client resilience.client.attempts.active
// (equal to a per-method bulkhead's in-flight count) and
// resilience.client.bulkhead.wait stand in, and the client bulkhead's limit
// is not reported.
//
// The rate-limit instruments report the rate limits handed to
// ObserveRateLimit, such as a server pipeline's server.Server.RateLimit()
// or a *ratelimit.Keyed, in totals over every key: no rate-limit attribute
// names a caller's key, which may be a secret, and the quota class keeps
// the cardinality to one value per quota.
//
// The cache counters cover the bounded caches of the client, with
// resilience.cache set to interceptors.Event.Cache ("state", "breaker",
// "throttle", "bulkhead", "ratelimit", "budget"), the keyed partitions of a server bulkhead,
// with resilience.cache "server_bulkhead" (CacheServerBulkhead), and the
// keys of a server rate limit, "server_rate_limit" (CacheServerRateLimit),
// whose log records name the quota's class instead of the key. The
// evictions counter also counts the methods whose attribute sets this
// package dropped to stay within its own cap, with resilience.cache
// "telemetry_methods" (CacheMethods); that cache never overflows.
//
// # Logs
//
// Records go to Config.Logger with the call's context (so a handler can add
// its trace id) and the attributes method, attempt, code, error and delay
// as they apply (cache and key, or target and method, for the bounded
// caches). The levels keep a healthy system quiet at Info:
//
//	Debug  an attempt failed; a retry or hedge was decided; a client breaker,
//	       throttle, bulkhead or rate limit rejected an attempt (each rejection is counted,
//	       and the breaker's opening is a warning); every server event: shed,
//	       rate limited, deadline rejected, default deadline, fault injected; a bounded cache evicted
//	       an idle entry
//	Info   a retry skipped for the call's deadline; a fallback answered; a
//	       breaker half-opened or closed
//	Warn   a call failed after its last allowed attempt; a breaker opened; the
//	       retry budget denied a retry; a full bounded cache sent a new key to
//	       its overflow entry (at most once per OverflowLogInterval and cache,
//	       with the number of overflows the record stands for)
//
// Nothing is logged at Error: the caller receives the error and decides.
package telemetry

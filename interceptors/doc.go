// Package interceptors is the gRPC side of grpc-resilience: it turns gRPC
// status codes into outcomes for the retry, breaker and bulkhead engines and
// applies retry, hedging, circuit breaking, adaptive throttling, rate
// limits, bulkheads, timeouts and fallback to unary client calls, and
// retry, circuit breaking, adaptive throttling, rate limits, bulkheads and
// timeouts to client streams.
//
// # One pipeline
//
// Most users build one [Client] from a [Config] and install its
// interceptors:
//
//	c, err := interceptors.NewClient(interceptors.Config{
//		Default: interceptors.Policy{
//			Retry:          &interceptors.RetryPolicy{MaxAttempts: 4},
//			Breaker:        &interceptors.BreakerPolicy{},
//			DefaultTimeout: 5 * time.Second,
//		},
//		Methods: map[string]interceptors.Policy{"/pkg.Svc/Get": getPolicy},
//	})
//	conn, err := grpc.NewClient(target,
//		grpc.WithDisableRetry(), // see "Stacking" below
//		grpc.WithChainUnaryInterceptor(c.UnaryClientInterceptor()),
//		grpc.WithChainStreamInterceptor(c.StreamClientInterceptor()))
//
// A policy applies per method ("/pkg.Svc/Method"), per service ("pkg.Svc")
// or by default; the most specific one replaces the others as a whole. A
// policy that sets a single pattern gives that pattern alone; to apply a
// Client to some methods only, wrap its interceptor in go-grpc-middleware
// v2's selector.UnaryClientInterceptor.
//
// Configuration and events follow the module's rules (CONTRIBUTING.md):
// plain Config and Policy structs whose zero fields have useful defaults,
// validated all at once into *resilience.FieldError values, and an
// [Observer] of optional On* hooks.
//
// # Order of the patterns
//
// Per call, outermost first:
//
//	default timeout   a deadline for calls that have none, covering everything
//	fallback          sees the final error, inside that deadline
//	hedging or retry  alternatives per method, as in gRFC A6
//	circuit breaker   one attempt = one permit; a rejection never reaches the network
//	throttle          adaptive throttling: rejects attempts locally while the
//	                  server refuses too many (ThrottlePolicy)
//	rate limit        bounds the rate of attempts, failing fast or waiting within the deadline
//	bulkhead          bounds the attempts in flight on the client
//	attempt timeout   per attempt, inside the caller's deadline
//	the call
//
// Retries and hedges therefore pass through the breaker, the throttle, the
// rate limit and the bulkhead one by one: an open circuit or a throttled
// attempt stops a retry loop at once (neither rejection is retried), and a
// throttle, rate limit or bulkhead counts attempts, not calls.
//
// A policy may set a breaker, a throttle or both. The breaker comes first:
// it decides on its own about a server that is plainly down, and an
// attempt it rejects never reaches the throttle, so the throttle's window
// holds only attempts that could have been sent. A throttled attempt gives
// its breaker permit back unused (it never counts for the breaker), and an
// attempt that the rate limit or the bulkhead refuses, or whose caller
// gave up, counts for neither. Both read the breaker column of the
// classification table, by default the same table (ThrottlePolicy.Table,
// else BreakerPolicy.Table): a code counted as a failure is a refusal for
// the throttle, a code the table ignores does not count, and any other
// answer of the server is an accept.
//
// # gRPC semantics
//
// The classification table of package classify decides which codes are
// retried and how they count for the breaker and the throttle (the table,
// with its reasons, is in that package's documentation);
// RetryPolicy.Table, BreakerPolicy.Table and ThrottlePolicy.Table replace
// it.
//
// Every attempt reads the server's grpc-retry-pushback-ms trailer and
// google.rpc.RetryInfo: a non-negative delay replaces the backoff's, a
// negative or malformed one forbids further attempts. Attempts after the
// first carry the grpc-previous-rpc-attempts header. The caller's deadline
// bounds the whole call: no wait ends past it and no attempt starts after
// it; a per-attempt timeout is the inner one, and only its
// DEADLINE_EXCEEDED may be retried.
//
// # Idempotency
//
// Whether a method may run twice comes from its proto descriptor
// (idempotency_level IDEMPOTENT or NO_SIDE_EFFECTS,
// [classify.IdempotentByDescriptor]) unless Policy.Idempotency or the
// per-call [WithIdempotency] says otherwise. It decides whether a
// per-attempt timeout's DEADLINE_EXCEEDED is retried, rules such as
// classify.RetryIfIdempotent, and hedging, which repeats only idempotent
// methods. [NewClient] refuses a Methods or Services policy that hedges, or
// retries with an AttemptTimeout, methods whose descriptors declare no
// idempotency, unless the policy says Idempotency: AlwaysIdempotent.
//
// # Errors
//
// Every error the pipeline returns is a gRPC status: status.FromError
// works. Errors the pipeline makes itself are [StatusError]s that also
// match the root package's vocabulary with errors.Is and errors.As:
//
//	open circuit             UNAVAILABLE            errors.Is(err, resilience.ErrCircuitOpen)
//	full bulkhead            RESOURCE_EXHAUSTED     errors.Is(err, resilience.ErrBulkheadFull)
//	over the rate limit      RESOURCE_EXHAUSTED     errors.As(err, new(*resilience.RateLimitedError))
//	attempt/default timeout  DEADLINE_EXCEEDED      errors.As(err, new(*resilience.TimeoutError))
//	retries exhausted        last attempt's status  errors.As(err, new(*resilience.RetriesExhaustedError))
//
// A full bulkhead or an attempt over the client's rate limit is
// RESOURCE_EXHAUSTED, the code gRPC uses for a local resource that ran
// out: it is not retried and it does not count for the breaker, since no
// server was asked.
//
// When a retry loop ends early, the call gets the error that ended it:
//
//   - the retry budget denies the retry: the failed attempt's own status,
//     as the server sent it (it does not match RetriesExhaustedError; the
//     Observer hears EventBudgetDenied);
//   - the circuit opens during the loop: the next attempt is rejected, and
//     the call gets that rejection, UNAVAILABLE matching
//     resilience.ErrCircuitOpen (rejections are never retried);
//   - the next wait would pass the deadline: the last attempt's status
//     (EventDeadline).
//
// # Retry budgets
//
// Unless a policy sets its own Budget (or [NoBudget]), every retry and
// every extra hedge draws on one budget per target, shared by every method
// calling that target: by default, retries may add 20% to the calls of
// the last 10 seconds, or 10 retries when that is more
// ([DefaultTargetBudget]; Config.TargetBudget changes it). During a total
// outage that caps what retries add to the server's load at a fifth of the
// calls, for any target with at least 5 calls a second.
//
// # Bounded state
//
// The client keeps state per target and method: the resolved policy with
// its own breaker, throttle and bulkhead (ScopeMethod), and per-target
// budgets and rate limiters; breakers, throttles and bulkheads shared by a
// service or target (ScopeService, ScopeTarget) live in registries of their
// own, looked up on every attempt. Each is a cache of at most Config.MaxKeys entries
// ([DefaultMaxKeys]). When one is full, a new key evicts an entry that has
// not been used for a while (second-chance order) or, when every entry the
// bounded scan examines was used recently, one of those that is not in
// use, and the Observer hears EventEvicted; a breaker that is open, half-open or forced, a throttle
// that is rejecting attempts, and a bulkhead with calls in flight or
// waiting, are protections in use and are never evicted, nor is the state
// that owns them. When every entry the scan examines is in use, the new key shares the
// policy's overflow breaker, throttle or bulkhead (EventOverflow): a flood of distinct method names or targets costs
// bounded memory and never runs a call without the protection its policy
// asks for.
//
// Looking up the state of a key takes no lock and allocates nothing, and
// building the state of a new key does work that does not grow with the
// number of keys the client holds: the caches are sharded, and an insert
// copies only the small shard of its key. A key's state holds the resolved policy, its
// retry engine, the breaker and bulkhead it owns (ScopeMethod) and its
// cache entry; its target's retry budget is shared by the target's
// methods. With the full pipeline (retry with the default per-target
// budget, a breaker and a bulkhead per method) a key costs about 1.7 KB of
// heap when the keys are methods of one target, and about 2 KB when
// every key is a target of its own, with a budget each; with retry alone,
// about 0.6 KB. These are the growth of the live heap, after a garbage
// collection, of a client filled with 10^5 keys (BenchmarkKeysMemory in the
// bench module measures the second case). The default MaxKeys thus bounds
// the state of a client to about 20 MB.
//
// # Per-call options
//
// [WithMaxAttempts], [DisableRetry], [WithAttemptTimeout] and
// [WithIdempotency] make a [CallOption], a grpc.CallOption that changes one
// call; it passes through to the invoker, where it does nothing.
//
// # Streams
//
// [Client.StreamClientInterceptor] applies the same policies to streams
// (server-, client- and bidi-streaming), resolved per method in the same
// way.
//
// Retry. A stream is retried until it is committed, as in gRFC A6 and
// gRPC's own retries. It commits when the first response message is handed
// to the application (RecvMsg returned a message), when Header returned
// headers, or when the messages sent so far no longer fit the replay
// buffer (RetryPolicy.StreamBufferLimit, by default 256 KiB of proto.Size;
// a message that is not a proto message commits at once, since it can be
// neither sized nor cloned). Before commit, a failed attempt (an error from
// RecvMsg, or io.EOF from SendMsg or missing headers from Header, whose
// status is then fetched from the attempt) is classified exactly as a
// unary attempt is: the same table, pushback, idempotency and per-call
// options, the same backoff, budget and deadline. A new attempt then opens
// with grpc-previous-rpc-attempts, the messages sent so far are replayed
// to it in order (clones taken at SendMsg, so the application may reuse and
// change its messages), and CloseSend is repeated if the application had
// called it. The application sees none of this: never a message of an
// abandoned attempt, never a duplicate. After commit, the stream is the
// committed attempt's: its errors reach the application as they are. A
// stream's retry errors match the vocabulary as unary ones do, for
// instance *resilience.RetriesExhaustedError.
//
// gRPC lets one goroutine send while another receives; a retry caused by
// either one replays under the stream's lock, and while a retry waits and
// opens the next attempt, sends wait for it, then go out after the replay,
// so no message is lost, reordered or sent twice to one attempt. A send that finds the attempt over while no goroutine
// receives fetches the attempt's status itself, so a client stream that
// fails early is retried at once rather than when the application closes
// it. That needs the method's response type from protoregistry (generated
// code registers it); for other methods the send buffers and the next
// RecvMsg retries.
//
// Every attempt has its own context, cancelled when the attempt is
// abandoned or the stream ends. The stream's Context is not an attempt's:
// it stays alive across retries and ends when the stream ends (RecvMsg
// returned an error or io.EOF, SendMsg failed with an error of gRPC's own,
// or the caller's context ended), so a caller that cancels instead of
// reading to the end leaks nothing. Unlike gRPC's own streams, calling
// Context does not commit the stream: retries go on. Its values are the
// caller's context's and, for keys that one lacks, those of the stream's
// latest attempt, so peer.FromContext reports the server of the attempt in
// use.
//
// Timeouts. Policy.DefaultTimeout bounds a whole stream that has no
// deadline, all attempts included. RetryPolicy.AttemptTimeout and
// [WithAttemptTimeout] do not apply to streams: a stream's life is
// open-ended, and a timer that cut committed streams short would turn
// long-lived streams into failures.
//
// Hedging does not apply to streams: a method whose policy hedges makes a
// single attempt per stream, with its breaker, bulkhead and default
// timeout.
//
// Breaker. Each attempt asks the breaker for a permit when it starts; a
// rejection of the first attempt fails the stream at once, without network,
// with UNAVAILABLE matching resilience.ErrCircuitOpen (a rejection of a
// later attempt ends the stream the same way). The outcome is the
// attempt's final status through BreakerPolicy.Table; a stream the caller
// cancels counts for nothing, and a stream's duration, for slow-call
// detection, is the time to its first response. A stream that runs until
// the caller's deadline ends with DEADLINE_EXCEEDED, a failure in the
// default table: give such methods a policy whose table ignores it.
//
// Bulkhead. A stream holds one slot of its bulkhead from its first attempt
// until it ends, whatever the number of its attempts.
//
// Telemetry. The observer hears of a stream as of a unary call:
// OnCallStart and OnCallEnd (with CallInfo.ClientStreams and ServerStreams
// set), an OnAttemptStart and OnAttemptEnd per attempt, and the same
// events.
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
// An [Observer] (Config.Observer) hears of every call, attempt and event,
// with the context of each so that spans can be put in it and trace context
// injected per attempt; package telemetry provides one. [Client.Subscribe]
// adds more observers to a running client, such as a console, and removes
// them. Without any, the hooks cost an atomic load and a nil check.
//
// [Client.Snapshot] returns the state of every method's breaker, bulkhead,
// rate limit and retry budget, and the policy in force, as plain data,
// without slowing calls down.
//
// # Cost
//
// A call whose first attempt succeeds allocates nothing in the pipeline
// besides the contexts its timeouts need (the default timeout when the
// caller set no deadline, the per-attempt timeout when configured). Hedged
// calls allocate per call: a goroutine, a result channel and a reply
// message per extra attempt. A stream allocates its state, its attempt's
// context and a clone of each message sent before commit (12 allocations
// for a server stream of one message, beside gRPC's own 169); a stream whose
// policy sets no pattern goes straight to gRPC.
package interceptors

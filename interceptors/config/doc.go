// Package config loads grpc-resilience policies from files, so that
// operators change them without recompiling: the client policy of each
// method, service or of every call (its rate limit and adaptive throttle
// included), the retry budget shared per target, and the server pipeline
// (its quotas of calls per caller and per method included). The schema is
// the versioned proto package grpcresilience.config.v1
// (proto/grpcresilience/config/v1/config.proto), written in its proto3
// JSON mapping or in YAML that converts to it.
//
// # Loading
//
// [Load] reads a file and detects its format; [Parse] takes bytes and a
// [Format]. Loading is strict: unknown fields, fields set twice, values of
// the wrong type and invalid values are errors, and one *[Error] reports
// every problem at once, each naming its field path (in the schema's
// snake_case names, whatever the file's spelling) and the bad value:
//
//	config: policies.yaml: 2 problems:
//		method_policies[2].retry.max_attempts: 0, must be at least 1
//		method_policies[2].retry.max_atempts: unknown field, did you mean "max_attempts"?
//
// Structural problems (unknown fields, wrong types) are reported first,
// alone; values are checked once the structure is right. The checks of
// the Go types (interceptors.Policy.Validate, server.Config.Validate) run
// too, and the fields of their *resilience.FieldErrors are reported under
// the file's field names. YAML files lose the order of their keys on the
// way to JSON, so their problems come in alphabetical order of the keys.
//
// # Durations and enums
//
// Every duration of the schema takes what Go's time.ParseDuration accepts
// ("500ms", "1m30s", "-2h") as well as the proto3 JSON form ("0.5s"). Every
// enum takes the short name of its value, the name without the enum's
// prefix in lower case ("exponential" for BACKOFF_KIND_EXPONENTIAL,
// "token_bucket", "aimd"), as well as the full name or the number:
//
//	retry:
//	  backoff: {kind: exponential, initial: 50ms, max: 1s}
//	  jitter: none
//	timeout: 1m30s
//
// Problems and [Config.WriteTable] use the short names.
//
// # Method matching
//
// As in gRPC's service config, each policy lists names: {service, method}
// selects one method, {service} every method of a service, {} every call.
// A call takes the policy of its method, else of its service, else the
// default; the most specific policy replaces the others as a whole. A name
// may appear once in a file. A call no policy selects goes to the server
// unchanged.
//
// # Options and reload
//
// [Config.DialOptions] and [Config.ServerOptions] turn a configuration
// into what grpc.NewClient and grpc.NewServer take. A [Reloader] applies a
// configuration and swaps in the next one atomically while calls are in
// flight ([Reloader.Update]); the pipelines of policies whose text did not
// change are kept, with the state of their breakers, bulkheads, budgets
// and hedging latencies, so that reloading a file after an unrelated edit
// neither closes an open circuit nor resets a bulkhead.
//
// # What files cannot say
//
// A fallback is code ([interceptors.FallbackPolicy]); build an
// [interceptors.Client] from [Config.ClientConfig] to add one. Likewise a
// server bulkhead or rate limit partitioned by a function
// (server.PartitionByFunc), a custom classifier of outcomes and budgets of your own. Observers go in
// a [ReloaderConfig].
//
// # Importing a gRPC service config
//
// [ImportServiceConfig] (and [Load], which detects the format) reads the
// service config JSON of gRFC A2/A6: each methodConfig's name,
// retryPolicy, hedgingPolicy and timeout, and retryThrottling. Fields
// unrelated to resilience (loadBalancingConfig, waitForReady, message size
// limits, healthCheckConfig) are ignored with a note ([Config.Notes]):
// keep them in the service config you give gRPC. Where the semantics
// differ:
//
//   - retryableStatusCodes replace the retry column of this package's
//     classification table: the listed codes are always retried, every
//     other code never, as in gRPC. The conditional rules of the default
//     table (RESOURCE_EXHAUSTED only with pushback, DEADLINE_EXCEEDED only
//     after a per-attempt timeout of an idempotent method) do not apply to
//     imported policies. A server's "do not retry" pushback still wins.
//   - Backoff: gRPC waits random(0, min(initialBackoff *
//     backoffMultiplier^(n-1), maxBackoff)) before retry n; the import
//     gives exactly that, an exponential backoff with full jitter. A
//     backoffMultiplier below 1 (a shrinking backoff, which gRPC allows)
//     is rejected: the exponential backoff here never shrinks. An
//     initialBackoff above maxBackoff is imported as maxBackoff, the wait
//     gRPC ends up using.
//   - maxAttempts above 5 is clamped to 5 with a note, as gRPC clamps it;
//     files of this package's own schema have no such limit.
//   - retryThrottling becomes a token-bucket target budget with gRPC's
//     arithmetic (a failure costs 1 token, a success returns tokenRatio,
//     retries are allowed while more than half the tokens remain). gRPC
//     keeps one bucket per channel (ClientConn); here there is one per
//     target string, shared by every connection to that target through one
//     pipeline, and shared with hedges. Without retryThrottling, retries
//     are not budgeted, as in gRPC (the target budget is NONE, not this
//     package's default ratio budget).
//   - timeout: gRPC uses the smaller of it and the caller's deadline; here
//     it is the deadline of calls that have none, and a call that has one
//     keeps it.
//   - hedgingPolicy: gRPC hedges any method that has one; this package
//     hedges idempotent methods only, so the import declares each hedged
//     method idempotent.
//   - gRPC also retries transparently (attempts that never reached the
//     server) and retries before any response header arrived, below the
//     interceptors; the dial options of this package disable gRPC's own
//     retries (grpc.WithDisableRetry) so that attempts do not multiply.
//   - Streams follow the interceptors package's stream rules (retried
//     until committed, never hedged), where gRPC also hedges streams.
//
// # Concurrency
//
// A [Config] is immutable and safe for concurrent use; each pipeline built
// from it owns its state. A [Reloader] is safe for concurrent use; its
// interceptors cost one atomic load and one or two map lookups per call
// beyond the pipeline's own cost.
package config

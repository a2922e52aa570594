// Package classify turns gRPC outcomes into what the resilience engines
// need to know: whether an attempt may be retried, how it counts for a
// circuit breaker, what the server said about retrying (the
// grpc-retry-pushback-ms trailer and google.rpc.RetryInfo), and whether a
// method is idempotent according to its proto descriptor.
//
// The default table follows gRPC's status-code guide and Google AIP-194:
//
//	code                             retried by default                                   breaker
//	OK                               -                                                     success
//	CANCELLED                        never (the caller gave up)                            ignored
//	UNAVAILABLE                      yes                                                   failure
//	RESOURCE_EXHAUSTED               only with server pushback or RetryInfo                failure
//	DEADLINE_EXCEEDED                only after a per-attempt timeout, idempotent methods  failure
//	ABORTED                          never; RetryIfIdempotent when configured              ignored
//	UNKNOWN, INTERNAL, DATA_LOSS     no                                                    failure
//	every other code                 no                                                    success
//
// A [Table] is a value: copy it, change rows with [Table.With], and give it
// to a pipeline or to one method's policy.
package classify

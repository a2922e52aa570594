package telemetry

import "go.opentelemetry.io/otel/attribute"

// Attribute keys. The rpc.* keys are those of the OpenTelemetry RPC semantic
// conventions; the resilience.* keys are this package's, documented in the
// package documentation.
const (
	AttrRPCSystem     = "rpc.system"
	AttrRPCService    = "rpc.service"
	AttrRPCMethod     = "rpc.method"
	AttrRPCStatusCode = "rpc.grpc.status_code"

	AttrPattern          = "resilience.pattern"
	AttrMaxAttempts      = "resilience.max_attempts"
	AttrIdempotent       = "resilience.idempotent"
	AttrAttempts         = "resilience.attempts"
	AttrFallback         = "resilience.fallback"
	AttrOutcome          = "resilience.outcome"
	AttrAttempt          = "resilience.attempt"
	AttrDelayMs          = "resilience.attempt.delay_ms"
	AttrHedge            = "resilience.attempt.hedge"
	AttrPushbackHonoured = "resilience.attempt.pushback_honoured"
	AttrTimeoutMs        = "resilience.attempt.timeout_ms"
	AttrTimedOut         = "resilience.attempt.timed_out"
	AttrServerPushback   = "resilience.attempt.server_pushback_ms"
	AttrBreakerState     = "resilience.breaker.state"
	AttrBreakerName      = "resilience.breaker.name"
	AttrBreakerFrom      = "resilience.breaker.from"
	AttrBreakerTo        = "resilience.breaker.to"
	AttrBulkheadWaitMs   = "resilience.bulkhead.wait_ms"
	AttrBulkheadName     = "resilience.bulkhead.name"
	AttrBulkheadKey      = "resilience.bulkhead.key"
	AttrReason           = "resilience.reason"
	AttrFaultKind        = "resilience.fault.kind"
	AttrRemainingMs      = "resilience.deadline.remaining_ms"
	AttrError            = "resilience.error"
	AttrCache            = "resilience.cache"

	AttrRateLimitPartition  = "resilience.rate_limit.partition"
	AttrRateLimitRetryAfter = "resilience.rate_limit.retry_after_ms"
	AttrRateLimitName       = "resilience.rate_limit.name"

	AttrThrottleProbability = "resilience.throttle.probability"
)

// Metric names; the package documentation describes each instrument.
const (
	MetricAttempts               = "resilience.client.attempts"
	MetricRetries                = "resilience.client.retries"
	MetricHedges                 = "resilience.client.hedges"
	MetricRejections             = "resilience.client.rejections"
	MetricActiveAttempts         = "resilience.client.attempts.active"
	MetricCallDuration           = "resilience.client.call.duration"
	MetricAttemptDuration        = "resilience.client.attempt.duration"
	MetricBulkheadWait           = "resilience.client.bulkhead.wait"
	MetricBreakerState           = "resilience.breaker.state"
	MetricBreakerTransitions     = "resilience.breaker.transitions"
	MetricBulkheadInFlight       = "resilience.bulkhead.in_flight"
	MetricBulkheadLimit          = "resilience.bulkhead.limit"
	MetricBulkheadWaiting        = "resilience.bulkhead.waiting"
	MetricServerRejections       = "resilience.server.rejections"
	MetricServerFaults           = "resilience.server.faults"
	MetricServerDefaultDeadlines = "resilience.server.default_deadlines"
	MetricCacheEvictions         = "resilience.cache.evictions"
	MetricCacheOverflows         = "resilience.cache.overflows"
	MetricClientRateLimited      = "resilience.client.rate_limited"
	MetricClientThrottled        = "resilience.client.throttled"
	MetricServerRateLimited      = "resilience.server.rate_limited"
	MetricRateLimitAdmitted      = "resilience.rate_limit.admitted"
	MetricRateLimitLimited       = "resilience.rate_limit.limited"
	MetricRateLimitKeys          = "resilience.rate_limit.keys"
	MetricRateLimitStoreFailures = "resilience.server.rate_limit.store_failures"
)

// Span event names; the package documentation describes each.
const (
	EventBreakerRejected      = "resilience.breaker.rejected"
	EventBulkheadRejected     = "resilience.bulkhead.rejected"
	EventRetry                = "resilience.retry"
	EventRetriesExhausted     = "resilience.retries_exhausted"
	EventRetryDeadline        = "resilience.retry.deadline"
	EventBudgetDenied         = "resilience.retry.budget_denied"
	EventHedge                = "resilience.hedge"
	EventFallback             = "resilience.fallback"
	EventShed                 = "resilience.shed"
	EventDeadlineRejected     = "resilience.deadline.rejected"
	EventDefaultDeadline      = "resilience.deadline.default"
	EventFault                = "resilience.fault"
	EventRateLimited          = "resilience.rate_limited"
	EventThrottled            = "resilience.throttled"
	EventRateLimitStoreFailed = "resilience.rate_limit.store_failed"
)

var rpcSystem = attribute.String(AttrRPCSystem, "grpc")

// outcome is the value of resilience.outcome on the call duration.
type outcome uint8

const (
	outcomeOK outcome = iota
	outcomeError
	outcomeExhausted
	outcomeFallback
	numOutcome
)

var outcomeNames = [numOutcome]string{"ok", "error", "retries_exhausted", "fallback"}

// reason is the value of resilience.reason on the rejection counters.
type reason uint8

const (
	reasonBreakerOpen reason = iota
	reasonBreakerHalfOpen
	reasonBulkheadFull
	reasonBudget
	reasonDeadline
	reasonShed
	reasonServerDeadline
	numReasons
)

var reasonNames = [numReasons]string{"breaker_open", "breaker_half_open", "bulkhead_full", "retry_budget", "retry_deadline", "shed", "deadline"}

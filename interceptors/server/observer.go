package server

import (
	"context"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
)

// EventKind says what happened to a call in a server interceptor.
type EventKind uint8

const (
	// EventShed is a call the bulkhead rejected with RESOURCE_EXHAUSTED.
	EventShed EventKind = iota + 1
	// EventDeadlineRejected is a call rejected with DEADLINE_EXCEEDED before
	// it ran because its deadline had passed or left too little time.
	EventDeadlineRejected
	// EventDefaultDeadline is a call that carried no deadline and got the
	// default one.
	EventDefaultDeadline
	// EventFaultLatency is a call the chaos interceptor delayed.
	EventFaultLatency
	// EventFaultError is a call the chaos interceptor failed before it ran.
	EventFaultError
	// EventFaultAbort is a stream the chaos interceptor aborted after some
	// messages.
	EventFaultAbort
	// EventPartitionEvicted is a keyed bulkhead partition that was idle
	// and was dropped to make room for a new key, once the bulkhead held
	// [BulkheadConfig.MaxPartitions] of them. Key is the dropped key, in
	// its display form (see Event.Key); FullMethod is empty.
	EventPartitionEvicted
	// EventPartitionOverflow is a call whose partition key was new while
	// every keyed partition was busy: it runs in the shared overflow
	// partition instead of one of its own. Key is the call's key, in its
	// display form (see Event.Key); FullMethod is empty.
	EventPartitionOverflow
	// EventRateLimited is a call the rate limit rejected with
	// RESOURCE_EXHAUSTED because its key had no permit left. Key is the
	// quota's class, such as "header:x-api-key" or "method:/pkg.Svc/M"
	// (the Subject of the QuotaFailure detail), never the caller's key;
	// Delay is the time until the key's next permit.
	EventRateLimited
	// EventRateLimitEvicted is a rate-limit key that was idle (its limiter
	// full again) and was dropped to make room for a new key, once its
	// quota held [RateLimitConfig.MaxPartitions] keys. Dropping it changes
	// no decision. Key is the quota's class, never the dropped key;
	// FullMethod is empty.
	EventRateLimitEvicted
	// EventRateLimitOverflow is a call whose rate-limit key was new while
	// every key of its quota was busy, or longer than
	// [ratelimit.MaxKeyLen]: it was decided by the quota's shared overflow
	// limiter. Key is the quota's class, never the call's key;
	// FullMethod is empty.
	EventRateLimitOverflow
	// EventRateLimitStoreFailed is a call that [RateLimitConfig.Store]'s
	// store could not decide (Err says why): the call was admitted. Key
	// is the quota's class as EventRateLimited names it, never the
	// caller's key.
	EventRateLimitStoreFailed
)

var eventKindNames = [...]string{"", "shed", "deadline_rejected", "default_deadline", "fault_latency", "fault_error", "fault_abort",
	"partition_evicted", "partition_overflow", "rate_limited", "rate_limit_evicted", "rate_limit_overflow", "rate_limit_store_failed"}

// String returns the event's name in snake case, such as "shed", as a
// telemetry attribute would spell it.
func (k EventKind) String() string {
	if int(k) > 0 && int(k) < len(eventKindNames) {
		return eventKindNames[k]
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event describes one thing a server interceptor did to a call. Fields that
// do not apply to the Kind are zero.
type Event struct {
	// Kind says what happened.
	Kind EventKind
	// FullMethod is the call's method, as in "/pkg.Service/Method".
	FullMethod string
	// Code is the status code the call was failed with: RESOURCE_EXHAUSTED
	// for EventShed and EventRateLimited, DEADLINE_EXCEEDED for EventDeadlineRejected, the
	// injected code for EventFaultError and EventFaultAbort.
	Code codes.Code
	// Key is the bulkhead partition key of a shed call ("" for the shared
	// or overflow partition), or the key of EventPartitionEvicted and
	// EventPartitionOverflow, in its display form: a keyed hash such as
	// "k:3f2a9c0e71b4" unless the keys are method names or
	// [BulkheadConfig.ShowKeys] is set (see "Caller keys" in the package
	// documentation). For the rate-limit events it is the quota's class
	// (never a caller's key).
	Key string
	// Delay is the pushback delay sent with a shed call or an injected
	// error, the time until the next permit of a rate-limited call, the latency injected for EventFaultLatency, or the timeout
	// given by EventDefaultDeadline.
	Delay time.Duration
	// Remaining is the time the call had left when it arrived, for
	// EventDeadlineRejected; zero or negative when the deadline had passed.
	Remaining time.Duration
	// Messages is how many messages a stream sent before
	// EventFaultAbort ended it.
	Messages int
	// Err is the store's error, for EventRateLimitStoreFailed.
	Err error
}

// Observer hears about the events of a [Server], for telemetry:
// [telemetry.Telemetry.ServerObserver] annotates the server span found in
// the call's context and counts and logs each event. The zero Observer,
// the default, observes nothing; a nil hook costs one comparison.
// [Server.Subscribe] adds observers to a running Server.
//
// [telemetry.Telemetry.ServerObserver]: https://pkg.go.dev/github.com/engineeringlabs/grpc-resilience/interceptors/telemetry#Telemetry.ServerObserver
type Observer struct {
	// OnEvent is called for every shed call, rate-limited call, deadline
	// rejection, default deadline, injected fault, bulkhead partition or
	// rate-limit key eviction or overflow, and rate-limit store failure. It runs synchronously on the
	// goroutine of the call that caused the event, with the call's context
	// (context.Background() for EventPartitionEvicted,
	// EventPartitionOverflow, EventRateLimitEvicted and
	// EventRateLimitOverflow), before the call
	// goes on, and never while the Server holds a lock. It must be safe
	// for concurrent use and quick.
	OnEvent func(ctx context.Context, e Event)
}

// emit calls o.OnEvent(ctx, e) unless it is nil.
func (o *Observer) emit(ctx context.Context, e Event) {
	if o.OnEvent != nil {
		o.OnEvent(ctx, e)
	}
}

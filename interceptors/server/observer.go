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
)

var eventKindNames = [...]string{"", "shed", "deadline_rejected", "default_deadline", "fault_latency", "fault_error", "fault_abort"}

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
	// for EventShed, DEADLINE_EXCEEDED for EventDeadlineRejected, the
	// injected code for EventFaultError and EventFaultAbort.
	Code codes.Code
	// Key is the bulkhead partition key of a shed call ("" for the shared
	// or overflow partition).
	Key string
	// Delay is the pushback delay sent with a shed call or an injected
	// error, the latency injected for EventFaultLatency, or the timeout
	// given by EventDefaultDeadline.
	Delay time.Duration
	// Remaining is the time the call had left when it arrived, for
	// EventDeadlineRejected; zero or negative when the deadline had passed.
	Remaining time.Duration
	// Messages is how many messages a stream sent before
	// EventFaultAbort ended it.
	Messages int
}

// Observer hears about the events of the server interceptors, for
// telemetry: the interceptors of issue 8 annotate the server span found in
// ctx. Observe is called synchronously, in the goroutine of the call, with
// the call's context; it must be safe for concurrent use and fast.
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// ObserverFunc adapts a function to an [Observer]. A nil ObserverFunc
// observes nothing.
type ObserverFunc func(ctx context.Context, e Event)

// Observe calls f(ctx, e) unless f is nil.
func (f ObserverFunc) Observe(ctx context.Context, e Event) {
	if f != nil {
		f(ctx, e)
	}
}

// nopObserver is the default Observer: it does nothing.
type nopObserver struct{}

func (nopObserver) Observe(context.Context, Event) {}

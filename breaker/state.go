package breaker

import "strconv"

// State is the state of a circuit breaker. The zero value is [Closed].
type State uint8

const (
	// Closed is normal operation: calls flow through and their outcomes are
	// counted.
	Closed State = iota
	// Open means too many failures: calls fail fast without running.
	Open
	// HalfOpen means the breaker tests whether the service recovered: a
	// limited number of probe calls run, the rest are rejected.
	HalfOpen
)

// String returns "closed", "open" or "half-open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Mode tells whether the breaker decides its state by itself or was put in a
// state by hand. The zero value is [Auto].
type Mode uint8

const (
	// Auto is normal operation: outcomes drive the state.
	Auto Mode = iota
	// ForcedOpen means [Breaker.ForceOpen] isolated the breaker: it rejects
	// every call until [Breaker.Reset] or [Breaker.ForceClosed].
	ForcedOpen
	// ForcedClosed means [Breaker.ForceClosed] disabled the breaker: it
	// permits every call and never opens until [Breaker.Reset] or
	// [Breaker.ForceOpen]. Outcomes still reach the metrics and listeners.
	ForcedClosed
)

// String returns "auto", "forced-open" or "forced-closed".
func (m Mode) String() string {
	switch m {
	case Auto:
		return "auto"
	case ForcedOpen:
		return "forced-open"
	case ForcedClosed:
		return "forced-closed"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Outcome is what a permitted call amounted to for the breaker. The zero
// value is [Success].
type Outcome uint8

const (
	// Success counts for the service: it resets the consecutive-failure
	// count and, in half-open, counts towards closing.
	Success Outcome = iota
	// Failure counts against the service: it may open the breaker, and in
	// half-open it always does.
	Failure
	// Ignored says nothing about the service (for example, the caller
	// cancelled): it is not counted in any threshold or window, and in
	// half-open it only frees its probe slot.
	Ignored
)

// String returns "success", "failure" or "ignored".
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Failure:
		return "failure"
	case Ignored:
		return "ignored"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Reason tells why a breaker changed state. The zero value is not a reason
// any transition carries.
type Reason uint8

const (
	// ReasonConsecutiveFailures: Config.FailureThreshold consecutive
	// failures opened the breaker.
	ReasonConsecutiveFailures Reason = iota + 1
	// ReasonFailureRate: the failure rate in the window reached
	// Config.FailureRateThreshold.
	ReasonFailureRate
	// ReasonSlowCallRate: the slow-call rate in the window reached
	// Config.SlowCallRateThreshold.
	ReasonSlowCallRate
	// ReasonTimeoutElapsed: the open duration ran out; the breaker
	// half-opened.
	ReasonTimeoutElapsed
	// ReasonProbeFailed: a half-open probe failed (or was slow, when a
	// slow-call rate threshold is set); the breaker opened again.
	ReasonProbeFailed
	// ReasonProbesSucceeded: Config.SuccessThreshold probes succeeded; the
	// breaker closed.
	ReasonProbesSucceeded
	// ReasonForcedOpen: [Breaker.ForceOpen] was called.
	ReasonForcedOpen
	// ReasonForcedClosed: [Breaker.ForceClosed] was called.
	ReasonForcedClosed
	// ReasonReset: [Breaker.Reset] was called.
	ReasonReset
	// ReasonTripped: [Breaker.Trip] was called: something outside the
	// breaker, for example the other processes sharing its state, found
	// the service failing.
	ReasonTripped
)

var reasonNames = [...]string{
	ReasonConsecutiveFailures: "consecutive-failures",
	ReasonFailureRate:         "failure-rate",
	ReasonSlowCallRate:        "slow-call-rate",
	ReasonTimeoutElapsed:      "timeout-elapsed",
	ReasonProbeFailed:         "probe-failed",
	ReasonProbesSucceeded:     "probes-succeeded",
	ReasonForcedOpen:          "forced-open",
	ReasonForcedClosed:        "forced-closed",
	ReasonReset:               "reset",
	ReasonTripped:             "tripped",
}

// String returns the reason in kebab case, for example
// "consecutive-failures".
func (r Reason) String() string {
	if int(r) < len(reasonNames) && reasonNames[r] != "" {
		return reasonNames[r]
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

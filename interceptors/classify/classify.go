package classify

import (
	"fmt"

	"google.golang.org/grpc/codes"
)

// RetryRule says when an attempt that ended with a code may be retried.
type RetryRule uint8

const (
	// RetryNever never retries the code.
	RetryNever RetryRule = iota
	// RetryAlways retries the code on any method.
	RetryAlways
	// RetryIfIdempotent retries the code only on idempotent methods.
	RetryIfIdempotent
	// RetryIfPushback retries the code only when the server sent a
	// non-negative grpc-retry-pushback-ms trailer or a google.rpc.RetryInfo
	// detail.
	RetryIfPushback
	// RetryIfAttemptTimeout retries the code only when the attempt's own
	// per-attempt timeout fired (not the caller's deadline, and not a
	// deadline the server imposed) and the method is idempotent.
	RetryIfAttemptTimeout
)

var retryRuleNames = [...]string{"never", "always", "if-idempotent", "if-pushback", "if-attempt-timeout"}

// String returns the rule's name, as used in configuration files.
func (r RetryRule) String() string {
	if int(r) < len(retryRuleNames) {
		return retryRuleNames[r]
	}
	return fmt.Sprintf("RetryRule(%d)", uint8(r))
}

// BreakerOutcome says how an attempt that ended with a code counts for a
// circuit breaker.
type BreakerOutcome uint8

const (
	// BreakerSuccess counts as a success: the service answered correctly.
	BreakerSuccess BreakerOutcome = iota
	// BreakerFailure counts as a failure of the service.
	BreakerFailure
	// BreakerIgnore does not count at all, e.g. a call the caller cancelled.
	BreakerIgnore
)

var breakerOutcomeNames = [...]string{"success", "failure", "ignore"}

// String returns the outcome's name, as used in configuration files.
func (o BreakerOutcome) String() string {
	if int(o) < len(breakerOutcomeNames) {
		return breakerOutcomeNames[o]
	}
	return fmt.Sprintf("BreakerOutcome(%d)", uint8(o))
}

// Rule is one row of a [Table]: what a status code means.
type Rule struct {
	// Retry says when the code may be retried.
	Retry RetryRule
	// Breaker says how the code counts for a circuit breaker.
	Breaker BreakerOutcome
}

// numCodes is one past the highest code gRPC defines (UNAUTHENTICATED = 16).
const numCodes = 17

// Table maps each gRPC status code to a [Rule]. It is a small value: copy
// it freely. Codes outside the 17 that gRPC defines, which a misbehaving
// server may send, are treated like UNKNOWN.
//
// The zero Table never retries and counts every code as a breaker success;
// most callers want [Default].
type Table struct {
	rules [numCodes]Rule
}

// Default returns the default table of the package documentation.
func Default() Table {
	var t Table
	for c := range numCodes {
		t.rules[c] = Rule{Retry: RetryNever, Breaker: BreakerSuccess}
	}
	t.rules[codes.Canceled] = Rule{Retry: RetryNever, Breaker: BreakerIgnore}
	t.rules[codes.Unavailable] = Rule{Retry: RetryAlways, Breaker: BreakerFailure}
	t.rules[codes.ResourceExhausted] = Rule{Retry: RetryIfPushback, Breaker: BreakerFailure}
	t.rules[codes.DeadlineExceeded] = Rule{Retry: RetryIfAttemptTimeout, Breaker: BreakerFailure}
	t.rules[codes.Aborted] = Rule{Retry: RetryNever, Breaker: BreakerIgnore}
	t.rules[codes.Unknown] = Rule{Retry: RetryNever, Breaker: BreakerFailure}
	t.rules[codes.Internal] = Rule{Retry: RetryNever, Breaker: BreakerFailure}
	t.rules[codes.DataLoss] = Rule{Retry: RetryNever, Breaker: BreakerFailure}
	return t
}

// With returns a copy of t in which code has rule r. A code outside the
// ones gRPC defines is ignored: such codes always follow UNKNOWN's row.
func (t Table) With(code codes.Code, r Rule) Table {
	if code < numCodes {
		t.rules[code] = r
	}
	return t
}

// Rule returns the row of code. A code outside the ones gRPC defines gets
// UNKNOWN's row.
func (t Table) Rule(code codes.Code) Rule {
	if code >= numCodes {
		code = codes.Unknown
	}
	return t.rules[code]
}

// Attempt is what is known about a finished attempt when deciding whether
// to retry it.
type Attempt struct {
	// Code is the attempt's status code.
	Code codes.Code
	// Idempotent reports whether the method may safely run more than once.
	Idempotent bool
	// Pushback is what the server said about retrying, if anything.
	Pushback Pushback
	// AttemptTimedOut reports whether the attempt's own per-attempt timeout
	// fired while the caller's deadline still had time left.
	AttemptTimedOut bool
}

// Retryable reports whether the attempt may be retried according to t.
// OK is never retried, and a server's "do not retry" pushback vetoes any
// rule.
func (t Table) Retryable(a Attempt) bool {
	if a.Code == codes.OK || a.Pushback.Present && !a.Pushback.Retry {
		return false
	}
	switch t.Rule(a.Code).Retry {
	case RetryAlways:
		return true
	case RetryIfIdempotent:
		return a.Idempotent
	case RetryIfPushback:
		return a.Pushback.Present && a.Pushback.Retry
	case RetryIfAttemptTimeout:
		return a.AttemptTimedOut && a.Idempotent
	default:
		return false
	}
}

// Breaker returns how code counts for a circuit breaker according to t.
func (t Table) Breaker(code codes.Code) BreakerOutcome {
	if code == codes.OK {
		return BreakerSuccess
	}
	return t.Rule(code).Breaker
}

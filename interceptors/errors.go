package interceptors

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
)

// StatusError is an error that is a gRPC status and also carries the
// resilience error behind it, so that both kinds of callers understand it:
// status.FromError and status.Code return its status, and errors.Is and
// errors.As reach its cause, for instance resilience.ErrCircuitOpen,
// resilience.ErrBulkheadFull, *resilience.TimeoutError or
// *resilience.RetriesExhaustedError.
//
// The interceptors return it for:
//   - an open circuit: UNAVAILABLE, cause the breaker's *breaker.OpenError;
//   - an attempt the client's adaptive throttle rejected: UNAVAILABLE,
//     cause resilience.ErrThrottled;
//   - a full bulkhead: RESOURCE_EXHAUSTED, cause resilience.ErrBulkheadFull;
//   - an attempt over the client's rate limit: RESOURCE_EXHAUSTED, cause a
//     *resilience.RateLimitedError (matching resilience.ErrRateLimited);
//   - a per-attempt or default timeout: DEADLINE_EXCEEDED, cause a
//     *resilience.TimeoutError;
//   - exhausted retries or hedges: the last attempt's status, unchanged,
//     cause a *resilience.RetriesExhaustedError that unwraps to the last
//     attempt's error;
//   - a context that ended between attempts: CANCELLED or
//     DEADLINE_EXCEEDED, cause ctx.Err().
//
// Other errors, such as a server's status, are returned as the invoker
// returned them. A StatusError is immutable and safe for concurrent use.
// Create one with [NewStatusError]; the zero StatusError reads as UNKNOWN
// with no cause.
type StatusError struct {
	st    *status.Status
	cause error
}

// NewStatusError returns an error whose gRPC status is st and which unwraps
// to cause. A nil st means status.New(codes.Unknown, cause.Error()).
func NewStatusError(st *status.Status, cause error) *StatusError {
	if st == nil {
		msg := ""
		if cause != nil {
			msg = cause.Error()
		}
		st = status.New(codes.Unknown, msg)
	}
	return &StatusError{st: st, cause: cause}
}

// newCodeError returns a StatusError of code whose message is cause's.
func newCodeError(c codes.Code, cause error) *StatusError {
	return &StatusError{st: status.New(c, cause.Error()), cause: cause}
}

// Error returns "rpc error: code = <code> desc = <the cause's message>", in
// the style of gRPC's own status errors.
func (e *StatusError) Error() string {
	if e.cause == nil {
		return e.GRPCStatus().Err().Error()
	}
	return "rpc error: code = " + e.GRPCStatus().Code().String() + " desc = " + e.cause.Error()
}

// GRPCStatus returns the error's gRPC status; status.FromError uses it.
func (e *StatusError) GRPCStatus() *status.Status {
	if e.st == nil {
		return status.New(codes.Unknown, "")
	}
	return e.st
}

// Unwrap returns the cause.
func (e *StatusError) Unwrap() error { return e.cause }

// pushbackError is the error of an attempt whose server said something
// about retrying. It implements retry.Pushback, so the retry engine honours
// the server's delay or veto; attempts without pushback are never wrapped
// in it, since a Pushback that says nothing would veto the retry.
type pushbackError struct {
	err error // the attempt's error, a gRPC status error
	st  *status.Status
	pb  classify.Pushback
}

func (e *pushbackError) Error() string                     { return e.err.Error() }
func (e *pushbackError) GRPCStatus() *status.Status        { return e.st }
func (e *pushbackError) Unwrap() error                     { return e.err }
func (e *pushbackError) RetryDelay() (time.Duration, bool) { return e.pb.RetryDelay() }

// statusOf returns err's status; errors without one are UNKNOWN.
func statusOf(err error) *status.Status {
	st, _ := status.FromError(err)
	return st
}

// finalError turns the error a pattern ends with into what the caller
// gets: nil stays nil; an exhausted retry becomes the last attempt's status
// with the *resilience.RetriesExhaustedError as cause; an error that is a
// status stays as it is; a context error becomes CANCELLED or
// DEADLINE_EXCEEDED; anything else UNKNOWN.
func finalError(err error) error {
	if err == nil {
		return nil
	}
	if ex, ok := err.(*resilience.RetriesExhaustedError); ok {
		return &StatusError{st: statusOf(ex.Err), cause: ex}
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &StatusError{st: status.FromContextError(err), cause: err}
	}
	return newCodeError(codes.Unknown, err)
}

// isRejection reports whether err is a rejection by a breaker, throttle,
// rate limit or bulkhead, possibly one further in, which never reached the
// server.
func isRejection(err error) bool {
	return errors.Is(err, resilience.ErrCircuitOpen) || errors.Is(err, resilience.ErrBulkheadFull) ||
		errors.Is(err, resilience.ErrRateLimited) || errors.Is(err, resilience.ErrThrottled)
}

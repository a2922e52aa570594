package server

import (
	"errors"

	"google.golang.org/grpc/status"
)

// ErrFaultInjected is what an error injected by a [Chaos] interceptor
// unwraps to, on the server side: errors.Is(err, ErrFaultInjected) tells an
// injected fault from a real one. The client sees only the gRPC status.
var ErrFaultInjected = errors.New("server: fault injected")

// statusError is a gRPC status that also unwraps to a resilience error, so
// that status.FromError and errors.Is/As both work on it. It is immutable,
// so one value may be returned to many calls at once.
type statusError struct {
	st    *status.Status
	cause error
	msg   string
}

func newStatusError(st *status.Status, cause error) *statusError {
	return &statusError{st: st, cause: cause, msg: st.Err().Error()}
}

// Error returns the same text as the status's own error.
func (e *statusError) Error() string { return e.msg }

// GRPCStatus lets status.FromError and the gRPC server find the status.
func (e *statusError) GRPCStatus() *status.Status { return e.st }

// Unwrap returns the resilience error behind the status.
func (e *statusError) Unwrap() error { return e.cause }

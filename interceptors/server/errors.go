package server

import "errors"

// ErrFaultInjected is what an error injected by a [Chaos] interceptor
// unwraps to, on the server side: errors.Is(err, ErrFaultInjected) tells an
// injected fault from a real one. The client sees only the gRPC status.
var ErrFaultInjected = errors.New("server: fault injected")

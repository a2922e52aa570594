package testservice

import (
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// Failing returns a Behavior whose first n attempts of callID fail with
// code, every attempt when n is negative.
func Failing(callID string, n int32, code codes.Code) *testingv1.Behavior {
	return &testingv1.Behavior{CallId: callID, FailAttempts: n, FailCode: uint32(code)}
}

// Sleeping returns a Behavior whose first n attempts of callID sleep d
// before answering, every attempt when n is 0.
func Sleeping(callID string, d time.Duration, n int32) *testingv1.Behavior {
	return &testingv1.Behavior{CallId: callID, Sleep: durationpb.New(d), SleepAttempts: n}
}

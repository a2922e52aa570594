// Package testservice serves the test service of
// proto/grpcresilience/testing/v1 for tests, examples and benchmarks: over
// an in-memory bufconn listener or over real loopback TCP, with a server that
// can be stopped and restarted on the same address, and counters of the
// attempts the server saw per call id and per method.
//
// The service answers as each request's Behavior says: it fails the first N
// attempts of a call id with a given code, sleeps, sends a
// grpc-retry-pushback-ms trailer or a google.rpc.RetryInfo detail, streams
// K messages and then fails, and echoes what it received.
//
// Most tests want [StartTB]:
//
//	srv := testservice.StartTB(t)
//	conn := srv.DialTB(t)
//	client := testingv1.NewTestServiceClient(conn)
package testservice

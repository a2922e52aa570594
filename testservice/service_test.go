package testservice_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
	"github.com/engineeringlabs/grpc-resilience/testservice"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// transports runs a test over bufconn and over loopback TCP.
func transports(t *testing.T, test func(t *testing.T, srv *testservice.Server)) {
	t.Run("bufconn", func(t *testing.T) { test(t, testservice.StartTB(t)) })
	t.Run("tcp", func(t *testing.T) { test(t, testservice.StartTB(t, testservice.WithTCP(""))) })
}

func TestUnaryFailsFirstAttemptsOfCall(t *testing.T) {
	transports(t, func(t *testing.T, srv *testservice.Server) {
		client := srv.Client(t)
		ctx := context.Background()
		b := &testingv1.Behavior{CallId: "c1", FailAttempts: 2, FailCode: uint32(codes.Aborted)}
		for attempt := 1; attempt <= 2; attempt++ {
			_, err := client.Unary(ctx, &testingv1.UnaryRequest{Behavior: b})
			if status.Code(err) != codes.Aborted {
				t.Fatalf("attempt %d: got %v, want ABORTED", attempt, err)
			}
		}
		resp, err := client.Unary(ctx, &testingv1.UnaryRequest{Behavior: b, Payload: []byte("hi")})
		if err != nil {
			t.Fatalf("attempt 3: %v", err)
		}
		if got := resp.GetReply(); got.GetAttempt() != 3 || string(got.GetPayload()) != "hi" || got.GetCallId() != "c1" {
			t.Errorf("reply = %v, want attempt 3 of c1 echoing hi", got)
		}
		svc := srv.Service()
		if got := svc.Attempts("c1"); got != 3 {
			t.Errorf("Attempts(c1) = %d, want 3", got)
		}
		if got := svc.MethodAttempts(testingv1.TestService_Unary_FullMethodName); got != 3 {
			t.Errorf("MethodAttempts(Unary) = %d, want 3", got)
		}
		if got := svc.MethodAttempts(testingv1.TestService_Query_FullMethodName); got != 0 {
			t.Errorf("MethodAttempts(Query) = %d, want 0", got)
		}
	})
}

func TestDefaultFailureIsUnavailableAndNegativeFailsForever(t *testing.T) {
	srv := testservice.StartTB(t)
	client := srv.Client(t)
	for range 5 {
		_, err := client.Query(context.Background(), &testingv1.QueryRequest{Behavior: &testingv1.Behavior{CallId: "x", FailAttempts: -1}})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want UNAVAILABLE", err)
		}
	}
	log := srv.Service().Log()
	if len(log) != 5 || !log[4].Failed || log[4].Number != 5 {
		t.Errorf("log = %+v, want 5 failed attempts", log)
	}
}

func TestPushbackTrailerAndRetryInfo(t *testing.T) {
	transports(t, func(t *testing.T, srv *testservice.Server) {
		client := srv.Client(t)
		var trailer metadata.MD
		_, err := client.IdempotentUnary(context.Background(), &testingv1.IdempotentUnaryRequest{Behavior: &testingv1.Behavior{
			FailAttempts:   1,
			FailCode:       uint32(codes.ResourceExhausted),
			PushbackMs:     "not-a-number",
			RetryInfoDelay: durationpb.New(1500 * time.Millisecond),
		}}, grpc.Trailer(&trailer))
		st := status.Convert(err)
		if st.Code() != codes.ResourceExhausted {
			t.Fatalf("got %v, want RESOURCE_EXHAUSTED", err)
		}
		if got := trailer.Get(testservice.PushbackTrailer); len(got) != 1 || got[0] != "not-a-number" {
			t.Errorf("pushback trailer = %q, want the raw value", got)
		}
		var found bool
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				found = ri.GetRetryDelay().AsDuration() == 1500*time.Millisecond
			}
		}
		if !found {
			t.Errorf("details = %v, want RetryInfo of 1.5s", st.Details())
		}
	})
}

func TestSleepEndsWithTheCallersDeadline(t *testing.T) {
	srv := testservice.StartTB(t)
	client := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := client.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{Sleep: durationpb.New(time.Hour)}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DEADLINE_EXCEEDED", err)
	}
}

func TestSleepAttemptsLimitsTheSleep(t *testing.T) {
	srv := testservice.StartTB(t)
	client := srv.Client(t)
	b := &testingv1.Behavior{CallId: "s", Sleep: durationpb.New(time.Hour), SleepAttempts: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := client.Unary(ctx, &testingv1.UnaryRequest{Behavior: b})
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("first attempt: got %v, want DEADLINE_EXCEEDED", err)
	}
	if _, err := client.Unary(context.Background(), &testingv1.UnaryRequest{Behavior: b}); err != nil {
		t.Fatalf("second attempt should not sleep: %v", err)
	}
}

func TestPreviousAttemptsHeaderIsRecorded(t *testing.T) {
	srv := testservice.StartTB(t)
	client := srv.Client(t)
	ctx := metadata.AppendToOutgoingContext(context.Background(), testservice.PreviousAttemptsHeader, "2")
	resp, err := client.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "h"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetReply().GetPreviousRpcAttempts(); got != "2" {
		t.Errorf("reply previous attempts = %q, want 2", got)
	}
	if got := srv.Service().Log()[0].PreviousAttempts; got != "2" {
		t.Errorf("log previous attempts = %q, want 2", got)
	}
}

func TestServerStreamSendsKThenFails(t *testing.T) {
	transports(t, func(t *testing.T, srv *testservice.Server) {
		client := srv.Client(t)
		b := &testingv1.Behavior{CallId: "ss", FailAttempts: 1, FailAfterMessages: 2, StreamMessages: 4}
		got, err := recvAll(client, b)
		if status.Code(err) != codes.Unavailable || len(got) != 2 {
			t.Fatalf("failing attempt: %d messages, err %v; want 2 then UNAVAILABLE", len(got), err)
		}
		got, err = recvAll(client, b)
		if err != nil || len(got) != 4 {
			t.Fatalf("second attempt: %d messages, err %v; want 4 then OK", len(got), err)
		}
		for i, r := range got {
			if r.GetReply().GetSequence() != int32(i) || r.GetReply().GetAttempt() != 2 || string(r.GetReply().GetPayload()) != "p" {
				t.Errorf("message %d = %v", i, r.GetReply())
			}
		}
	})
}

func recvAll(client testingv1.TestServiceClient, b *testingv1.Behavior) ([]*testingv1.ServerStreamResponse, error) {
	stream, err := client.ServerStream(context.Background(), &testingv1.ServerStreamRequest{Behavior: b, Payload: []byte("p")})
	if err != nil {
		return nil, err
	}
	var out []*testingv1.ServerStreamResponse
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}

func TestClientStreamEchoesPayloadsAndFailsAfterN(t *testing.T) {
	transports(t, func(t *testing.T, srv *testservice.Server) {
		client := srv.Client(t)
		b := &testingv1.Behavior{CallId: "cs", FailAttempts: 1, FailAfterMessages: 2, FailCode: uint32(codes.Internal)}
		send := func() (*testingv1.ClientStreamResponse, error) {
			stream, err := client.ClientStream(context.Background())
			if err != nil {
				return nil, err
			}
			for _, p := range []string{"a", "b", "c"} {
				if err := stream.Send(&testingv1.ClientStreamRequest{Behavior: b, Payload: []byte(p)}); err != nil {
					break // the server failed the stream; CloseAndRecv reports why
				}
			}
			return stream.CloseAndRecv()
		}
		if _, err := send(); status.Code(err) != codes.Internal {
			t.Fatalf("first attempt: got %v, want INTERNAL", err)
		}
		resp, err := send()
		if err != nil {
			t.Fatalf("second attempt: %v", err)
		}
		var got []string
		for _, p := range resp.GetPayloads() {
			got = append(got, string(p))
		}
		if len(got) != 3 || got[0] != "a" || got[2] != "c" || resp.GetReply().GetAttempt() != 2 {
			t.Errorf("response = %v, want attempt 2 with a, b, c", resp)
		}
	})
}

func TestBidiStreamEchoesAndFailsAfterN(t *testing.T) {
	transports(t, func(t *testing.T, srv *testservice.Server) {
		client := srv.Client(t)
		b := &testingv1.Behavior{CallId: "bidi", FailAttempts: 1, FailAfterMessages: 1}
		run := func() ([]string, error) {
			stream, err := client.BidiStream(context.Background())
			if err != nil {
				return nil, err
			}
			var echoed []string
			for _, p := range []string{"x", "y", "z"} {
				if err := stream.Send(&testingv1.BidiStreamRequest{Behavior: b, Payload: []byte(p)}); err != nil {
					break
				}
				m, err := stream.Recv()
				if err != nil {
					return echoed, err
				}
				echoed = append(echoed, string(m.GetReply().GetPayload()))
			}
			if err := stream.CloseSend(); err != nil {
				return echoed, err
			}
			_, err = stream.Recv()
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return echoed, err
		}
		echoed, err := run()
		if status.Code(err) != codes.Unavailable || len(echoed) != 1 {
			t.Fatalf("first attempt: echoed %v, err %v; want one echo then UNAVAILABLE", echoed, err)
		}
		echoed, err = run()
		if err != nil || len(echoed) != 3 || echoed[2] != "z" {
			t.Fatalf("second attempt: echoed %v, err %v; want x y z", echoed, err)
		}
	})
}

func TestRestartServesOnTheSameAddress(t *testing.T) {
	transports(t, func(t *testing.T, srv *testservice.Server) {
		client := srv.Client(t)
		call := func(ctx context.Context) error {
			_, err := client.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "r"}})
			return err
		}
		if err := call(context.Background()); err != nil {
			t.Fatal(err)
		}
		target := srv.Target()
		srv.Stop()
		if err := call(context.Background()); status.Code(err) != codes.Unavailable {
			t.Fatalf("while stopped: got %v, want UNAVAILABLE", err)
		}
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		if srv.Target() != target {
			t.Fatalf("target changed from %s to %s", target, srv.Target())
		}
		// The same connection reaches the restarted server once it
		// reconnects; WaitForReady waits for that without sleeping.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := client.Unary(ctx, &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "r"}}, grpc.WaitForReady(true)); err != nil {
			t.Fatalf("after restart: %v", err)
		}
		if got := srv.Service().Attempts("r"); got != 2 {
			t.Errorf("Attempts(r) = %d, want 2 (the call while stopped never reached the server)", got)
		}
	})
}

func TestStopFailsInFlightCalls(t *testing.T) {
	srv := testservice.StartTB(t, testservice.WithTCP(""))
	client := srv.Client(t)
	errc := make(chan error, 1)
	go func() {
		_, err := client.Unary(context.Background(), &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "inflight", Sleep: durationpb.New(time.Hour)}})
		errc <- err
	}()
	if err := srv.Service().WaitAttempts(context.Background(), "inflight", 1); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := <-errc; status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want UNAVAILABLE", err)
	}
}

func TestResetForgetsAttempts(t *testing.T) {
	srv := testservice.StartTB(t)
	client := srv.Client(t)
	if _, err := client.Unary(context.Background(), &testingv1.UnaryRequest{Behavior: &testingv1.Behavior{CallId: "z"}}); err != nil {
		t.Fatal(err)
	}
	srv.Service().Reset()
	if n := srv.Service().TotalAttempts(); n != 0 {
		t.Errorf("TotalAttempts after Reset = %d, want 0", n)
	}
}

func TestWaitAttemptsReturnsOnContextEnd(t *testing.T) {
	svc := testservice.NewService()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := svc.WaitAttempts(ctx, "never", 1); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if err := svc.WaitAttempts(ctx, "never", 0); err != nil {
		t.Errorf("zero attempts are always reached: got %v", err)
	}
}

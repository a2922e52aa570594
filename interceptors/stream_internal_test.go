package interceptors

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// okStream is an in-process grpc.ClientStream on which every operation
// succeeds at once.
type okStream struct{ ctx context.Context }

func (s okStream) Header() (metadata.MD, error) { return metadata.MD{}, nil }
func (s okStream) Trailer() metadata.MD         { return nil }
func (s okStream) CloseSend() error             { return nil }
func (s okStream) Context() context.Context     { return s.ctx }
func (s okStream) SendMsg(any) error            { return nil }
func (s okStream) RecvMsg(any) error            { return nil }

// TestStreamCommitDropsReplay: the commit drops every message kept for
// replay, those kept in the stream's own storage included once the replay
// outgrew it, so that a committed stream holds no clone of what it sent.
func TestStreamCommitDropsReplay(t *testing.T) {
	c, err := NewClient(Config{Default: Policy{Retry: &RetryPolicy{MaxAttempts: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	streamer := func(ctx context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn, _ string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
		return okStream{ctx: ctx}, nil
	}
	desc := &grpc.StreamDesc{StreamName: "BidiStream", ServerStreams: true, ClientStreams: true}
	for _, sends := range []int{1, 2, 3, 5} {
		sctx, end := context.WithCancel(ctx)
		cs, err := c.StreamClientInterceptor()(sctx, desc, nil, testingv1.TestService_BidiStream_FullMethodName, streamer)
		if err != nil {
			t.Fatal(err)
		}
		s := cs.(*clientStream)
		for range sends {
			if err := s.SendMsg(&testingv1.BidiStreamRequest{Payload: []byte("kept")}); err != nil {
				t.Fatal(err)
			}
		}
		s.mu.Lock()
		kept := len(s.replay)
		s.mu.Unlock()
		if kept != sends {
			t.Fatalf("%d sends: %d kept for replay before commit", sends, kept)
		}
		if err := s.RecvMsg(&testingv1.BidiStreamResponse{}); err != nil { // commits
			t.Fatal(err)
		}
		s.mu.Lock()
		for i, op := range s.replayBuf {
			if op.msg != nil {
				t.Errorf("%d sends: entry %d of the stream's own replay storage still holds a message after commit", sends, i)
			}
		}
		if s.replay != nil || s.replayBytes != 0 {
			t.Errorf("%d sends: replay %v of %d bytes after commit", sends, s.replay, s.replayBytes)
		}
		s.mu.Unlock()
		end()
	}
}

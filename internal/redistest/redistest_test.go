package redistest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/engineeringlabs/grpc-resilience/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartKillRestart(t *testing.T) {
	srv := redistest.Start(t)
	if r, err := srv.Do("SET", "k", "v"); err != nil || r != "+OK" {
		t.Fatalf("SET = %q, %v", r, err)
	}
	addr := srv.Addr()
	srv.Kill()
	if srv.Running() {
		t.Fatal("Running after Kill")
	}
	if _, err := srv.Do("PING"); err == nil {
		t.Fatal("PING answered after Kill")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if srv.Addr() != addr {
		t.Fatalf("Addr after Restart = %s, want %s", srv.Addr(), addr)
	}
	if r, err := srv.Do("EXISTS", "k"); err != nil || r != ":0" {
		t.Fatalf("EXISTS after Restart = %q, %v; want :0 (no persistence)", r, err)
	}
}

func TestLaunchWithoutT(t *testing.T) {
	if _, err := redistest.Binary(); err != nil {
		t.Skip(redistest.MissingMessage)
	}
	srv, err := redistest.Launch(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if r, err := srv.Do("PING"); err != nil || r != "+PONG" {
		t.Fatalf("PING = %q, %v", r, err)
	}
	srv.Stop()
	srv.Stop() // idempotent
}

package main

import (
	"os"
	"testing"
	"time"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
)

// The server process of the CPU-shedding scenario serves, sheds with a
// fixed bulkhead when offered far more than it can do, and ends when told
// to; its cgroups (when the test may create them) are gone afterwards.
func TestCPUServerProcessSheds(t *testing.T) {
	iso := isolateCPU()
	t.Log(iso.desc)
	srv, err := startCPUServer("ours-bulkhead", iso)
	if err != nil {
		iso.release()
		t.Fatal(err)
	}
	cpu := srv.cpuTime()
	// A call costs 5ms of CPU: 1000 a second is at least 5x what one
	// core does, whatever the machine.
	r := srv.openLoop(1000, 300*time.Millisecond)
	used := srv.cpuTime() - cpu
	srv.stop()
	iso.release()
	if r.shed == 0 || len(r.latencies) == 0 {
		t.Errorf("%d calls: %d succeeded, %d shed; want both", r.calls, len(r.latencies), r.shed)
	}
	if used <= 0 {
		t.Errorf("server CPU time %v, want some", used)
	}
	for _, d := range iso.dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left behind: %v", d, err)
		}
	}
}

// An unknown protection makes the server process fail before it serves,
// and the scenario says so.
func TestCPUServerUnknownProtection(t *testing.T) {
	if _, err := startCPUServer("nosuch", cpuIsolation{core: -1}); err == nil {
		t.Fatal("started a server with an unknown protection")
	}
}

func TestProcStatCPU(t *testing.T) {
	for stat, want := range map[string]time.Duration{
		"42 (scenarios) S 1 42 42 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 9 0 100 1 1": 1750 * time.Millisecond,
		"42 (a) b) (c) R 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 9 0 100 1 1":     100 * time.Millisecond,
		"42 (scenarios) S 1 42": 0,
		"no parenthesis":        0,
		"42 (x) S 1 42 42 0 -1 4194560 100 0 0 0 -5 3 0 0":                              0,
		"42 (x) S 1 42 42 0 -1 4194560 100 0 0 0 99999999999999999999 3 0 0 20 0 9 0 1": 0,
	} {
		if got := procStatCPU(stat); got != want {
			t.Errorf("procStatCPU(%q) = %v, want %v", stat, got, want)
		}
	}
}

// Against a backend that serves half of what it is offered, a throttle
// with go-zero's K of 1.5 lets fewer attempts reach it than a client
// without protection, which sends every call, and succeeds as often.
func TestThrottleCutsWastedLoad(t *testing.T) {
	none, err := throttleOverload(bareLib(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	throttled, err := throttleOverload(oursLib("ours-throttle-k1.5", interceptors.Policy{Throttle: &interceptors.ThrottlePolicy{K: 1.5}}), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if none.attempts != int64(none.calls) {
		t.Errorf("no protection: %d attempts for %d calls, want one each", none.attempts, none.calls)
	}
	if throttled.refused >= none.refused {
		t.Errorf("backend refused %d attempts of the throttled client, %d of the unprotected one; want fewer", throttled.refused, none.refused)
	}
	// The backend serves as much either way; a generous margin for a
	// loaded machine.
	if float64(throttled.ok) < 0.8*float64(none.ok) {
		t.Errorf("throttled client: %d successes, unprotected: %d; want about as many", throttled.ok, none.ok)
	}
}

// A client without protection recovers as soon as the backend does, and
// sends it every call during the outage.
func TestThrottleRecoveryOfUnprotectedClient(t *testing.T) {
	r, err := throttleRecovery(bareLib(), 200*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !r.recovered || r.took > throttleBucket {
		t.Errorf("recovered %v after %v, want at once", r.recovered, r.took)
	}
	// 100 calls a second are offered; the outage's edges are not exact.
	if r.outageAttempts < 60 || r.outageAttempts > 140 {
		t.Errorf("%.0f attempts a second during the outage, want about 100", r.outageAttempts)
	}
}

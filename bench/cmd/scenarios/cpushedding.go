package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// cpuLoads are the offered loads of the CPU-shedding scenario, in
// multiples of the measured capacity, 4s each, in the order they run
// against one server process. The second 4x comes after 12s of saturated
// CPU: the first shows how fast each protection reacts, the second where it
// settles (but for aegis, whose CPU average, with a time constant of about
// 10s, needs about 16s of saturation to reach its threshold).
var cpuLoads = []struct {
	name string
	mult float64
}{{"1x", 1}, {"2x", 2}, {"4x", 4}, {"4x-sustained", 4}}

// runCPUShedding measures a CPU-bound server in a process of its own (one
// core, see isolateCPU): first its capacity, unprotected, then, for each
// protection in a fresh server process, the goodput at 1x, 2x and 4x that
// capacity and at 4x again, offered open loop one load after the other.
func runCPUShedding(s settings) error {
	iso := isolateCPU()
	defer iso.release()
	fmt.Fprintf(s.out, "# cpu-isolation: %s\n", iso.desc)
	capacity, err := cpuCapacity(s, iso)
	if err != nil {
		return err
	}
	for _, p := range cpuProtections {
		if err := cpuSheddingCells(s, iso, p, capacity); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// cpuCapacity starts the unprotected server, measures the latency of
// serial calls (one at a time) and the throughput of 2 callers in a closed
// loop (one call running, one ready), and reports them with the capacity:
// the calls the server completes per second of its CPU time, which the
// loads are multiples of.
func cpuCapacity(s settings, iso cpuIsolation) (float64, error) {
	srv, err := startCPUServer("none", iso)
	if err != nil {
		return 0, err
	}
	defer srv.stop()
	var lats []time.Duration
	end := time.Now().Add(s.duration(2 * time.Second))
	for n := 0; time.Now().Before(end) && n < s.count(100000); n++ {
		t0 := time.Now()
		if err := srv.call(time.Second); err != nil {
			return 0, fmt.Errorf("unloaded call: %w", err)
		}
		lats = append(lats, time.Since(t0))
	}
	var (
		mu  sync.Mutex
		ok  int
		wg  sync.WaitGroup
		d   = s.duration(3 * time.Second)
		cpu = srv.cpuTime()
	)
	start := time.Now()
	for range 2 {
		wg.Go(func() {
			for time.Since(start) < d {
				if srv.call(time.Second) == nil {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	used := (srv.cpuTime() - cpu).Seconds()
	if ok == 0 {
		return 0, fmt.Errorf("no call succeeded in %v", took)
	}
	// Calls per second of the server's CPU time: what one core does,
	// whether or not the process had all of it, and without the gaps of
	// a closed loop. Without /proc, the throughput stands in for it.
	capacity := float64(ok) / took.Seconds()
	if used > 0 {
		capacity = float64(ok) / used
	}
	s.emit("CPUCapacity/unprotected", ok+len(lats),
		metric{capacity, "capacity/s"},
		metric{float64(ok) / took.Seconds(), "calls/s"},
		metric{ms(percentile(lats, 50)), "unloaded-p50-ms"},
		metric{ms(percentile(lats, 99)), "unloaded-p99-ms"},
		metric{used / took.Seconds(), "server-cpu"})
	return capacity, nil
}

// cpuSheddingCells runs the loads of cpuLoads against a fresh server with
// protection p and reports each.
func cpuSheddingCells(s settings, iso cpuIsolation, p string, capacity float64) error {
	srv, err := startCPUServer(p, iso)
	if err != nil {
		return err
	}
	defer srv.stop()
	// Each load starts once every call of the one before has returned:
	// by then the server has stopped working on them (it checks the
	// call's context between chunks of work).
	for _, l := range cpuLoads {
		d := s.duration(4 * time.Second)
		cpu, t0 := srv.cpuTime(), time.Now()
		r := srv.openLoop(l.mult*capacity, d)
		// CPU time over the wall time of the same span, which ends when
		// the last call has returned.
		used := (srv.cpuTime() - cpu).Seconds() / time.Since(t0).Seconds()
		goodput := float64(len(r.latencies)) / r.offered.Seconds()
		steady := float64(r.steadyOK) / (r.offered.Seconds() / 2)
		s.emit("CPUShedding/"+l.name+"/"+p, r.calls,
			metric{goodput, "goodput/s"},
			metric{goodput / capacity, "goodput/capacity"},
			metric{steady / capacity, "steady-goodput/capacity"},
			metric{ms(percentile(r.latencies, 50)), "admitted-p50-ms"},
			metric{ms(percentile(r.latencies, 99)), "admitted-p99-ms"},
			metric{100 * float64(r.shed) / float64(max(r.calls, 1)), "shed-%"},
			metric{used, "server-cpu"})
	}
	return nil
}

// cpuCell is what one load achieved against one server.
type cpuCell struct {
	calls     int             // offered
	offered   time.Duration   // how long the load was offered
	latencies []time.Duration // of the calls that succeeded
	steadyOK  int             // successful calls started in the second half
	shed      int             // calls the server rejected
}

// cpuIsolation says how the server process is kept to one core: the
// cgroup.procs files it joins (a cgroup with a quota of one CPU), the
// core it is pinned to (-1 for none), and the directories to remove
// afterwards.
type cpuIsolation struct {
	join []string
	core int
	dirs []string
	desc string
}

// isolateCPU prepares the server's isolation: a cgroup v1 "cpu" and
// "cpuacct" group with a quota of one CPU, when the process may create one
// (as root), which the server process sees as the root of each hierarchy
// (see viewCgroupsAsRoot), so that every library's CPU reading is the
// server's own; and
// the last core of the machine for the process, when it has more than one.
// Without a cgroup, every library reads the CPU of its whole cgroup or
// host, the load generator's included, and the report says so.
func isolateCPU() cpuIsolation {
	iso := cpuIsolation{core: -1}
	if canSetUp && runtime.NumCPU() > 1 {
		iso.core = runtime.NumCPU() - 1
	}
	removeStaleCgroups()
	name := fmt.Sprintf("%s%d", cgroupPrefix, os.Getpid())
	cpuDir := filepath.Join("/sys/fs/cgroup/cpu", name)
	acctDir := filepath.Join("/sys/fs/cgroup/cpuacct", name)
	err := func() error {
		if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"); err != nil {
			return err
		}
		if err := os.Mkdir(cpuDir, 0o755); err != nil {
			return err
		}
		iso.dirs = append(iso.dirs, cpuDir)
		if err := os.WriteFile(filepath.Join(cpuDir, "cpu.cfs_period_us"), []byte("100000"), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(cpuDir, "cpu.cfs_quota_us"), []byte("100000"), 0o644); err != nil {
			return err
		}
		// The group competes with the processes outside it by its
		// weight, whatever the nice value inside: ten times the
		// default, as for the nice value of the server process.
		if err := os.WriteFile(filepath.Join(cpuDir, "cpu.shares"), []byte("10240"), 0o644); err != nil {
			return err
		}
		iso.join = append(iso.join, filepath.Join(cpuDir, "cgroup.procs"))
		// cpu and cpuacct are often mounted together, and then the
		// second directory is the first.
		if _, err := os.Stat(filepath.Join(cpuDir, "cpuacct.usage")); err == nil {
			return nil
		}
		if err := os.Mkdir(acctDir, 0o755); err != nil {
			return err
		}
		iso.dirs = append(iso.dirs, acctDir)
		iso.join = append(iso.join, filepath.Join(acctDir, "cgroup.procs"))
		return nil
	}()
	if err == nil {
		iso.desc = "a cgroup v1 of its own with a quota of 1 CPU and 10x the default CPU weight, mounted as the root of its hierarchies in a mount namespace of its own (as in a container)"
	} else {
		iso.release()
		iso.join, iso.dirs = nil, nil
		iso.desc = "no cgroup of its own (" + strings.ReplaceAll(err.Error(), ":", "") + "), every library reads the CPU of the whole cgroup or host"
	}
	if iso.core >= 0 {
		iso.desc += ", pinned to CPU " + strconv.Itoa(iso.core)
	}
	iso.desc += fmt.Sprintf(", nice %d where allowed, GOMAXPROCS=1", cpuServerNice)
	return iso
}

// cgroupPrefix starts the name of every cgroup isolateCPU creates; the
// creating process's pid follows.
const cgroupPrefix = "grpcres-bench-"

// removeStaleCgroups removes the cgroups of runs whose process is gone (a
// run that was killed cannot remove its own), best effort.
func removeStaleCgroups() {
	for _, h := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct"} {
		dirs, _ := filepath.Glob(filepath.Join(h, cgroupPrefix+"*")) // the pattern is valid
		for _, d := range dirs {
			pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), cgroupPrefix))
			if err != nil {
				continue
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
				_ = os.Remove(d) // fails while a process is still in it, which is right
			}
		}
	}
}

// release removes the cgroups, which are empty once their processes
// ended.
func (iso cpuIsolation) release() {
	for i := len(iso.dirs) - 1; i >= 0; i-- {
		_ = os.Remove(iso.dirs[i]) // best effort: a leftover empty cgroup costs nothing
	}
}

// cpuServer is a running server process and a connection to it.
type cpuServer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	cc     *grpc.ClientConn
	client testingv1.TestServiceClient
}

// startCPUServer starts this binary as the server process with protection
// p, isolated by iso, and connects to it.
func startCPUServer(p string, iso cpuIsolation) (*cpuServer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), envCPUServer+"="+p, "GOMAXPROCS=1")
	// The first start sets the process up (cgroups, core, priority), then
	// starts it again; see joinAndRestart.
	if canSetUp {
		cmd.Env = append(cmd.Env, envCPUServerJoin+"="+strings.Join(iso.join, ","))
	}
	if iso.core >= 0 {
		cmd.Env = append(cmd.Env, envCPUServerCore+"="+strconv.Itoa(iso.core))
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &cpuServer{cmd: cmd, stdin: stdin}
	type ready struct {
		target string
		err    error
	}
	ch := make(chan ready, 1)
	go func() {
		t, err := readReady(bufio.NewReader(stdout))
		ch <- ready{t, err}
		_, _ = io.Copy(io.Discard, stdout) // nothing more is expected; keep the pipe drained
	}()
	var r ready
	select {
	case r = <-ch:
	case <-time.After(30 * time.Second):
		r.err = errors.New("server process: not ready within 30s")
	}
	if r.err == nil {
		s.cc, r.err = grpc.NewClient(r.target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDisableRetry())
	}
	if r.err != nil {
		s.stop()
		return nil, r.err
	}
	s.client = testingv1.NewTestServiceClient(s.cc)
	// The first call connects; it has all the time it needs.
	if err := s.call(10 * time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("first call: %w", err)
	}
	return s, nil
}

// call makes one call with deadline d.
func (s *cpuServer) call(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, err := s.client.IdempotentUnary(ctx, &testingv1.IdempotentUnaryRequest{})
	return err
}

// openLoop offers rate calls a second for d (a call every 1/rate, whatever
// the answers), each with the deadline cpuDeadline.
func (s *cpuServer) openLoop(rate float64, d time.Duration) cpuCell {
	n := max(1, int(rate*d.Seconds()))
	interval := time.Duration(float64(time.Second) / rate)
	var (
		mu  sync.Mutex
		res = cpuCell{calls: n}
		wg  sync.WaitGroup
	)
	start := time.Now()
	half := start.Add(d / 2)
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait) // pacing the open loop: the load under test
		}
		wg.Go(func() {
			t0 := time.Now()
			err := s.call(cpuDeadline)
			took := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				res.latencies = append(res.latencies, took)
				if !t0.Before(half) {
					res.steadyOK++
				}
			case status.Code(err) != codes.DeadlineExceeded:
				res.shed++
			}
		})
	}
	res.offered = time.Since(start)
	wg.Wait()
	return res
}

// cpuTime returns the CPU time (user and system) the server process has
// used so far, from /proc/<pid>/stat, or 0 when that cannot be read.
func (s *cpuServer) cpuTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	return procStatCPU(string(b))
}

// clockTicks is the unit of the times in /proc/<pid>/stat (USER_HZ), 100
// on every Linux architecture Go supports.
const clockTicks = 100

// maxTicks bounds each of utime and stime (about 20 years of CPU), so that
// their sum in nanoseconds cannot overflow.
const maxTicks = 1 << 36

// procStatCPU returns utime+stime from the text of /proc/<pid>/stat, or 0
// when it does not parse. The command name (field 2) may hold spaces and
// parentheses, so the fields are counted from its last ')'. Values above
// maxTicks count as not parsing.
func procStatCPU(stat string) time.Duration {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0
	}
	u, err1 := strconv.ParseUint(f[11], 10, 63)
	st, err2 := strconv.ParseUint(f[12], 10, 63)
	if err1 != nil || err2 != nil || u > maxTicks || st > maxTicks {
		return 0
	}
	return time.Duration(u+st) * (time.Second / clockTicks)
}

// stop closes the connection, tells the server process to end (EOF on its
// stdin) and waits for it, killing it after 10s.
func (s *cpuServer) stop() {
	if s.cc != nil {
		s.cc.Close()
	}
	s.stdin.Close()
	done := make(chan struct{})
	go func() {
		_ = s.cmd.Wait() // its exit status says nothing the results do not
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

package fleet

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment of a helper process.
const (
	helperEnv = "FLEET_HELPER" // the role to run (a key of helpers)
	indexEnv  = "FLEET_INDEX"  // the process's index among those started together
)

// procStopTimeout bounds how long stopping a helper waits for it to exit
// on its own (its stdin closed) before killing it.
const procStopTimeout = 15 * time.Second

// proc is a helper process: the test binary re-executed in one role. The
// test talks to it through lines: it writes commands to the helper's stdin
// (Send) and reads the lines the helper prints on stdout (Next, Expect).
// A helper exits when its stdin closes, so that no process outlives its
// test. Its stderr is kept and logged if it fails.
type proc struct {
	t     testing.TB
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string   // stdout, line by line; closed at EOF
	done  chan struct{} // closed once the process has exited
	err   error         // the exit, set before done closes

	mu     sync.Mutex
	stderr bytes.Buffer
}

// startProcs starts n helper processes in role, the i-th (from 0) with
// env(i) added to its environment (env may be nil). They are stopped (stdin
// closed, then killed after procStopTimeout) when the test ends.
func startProcs(t testing.TB, role string, n int, env func(i int) []string) []*proc {
	t.Helper()
	if _, ok := helpers[role]; !ok {
		t.Fatalf("no helper role %q", role)
	}
	ps := make([]*proc, n)
	for i := range n {
		var extra []string
		if env != nil {
			extra = env(i)
		}
		ps[i] = startProc(t, role, i, extra)
	}
	return ps
}

func startProc(t testing.TB, role string, i int, extra []string) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+role, fmt.Sprintf("%s=%d", indexEnv, i))
	cmd.Env = append(cmd.Env, extra...)
	p := &proc{
		t:     t,
		name:  fmt.Sprintf("%s[%d]", role, i),
		cmd:   cmd,
		lines: make(chan string, 1024),
		done:  make(chan struct{}),
	}
	cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	go func() {
		<-read // Wait closes stdout: read it all first
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	return p
}

// Send writes one command line to the helper's stdin.
func (p *proc) Send(format string, args ...any) {
	p.t.Helper()
	if _, err := fmt.Fprintf(p.stdin, format+"\n", args...); err != nil {
		p.t.Fatalf("%s: send: %v", p.name, err)
	}
}

// Next returns the next line the helper printed, waiting at most timeout;
// ok is false when none came in time or the helper closed its stdout.
func (p *proc) Next(timeout time.Duration) (line string, ok bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case line, ok = <-p.lines:
		return line, ok
	case <-timer.C:
		return "", false
	}
}

// Expect returns the first line starting with prefix (skipping others,
// which are logged), failing the test if none comes within timeout.
func (p *proc) Expect(prefix string, timeout time.Duration) string {
	p.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.Wait(procStopTimeout)
				p.t.Fatalf("%s: exited (%v) before a line %q; stderr:\n%s", p.name, p.err, prefix, p.Stderr())
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
			p.t.Logf("%s: %s", p.name, line)
		case <-timer.C:
			p.t.Fatalf("%s: no line %q within %v; stderr:\n%s", p.name, prefix, timeout, p.Stderr())
		}
	}
}

// Stderr returns what the helper wrote to stderr so far.
func (p *proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// Wait waits at most timeout for the helper to exit and returns its exit
// error (nil for exit code 0); ok is false when it has not exited in time.
func (p *proc) Wait(timeout time.Duration) (err error, ok bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.err, true
	case <-timer.C:
		return nil, false
	}
}

// stop closes the helper's stdin, which tells it to exit, and kills it if
// it has not exited within procStopTimeout. A helper that failed has its
// stderr logged.
func (p *proc) stop() {
	p.stdin.Close()
	// Drain the lines nobody will read while waiting: a reader blocked on
	// a full channel stops reading stdout, and a helper blocked on a full
	// pipe neither exits nor lets Wait return after a kill.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for range p.lines {
		}
	}()
	err, ok := p.Wait(procStopTimeout)
	if !ok {
		_ = p.cmd.Process.Kill()
		<-p.done
		err = p.err
		p.t.Errorf("%s: did not exit within %v of its stdin closing; killed", p.name, procStopTimeout)
	}
	if err != nil || p.t.Failed() {
		p.t.Logf("%s: exit %v; stderr:\n%s", p.name, err, p.Stderr())
	}
	<-drained // the reader has ended
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

// The helper's side of the conversation.

// helperIndex returns the process's index among those started together.
func helperIndex() int {
	var i int
	fmt.Sscan(os.Getenv(indexEnv), &i)
	return i
}

// helperOut serializes the helper's lines to stdout.
var helperOut sync.Mutex

// emit prints one line to the test (stdout). Safe for concurrent use.
func emit(format string, args ...any) {
	helperOut.Lock()
	defer helperOut.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
}

// commands returns the command lines the test sends; the channel closes
// when stdin closes, which is the helper's signal to exit.
func commands() <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// fail prints a message to stderr and returns exit code 1, for helpers.
func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	return 1
}

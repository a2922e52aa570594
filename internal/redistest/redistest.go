// Package redistest starts a real redis-server for tests: Debian's
// redis-server binary on a free loopback port, persistence off, in a
// temporary directory, stopped when the test ends.
//
//	srv := redistest.Start(t)
//	client := connect(srv.Addr())
//	srv.Kill()    // an outage
//	srv.Restart() // the same server, same port, empty
//
// Start skips the test with one line saying how to install the server when
// redis-server is missing, except when the environment variable CI is
// "true", where a missing server fails the test. Launch is the form for a
// TestMain or a helper process, which have no *testing.T.
//
// A Server is safe for concurrent use.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// MissingMessage is the line a test skips with when redis-server is not
// installed.
const MissingMessage = "redis-server not found: install Debian's redis-server package (apt-get install -y redis-server) to run the fleet tests"

// ErrMissing is returned by [Launch] when no redis-server binary is found.
var ErrMissing = errors.New(MissingMessage)

// startTimeout bounds how long a start waits for the server to answer
// PING. Generous: a loaded 2-core machine may take a while to exec it.
const startTimeout = 15 * time.Second

// Server is a running (or killed) redis-server owned by a test.
type Server struct {
	bin  string
	dir  string
	port int

	mu     sync.Mutex
	proc   *os.Process // nil when stopped
	exited chan error  // receives the process's exit once
	out    *os.File
}

// Binary returns the path of redis-server: $REDIS_SERVER when set (and
// ErrMissing when it names no file), else
// redis-server on $PATH, else /usr/bin/redis-server; ErrMissing when none
// exists.
func Binary() (string, error) {
	if p := os.Getenv("REDIS_SERVER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", ErrMissing
		}
		return p, nil
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server", nil
	}
	return "", ErrMissing
}

// Start starts a redis-server for t and stops it in t.Cleanup. It skips
// t (fails it when CI=true) when redis-server is missing, and fails t when
// the server does not start.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if _, err := Binary(); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal(MissingMessage)
		}
		tb.Skip(MissingMessage)
	}
	s, err := Launch(tb.TempDir())
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Launch starts a redis-server whose working directory is dir (which must
// exist) and returns once it answers PING. The caller must call Stop. It
// returns ErrMissing when redis-server is not installed.
func Launch(dir string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir}
	var last error
	for range 10 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.port = port
		if last = s.start(); last == nil {
			return s, nil
		}
	}
	return nil, last
}

// Addr returns the server's address, "127.0.0.1:port". It stays the same
// across Kill and Restart.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Port returns the server's port.
func (s *Server) Port() int { return s.port }

// Kill stops the server abruptly (SIGKILL), as in an outage, and waits
// until the process is gone. Connections to it break. Kill of a stopped
// server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

// Restart starts a stopped (or running: it is killed first) server again
// on the same port, empty, and returns once it answers PING. It retries
// while the port is still held, within a bounded time.
func (s *Server) Restart() error {
	s.mu.Lock()
	s.killLocked()
	s.mu.Unlock()
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.start()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond) // the port may linger a moment
	}
}

// Stop kills the server; it is Kill under the name a cleanup reads best.
func (s *Server) Stop() { s.Kill() }

// Running reports whether the server process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// Do sends one command in RESP on a fresh
// connection and returns the reply's first line (for example "+PONG" or
// ":1"), for tests that poke the server without a client library.
func (s *Server) Do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (s *Server) killLocked() {
	if s.proc == nil {
		return
	}
	_ = s.proc.Kill()
	<-s.exited
	s.proc = nil
	s.out.Close()
	s.out = nil
}

// start runs redis-server on s.port and waits for PING.
func (s *Server) start() error {
	out, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--loglevel", "warning",
		"--daemonize", "no",
		"--protected-mode", "no",
	)
	cmd.Dir = s.dir
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		out.Close()
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case err := <-exited:
			out.Close()
			return fmt.Errorf("redis-server on port %d exited at start (%v); log: %s", s.port, err, tail(filepath.Join(s.dir, "redis.log")))
		default:
		}
		if r, err := s.Do("PING"); err == nil && r == "+PONG" {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			out.Close()
			return fmt.Errorf("redis-server on port %d did not answer PING within %v", s.port, startTimeout)
		}
		time.Sleep(10 * time.Millisecond) // polling PING with a bounded deadline
	}
	s.mu.Lock()
	s.proc = cmd.Process
	s.exited = exited
	s.out = out
	s.mu.Unlock()
	return nil
}

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last few hundred bytes of the file at path.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return strings.TrimSpace(string(b))
}

package testservice

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// bufSize is the in-memory buffer of a bufconn listener.
const bufSize = 1 << 20

// Option configures a [Server].
type Option func(*config)

type config struct {
	tcp        bool
	addr       string
	service    *Service
	serverOpts []grpc.ServerOption
	register   []func(*grpc.Server)
}

// WithTCP serves over real TCP on addr instead of bufconn. An empty addr
// means "127.0.0.1:0", a free loopback port.
func WithTCP(addr string) Option {
	return func(c *config) {
		c.tcp = true
		c.addr = addr
	}
}

// WithService serves s instead of a new Service, so that its counters
// survive several servers.
func WithService(s *Service) Option {
	return func(c *config) { c.service = s }
}

// WithServerOptions passes opts, such as interceptors, to grpc.NewServer.
func WithServerOptions(opts ...grpc.ServerOption) Option {
	return func(c *config) { c.serverOpts = append(c.serverOpts, opts...) }
}

// WithRegister registers further services, such as health checking, on
// every gRPC server the Server creates.
func WithRegister(fn func(*grpc.Server)) Option {
	return func(c *config) { c.register = append(c.register, fn) }
}

// Server serves a [Service] on a gRPC server over bufconn (the default) or
// loopback TCP. It can be stopped and restarted on the same address while
// clients stay connected to that address, so that tests can take the server
// away mid-call.
//
// A Server is safe for concurrent use. Its zero value is not usable; create
// one with [Start] or [StartTB].
type Server struct {
	cfg  config
	addr string // TCP: the address bound first, reused on restart

	mu      sync.Mutex
	grpcSrv *grpc.Server
	buf     *bufconn.Listener // bufconn: the listener clients dial now
	serving sync.WaitGroup
}

// Start starts a server as the options say. Stop it with [Server.Stop].
func Start(opts ...Option) (*Server, error) {
	s := &Server{}
	for _, o := range opts {
		o(&s.cfg)
	}
	if s.cfg.service == nil {
		s.cfg.service = NewService()
	}
	if s.cfg.tcp {
		s.addr = s.cfg.addr
		if s.addr == "" {
			s.addr = "127.0.0.1:0"
		}
	}
	if err := s.Restart(); err != nil {
		return nil, err
	}
	return s, nil
}

// StartTB starts a server as [Start] does, fails tb if it cannot, and stops
// the server when tb's test ends.
func StartTB(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s, err := Start(opts...)
	if err != nil {
		tb.Fatalf("testservice: start: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Service returns the service the server serves.
func (s *Server) Service() *Service { return s.cfg.service }

// Target returns the target clients dial: "127.0.0.1:PORT" for TCP, or
// "passthrough:///bufconn" for bufconn (use [Server.Dial] for bufconn, which
// adds the dialer).
func (s *Server) Target() string {
	if s.cfg.tcp {
		return s.addr
	}
	return "passthrough:///bufconn"
}

// Dial creates a client connection to the server with insecure transport
// credentials and, for bufconn, the in-memory dialer, followed by opts.
// The connection reaches the server across restarts.
func (s *Server) Dial(opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	base := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if !s.cfg.tcp {
		base = append(base, grpc.WithContextDialer(s.dialBufconn))
	}
	return grpc.NewClient(s.Target(), append(base, opts...)...)
}

// DialTB dials as [Server.Dial] does, fails tb if it cannot, and closes the
// connection when tb's test ends.
func (s *Server) DialTB(tb testing.TB, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	conn, err := s.Dial(opts...)
	if err != nil {
		tb.Fatalf("testservice: dial: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Client returns a TestService client on a new connection made by
// [Server.DialTB].
func (s *Server) Client(tb testing.TB, opts ...grpc.DialOption) testingv1.TestServiceClient {
	tb.Helper()
	return testingv1.NewTestServiceClient(s.DialTB(tb, opts...))
}

func (s *Server) dialBufconn(ctx context.Context, _ string) (net.Conn, error) {
	s.mu.Lock()
	buf := s.buf
	s.mu.Unlock()
	if buf == nil {
		return nil, errors.New("testservice: server stopped")
	}
	return buf.DialContext(ctx)
}

// Stop stops the server at once: open connections are closed and
// in-flight calls fail with UNAVAILABLE. Stopping a stopped server does
// nothing.
func (s *Server) Stop() { s.stop((*grpc.Server).Stop) }

// GracefulStop stops accepting new calls and waits for in-flight calls to
// end before it returns.
func (s *Server) GracefulStop() { s.stop((*grpc.Server).GracefulStop) }

func (s *Server) stop(how func(*grpc.Server)) {
	s.mu.Lock()
	g := s.grpcSrv
	s.grpcSrv, s.buf = nil, nil
	s.mu.Unlock()
	if g == nil {
		return
	}
	how(g)
	s.serving.Wait()
}

// Restart serves again on the same address after a stop (TCP: the same
// port; bufconn: the same target, so existing client connections
// reconnect). Restarting a running server does nothing.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.grpcSrv != nil {
		return nil
	}
	var lis net.Listener
	if s.cfg.tcp {
		l, err := net.Listen("tcp", s.addr)
		if err != nil {
			return fmt.Errorf("testservice: listen on %s: %w", s.addr, err)
		}
		s.addr = l.Addr().String()
		lis = l
	} else {
		s.buf = bufconn.Listen(bufSize)
		lis = s.buf
	}
	g := grpc.NewServer(s.cfg.serverOpts...)
	testingv1.RegisterTestServiceServer(g, s.cfg.service)
	for _, r := range s.cfg.register {
		r(g)
	}
	s.grpcSrv = g
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		// Serve returns nil after Stop or GracefulStop, and an error only
		// when the listener fails, which ends this server as Stop would.
		_ = g.Serve(lis)
	}()
	return nil
}

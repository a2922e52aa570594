package interceptors

import (
	"context"
	"time"

	"google.golang.org/grpc"
)

// The interceptors below apply one pattern each, for users who compose
// their own chain, possibly per method with go-grpc-middleware's
// selector.UnaryClientInterceptor (selector.StreamClientInterceptor for the
// stream ones). Each is a [Client] whose default policy
// sets that pattern alone, so they behave exactly as the pipeline does;
// opts may add an Observer or a per-target budget. Chained, they should
// follow the pipeline's order, outermost first: timeout, fallback, retry or
// hedge, breaker, bulkhead. The errors of inner ones are understood by outer
// ones: a retry does not retry a breaker's or bulkhead's rejection, and a
// breaker does not count a bulkhead's rejection.

// UnaryClientRetry returns an interceptor that retries failed calls as p
// says, with its per-attempt timeout. It returns an error when p is
// invalid.
func UnaryClientRetry(p RetryPolicy, opts ...ClientOption) (grpc.UnaryClientInterceptor, error) {
	return single(Policy{Retry: &p}, opts)
}

// UnaryClientHedge returns an interceptor that hedges the calls of
// idempotent methods as p says. It returns an error when p is invalid.
func UnaryClientHedge(p HedgingPolicy, opts ...ClientOption) (grpc.UnaryClientInterceptor, error) {
	return single(Policy{Hedging: &p}, opts)
}

// UnaryClientBreaker returns an interceptor that guards calls with circuit
// breakers as p says: a rejected call fails with UNAVAILABLE matching
// resilience.ErrCircuitOpen, without reaching the server. It returns an
// error when p is invalid.
func UnaryClientBreaker(p BreakerPolicy, opts ...ClientOption) (grpc.UnaryClientInterceptor, error) {
	return single(Policy{Breaker: &p}, opts)
}

// UnaryClientBulkhead returns an interceptor that bounds the calls in
// flight as p says: a rejected call fails with RESOURCE_EXHAUSTED matching
// resilience.ErrBulkheadFull. It returns an error when p is invalid.
func UnaryClientBulkhead(p BulkheadPolicy, opts ...ClientOption) (grpc.UnaryClientInterceptor, error) {
	return single(Policy{Bulkhead: &p}, opts)
}

// UnaryClientFallback returns an interceptor that answers failed calls
// with p.Func as p says. It returns an error when p is invalid.
func UnaryClientFallback(p FallbackPolicy, opts ...ClientOption) (grpc.UnaryClientInterceptor, error) {
	return single(Policy{Fallback: &p}, opts)
}

// UnaryClientTimeout returns an interceptor that gives calls without a
// deadline one of d; a call that runs out of it fails with
// DEADLINE_EXCEEDED matching *resilience.TimeoutError. Calls that have a
// deadline keep theirs. A d of zero or less returns an interceptor that
// only calls the invoker.
func UnaryClientTimeout(d time.Duration) grpc.UnaryClientInterceptor {
	if d <= 0 {
		return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
	}
	return build(Policy{DefaultTimeout: d}, clientConfig{}).UnaryClientInterceptor()
}

// StreamClientRetry returns a stream interceptor that retries streams as p
// says until they are committed, replaying the messages sent so far (see
// "Streams" in the package documentation). It returns an error when p is
// invalid.
func StreamClientRetry(p RetryPolicy, opts ...ClientOption) (grpc.StreamClientInterceptor, error) {
	return singleStream(Policy{Retry: &p}, opts)
}

// StreamClientBreaker returns a stream interceptor that guards each
// attempt of a stream with circuit breakers as p says: a rejected stream
// fails with UNAVAILABLE matching resilience.ErrCircuitOpen without
// reaching the server, and the outcome is the stream's final status. It
// returns an error when p is invalid.
func StreamClientBreaker(p BreakerPolicy, opts ...ClientOption) (grpc.StreamClientInterceptor, error) {
	return singleStream(Policy{Breaker: &p}, opts)
}

// StreamClientBulkhead returns a stream interceptor that bounds the
// streams in flight as p says, each holding a slot until it ends: a
// rejected stream fails with RESOURCE_EXHAUSTED matching
// resilience.ErrBulkheadFull. It returns an error when p is invalid.
func StreamClientBulkhead(p BulkheadPolicy, opts ...ClientOption) (grpc.StreamClientInterceptor, error) {
	return singleStream(Policy{Bulkhead: &p}, opts)
}

// StreamClientTimeout returns a stream interceptor that gives streams
// without a deadline one of d, covering the whole stream; a stream that
// runs out of it fails with DEADLINE_EXCEEDED matching
// *resilience.TimeoutError. Streams that have a deadline keep theirs. A d
// of zero or less returns an interceptor that only calls the streamer.
func StreamClientTimeout(d time.Duration) grpc.StreamClientInterceptor {
	if d <= 0 {
		return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(ctx, desc, cc, method, opts...)
		}
	}
	return build(Policy{DefaultTimeout: d}, clientConfig{}).StreamClientInterceptor()
}

func singleStream(p Policy, opts []ClientOption) (grpc.StreamClientInterceptor, error) {
	c, err := NewClient(p, opts...)
	if err != nil {
		return nil, err
	}
	return c.StreamClientInterceptor(), nil
}

func single(p Policy, opts []ClientOption) (grpc.UnaryClientInterceptor, error) {
	c, err := NewClient(p, opts...)
	if err != nil {
		return nil, err
	}
	return c.UnaryClientInterceptor(), nil
}

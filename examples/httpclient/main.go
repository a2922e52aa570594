// Command httpclient is a resilient HTTP client built on the engines: every
// request runs through retry(breaker(timeout(GET))). 5xx answers are
// retried, a Retry-After header is honoured as server pushback, 4xx
// answers are not retried and do not count against the breaker.
//
// It starts its own flaky HTTP server on 127.0.0.1 and talks only to it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/retry"
)

// statusError is an HTTP answer that is not 2xx.
type statusError struct {
	code int
}

func (e *statusError) Error() string { return "http status " + strconv.Itoa(e.code) }

// pushbackError adds the server's Retry-After to a statusError, so that
// the retry engine waits as long as the server asked.
type pushbackError struct {
	*statusError
	after time.Duration
}

// RetryDelay implements retry.Pushback.
func (e pushbackError) RetryDelay() (time.Duration, bool) { return e.after, true }

// Client fetches URLs through retry, a circuit breaker and a timeout.
type Client struct {
	http    *http.Client
	retry   *retry.Policy
	breaker *breaker.Breaker
	timeout time.Duration
}

// NewClient returns a client whose requests make at most 3 attempts, each
// bounded by timeout, behind one breaker for the whole host.
func NewClient(timeout time.Duration) *Client {
	transient := func(err error) bool {
		var se *statusError
		return !errors.As(err, &se) || se.code >= 500 // network errors and 5xx
	}
	return &Client{
		http:    &http.Client{},
		retry:   retry.New(3, retry.WithBackoff(retry.Exponential(5*time.Millisecond, 50*time.Millisecond, 2)), retry.WithRetryIf(transient)),
		breaker: breaker.New(breaker.Config{FailureThreshold: 5, Timeout: time.Minute, Classify: classify}),
		timeout: timeout,
	}
}

// classify counts 4xx answers as successes of the server: it answered.
func classify(err error) breaker.Outcome {
	var se *statusError
	if errors.As(err, &se) && se.code < 500 {
		return breaker.Success
	}
	return breaker.DefaultClassify(err)
}

// Fetch returns the body at url.
func (c *Client) Fetch(ctx context.Context, url string) (string, error) {
	return retry.DoValue(ctx, c.retry, func(ctx context.Context) (string, error) {
		var body string
		err := c.breaker.Execute(ctx, func(ctx context.Context) error {
			return resilience.WithTimeout(ctx, c.timeout, func(ctx context.Context) error {
				var err error
				body, err = c.get(ctx, url)
				return err
			})
		})
		return body, err
	})
}

func (c *Client) get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", retry.Permanent(err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode/100 == 2 {
		return string(b), nil
	}
	se := &statusError{code: resp.StatusCode}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		return "", pushbackError{se, time.Duration(s) * time.Second}
	}
	return "", se
}

func main() {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		switch r.URL.Path {
		case "/flaky": // two 503s, then an answer
			if n <= 2 {
				w.Header().Set("Retry-After", "0")
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprint(w, "hello after retries")
		case "/slow": // hangs longer than the client's timeout
			select {
			case <-time.After(10 * time.Second):
			case <-r.Context().Done():
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	c := NewClient(200 * time.Millisecond)
	ctx := context.Background()

	body, err := c.Fetch(ctx, srv.URL+"/flaky")
	fmt.Printf("/flaky: %q err=%v (server hits: %d)\n", body, err, hits.Load())

	hits.Store(0)
	_, err = c.Fetch(ctx, srv.URL+"/missing")
	fmt.Printf("/missing: err=%v (server hits: %d, not retried)\n", err, hits.Load())

	hits.Store(0)
	_, err = c.Fetch(ctx, srv.URL+"/slow")
	var exhausted *resilience.RetriesExhaustedError
	fmt.Printf("/slow: timed out: %v, attempts: %d\n", errors.Is(err, context.DeadlineExceeded), attemptsOf(err, &exhausted))
	fmt.Println("breaker:", c.breaker.State())

	// Two more timeouts open the breaker (5 failures in a row): the client
	// then fails fast without touching the server.
	_, _ = c.Fetch(ctx, srv.URL+"/slow")
	hits.Store(0)
	_, err = c.Fetch(ctx, srv.URL+"/flaky")
	fmt.Printf("breaker: %v; next call fails fast: %v (server hits: %d)\n", c.breaker.State(), errors.Is(err, resilience.ErrCircuitOpen), hits.Load())
}

func attemptsOf(err error, target **resilience.RetriesExhaustedError) int {
	if errors.As(err, target) {
		return (*target).Attempts
	}
	return 1
}

package console_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/engineeringlabs/grpc-resilience/console"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
)

// A console on an admin mux: the page is at /resilience/, the JSON at
// /resilience/snapshot.json and the live stream at /resilience/events.
func Example() {
	client, err := interceptors.NewClient(interceptors.Config{Default: interceptors.Policy{
		Retry:   &interceptors.RetryPolicy{MaxAttempts: 3},
		Breaker: &interceptors.BreakerPolicy{},
	}})
	if err != nil {
		log.Fatal(err)
	}
	srv, err := server.New(server.Config{Bulkhead: server.BulkheadConfig{Limit: 64}})
	if err != nil {
		log.Fatal(err)
	}

	c, err := console.New(console.Config{TraceURL: "http://localhost:16686/trace/{trace_id}"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	defer c.AddClient("payments", client)()
	defer c.AddServer("api", srv)()

	admin := http.NewServeMux()
	admin.Handle("/resilience/", c)
	// In a program: http.ListenAndServe("127.0.0.1:8089", admin).

	rec := httptest.NewRecorder()
	admin.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8089/resilience/", nil))
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	// Output: 200 text/html; charset=utf-8
}

// The console answers requests addressed to an IP address or localhost;
// a console reached by a name lists it in AllowedHosts. Requests for
// other names are refused, so that a page of another site cannot read the
// console through DNS rebinding.
func ExampleConfig_allowedHosts() {
	c, err := console.New(console.Config{AllowedHosts: []string{"admin.internal"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for _, url := range []string{
		"http://127.0.0.1:8089/",
		"http://localhost:8089/",
		"http://admin.internal:8089/",
		"http://rebound.attacker.example:8089/",
	} {
		rec := httptest.NewRecorder()
		c.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, url, nil))
		fmt.Println(rec.Code, url)
	}
	// Output:
	// 200 http://127.0.0.1:8089/
	// 200 http://localhost:8089/
	// 200 http://admin.internal:8089/
	// 403 http://rebound.attacker.example:8089/
}

// The snapshot is plain data, for scripts and tests.
func ExampleConsole_Snapshot() {
	c, err := console.New(console.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	s := c.Snapshot()
	fmt.Println(s.Title, len(s.Pipelines), s.IntervalMS)
	// Output: grpc-resilience 0 1000
}

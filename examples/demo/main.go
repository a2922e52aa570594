// Command demo shows grpc-resilience at work: one gRPC server on loopback
// whose fault injector plays a schedule (healthy, a share of UNAVAILABLE, a
// full outage, recovery, an overload burst), and two clients that send it the
// same traffic side by side, one plain and one through the resilience
// pipeline. It prints a live line per second, a comparison table at the end,
// and writes a chart of success rate and p99 latency over time as SVG.
//
//	go run ./examples/demo                      # about 30 seconds
//	go run ./examples/demo -duration 10s -profile outage-only
//	go run ./examples/demo -otlp 127.0.0.1:4317 # traces to Jaeger
//	go run ./examples/demo -keep                # the console stays up
//
// While it runs, the live console (package console) shows the resilient
// client's and the server's pipelines on http://127.0.0.1:8089/.
//
// Every number printed is measured during the run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"
)

// config is what the flags set; defaultConfig gives the defaults.
type config struct {
	// Duration is the length of the fault schedule; the phases scale with it.
	Duration time.Duration
	// Rate is how many calls per second each client starts, in every phase.
	Rate int
	// Concurrency is how many calls each client starts at once in each
	// burst of the overload phase.
	Concurrency int
	// ServerLimit is the server bulkhead's limit: calls of one client that
	// run at once on the server.
	ServerLimit int
	// Profile names the fault schedule, a key of profiles.
	Profile string
	// OTLP is the host:port of an OTLP gRPC trace endpoint; empty: no
	// tracing.
	OTLP string
	// SVG is the path the chart is written to; empty: no chart.
	SVG string
	// Seed seeds the fault injector.
	Seed uint64
	// ConsoleAddr is the loopback address the live console is served on;
	// empty: no console. When it is defaultConsoleAddr and that port is
	// taken, the console takes a free port instead.
	ConsoleAddr string
	// Keep keeps the server, the clients' traffic and the console running
	// after the last phase, until the demo is interrupted: the schedule
	// plays again and again, faults included, without being recorded, so
	// that the console keeps showing breakers open and close.
	Keep bool
	// TraceURL is the console's link to a trace, with {trace_id}; used
	// only with OTLP.
	TraceURL string
	// JaegerQuery is the base URL of a Jaeger query API, such as
	// http://127.0.0.1:16686; when set, the demo prints the retried
	// call's trace read back from it as a tree. Needs OTLP.
	JaegerQuery string
}

// defaultConsoleAddr is where the console is served unless -console-addr
// says otherwise.
const defaultConsoleAddr = "127.0.0.1:8089"

func defaultConfig() config {
	return config{
		Duration:    30 * time.Second,
		Rate:        100,
		Concurrency: 48,
		ServerLimit: 16,
		Profile:     "default",
		SVG:         "demo.svg",
		Seed:        1,
		ConsoleAddr: defaultConsoleAddr,
		TraceURL:    "http://127.0.0.1:16686/trace/{trace_id}",
	}
}

// validate names the first bad flag and its value.
func (c config) validate() error {
	switch {
	case c.Duration < 500*time.Millisecond || c.Duration > time.Hour:
		return fmt.Errorf("-duration %v: must be between 500ms and 1h", c.Duration)
	case c.Rate < 1 || c.Rate > 5000:
		return fmt.Errorf("-rate %d: must be between 1 and 5000", c.Rate)
	case c.Concurrency < 1 || c.Concurrency > 5000:
		return fmt.Errorf("-concurrency %d: must be between 1 and 5000", c.Concurrency)
	case c.ServerLimit < 1 || c.ServerLimit > 5000:
		return fmt.Errorf("-server-limit %d: must be between 1 and 5000", c.ServerLimit)
	}
	if c.JaegerQuery != "" && c.OTLP == "" {
		return fmt.Errorf("-jaeger-query %s: needs -otlp", c.JaegerQuery)
	}
	if c.ConsoleAddr != "" {
		host, _, err := net.SplitHostPort(c.ConsoleAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("-console-addr %q: must be a loopback host:port, such as %s", c.ConsoleAddr, defaultConsoleAddr)
		}
	}
	if _, ok := profiles[c.Profile]; !ok {
		return fmt.Errorf("-profile %q: must be one of %s", c.Profile, strings.Join(profileNames(), ", "))
	}
	return nil
}

func profileNames() []string {
	names := make([]string, 0, len(profiles))
	for name := range profiles {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func main() {
	cfg := defaultConfig()
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of the fault schedule; the phases scale with it")
	flag.IntVar(&cfg.Rate, "rate", cfg.Rate, "calls per second each client starts")
	flag.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "calls each client starts at once in each overload burst")
	flag.IntVar(&cfg.ServerLimit, "server-limit", cfg.ServerLimit, "server bulkhead: calls of one client running at once")
	flag.StringVar(&cfg.Profile, "profile", cfg.Profile, "fault schedule: "+strings.Join(profileNames(), ", "))
	flag.StringVar(&cfg.OTLP, "otlp", cfg.OTLP, "host:port of an OTLP gRPC trace endpoint (plaintext), such as 127.0.0.1:4317")
	flag.StringVar(&cfg.SVG, "svg", cfg.SVG, "path of the chart to write; empty for none")
	flag.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the fault injector")
	flag.StringVar(&cfg.ConsoleAddr, "console-addr", cfg.ConsoleAddr, "loopback host:port of the live console; empty for none")
	flag.BoolVar(&cfg.Keep, "keep", cfg.Keep, "after the last phase, play the schedule (faults included) again and again, unrecorded, with the console up, until interrupted")
	flag.StringVar(&cfg.TraceURL, "trace-url", cfg.TraceURL, "the console's link to a trace, with {trace_id}; used with -otlp")
	flag.StringVar(&cfg.JaegerQuery, "jaeger-query", cfg.JaegerQuery, "base URL of a Jaeger query API, such as http://127.0.0.1:16686: print the retried call's trace as a tree (needs -otlp)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, cfg, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// run runs the demo as cfg says, writing what it shows to stdout. It
// returns once every call ended and the chart is written, or with the
// first error; ctx cancels the run.
func run(ctx context.Context, cfg config, stdout io.Writer) (err error) {
	if err := cfg.validate(); err != nil {
		return err
	}
	d, err := newDemo(ctx, cfg, stdout)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.close()) }()
	d.intro()
	if err := d.drive(ctx); err != nil {
		return err
	}
	d.report()
	if cfg.SVG != "" {
		if err := d.writeChart(cfg.SVG); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "chart: %s\n", cfg.SVG)
	}
	if cfg.JaegerQuery != "" {
		if err := d.printTrace(ctx); err != nil {
			fmt.Fprintln(stdout, "jaeger:", err)
		}
	}
	if cfg.Keep && ctx.Err() == nil {
		d.keep(ctx)
		return nil
	}
	return ctx.Err()
}

package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// shortConfig is a 3-second run, light enough for -race on a loaded
// machine.
func shortConfig(t *testing.T) config {
	cfg := defaultConfig()
	cfg.Duration = 3 * time.Second
	cfg.Rate = 60
	cfg.SVG = filepath.Join(t.TempDir(), "demo.svg")
	cfg.ConsoleAddr = "127.0.0.1:0"
	return cfg
}

// runDemo runs the demo with cfg and returns what it printed.
func runDemo(t *testing.T, cfg config) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, cfg, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	return out.String()
}

var liveLine = regexp.MustCompile(`(?m)^ +\d+(\.\d)?s (healthy|partial|outage|recovery|overload) +\|.*\| .*(closed|open|half-open)$`)

// okRates returns the ok column of the table rows of phase, per client.
func okRates(t *testing.T, out, phase string) map[string]float64 {
	t.Helper()
	_, table, found := strings.Cut(out, "\nPer phase")
	if !found {
		t.Fatalf("no table in:\n%s", out)
	}
	rates := map[string]float64{}
	label := ""
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) == 8 { // a resilient row repeats no phase
			f = append([]string{label}, f...)
		}
		if len(f) != 9 || !strings.HasSuffix(f[3], "%") {
			continue
		}
		label = f[0]
		if label != phase {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(f[3], "%"), 64)
		if err != nil {
			t.Fatalf("row %q: %v", line, err)
		}
		rates[f[1]] = v
	}
	if len(rates) != nClients {
		t.Fatalf("phase %s: rows for %v in:\n%s", phase, rates, table)
	}
	return rates
}

// The whole demo in 3 seconds: it ends, prints a live line per second and
// the table, writes a well-formed chart, and the resilient client answers
// more calls than the plain one while the server fails 30% of them.
func TestRun(t *testing.T) {
	cfg := shortConfig(t)
	out := runDemo(t, cfg)

	if got := len(liveLine.FindAllString(out, -1)); got != 3 {
		t.Errorf("%d live lines for a 3s run, want 3:\n%s", got, out)
	}
	for _, want := range []string{"plain client", "resilient client", "\noverall   plain", "\nserver: injected", "chart: " + cfg.SVG} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	partial := okRates(t, out, "partial")
	if partial["resilient"] <= partial["plain"] {
		t.Errorf("partial phase: resilient ok %.1f%%, plain %.1f%%; want resilient above plain\n%s",
			partial["resilient"], partial["plain"], out)
	}
	if partial["plain"] == 100 {
		t.Errorf("partial phase: the plain client lost no call; the faults were not injected\n%s", out)
	}
	checkSVG(t, cfg.SVG)
}

// checkSVG parses the chart and checks it has the phase labels and a line
// per series.
func checkSVG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	var root string
	lines := 0
	var texts strings.Builder
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Local
			}
			if tok.Name.Local == "polyline" {
				lines++
			}
		case xml.CharData:
			texts.Write(tok)
		}
	}
	if root != "svg" {
		t.Errorf("root element %q, want svg", root)
	}
	// Success rate, p99 and p50 for both clients, and the fallback line.
	if lines < 7 {
		t.Errorf("%d polylines, want at least 7", lines)
	}
	for _, label := range []string{"healthy", "partial", "outage", "recovery", "overload", "plain", "resilient"} {
		if !strings.Contains(texts.String(), label) {
			t.Errorf("chart has no label %q", label)
		}
	}
}

// collector is an OTLP trace collector: a real gRPC server that keeps the
// spans it receives.
type collector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu       sync.Mutex
	traceIDs map[string]bool
	services map[string]bool
}

func (c *collector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				c.services[kv.GetValue().GetStringValue()] = true
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.traceIDs[hexOf(s.GetTraceId())] = true
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// With -otlp, the demo exports spans to the endpoint, flushes them before
// it returns, and prints the id of a trace in which a call was retried;
// that trace reached the collector.
func TestRunOTLP(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{traceIDs: map[string]bool{}, services: map[string]bool{}}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, col)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	defer func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()

	cfg := shortConfig(t)
	cfg.Profile = "flaky-only"
	cfg.SVG = ""
	cfg.OTLP = lis.Addr().String()
	out := runDemo(t, cfg)

	m := regexp.MustCompile(`(?m)^retried-trace: ([0-9a-f]{32})$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no retried-trace line:\n%s", out)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if !col.traceIDs[m[1]] {
		t.Errorf("trace %s was not exported; the collector got %d traces", m[1], len(col.traceIDs))
	}
	if !col.services[serviceName] {
		t.Errorf("no span with service.name %q; got %v", serviceName, col.services)
	}
}

// Bad flags are errors that name the flag and its value.
func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		change func(*config)
		want   string
	}{
		{func(c *config) { c.Duration = time.Millisecond }, "-duration 1ms"},
		{func(c *config) { c.Rate = 0 }, "-rate 0"},
		{func(c *config) { c.Concurrency = -1 }, "-concurrency -1"},
		{func(c *config) { c.ServerLimit = 0 }, "-server-limit 0"},
		{func(c *config) { c.Profile = "chaos" }, `-profile "chaos"`},
		{func(c *config) { c.ConsoleAddr = "0.0.0.0:8089" }, `-console-addr "0.0.0.0:8089"`},
		{func(c *config) { c.ConsoleAddr = "localhost" }, `-console-addr "localhost"`},
		{func(c *config) { c.JaegerQuery = "http://127.0.0.1:16686" }, "-jaeger-query http://127.0.0.1:16686: needs -otlp"},
	} {
		cfg := defaultConfig()
		tc.change(&cfg)
		err := cfg.validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("validate() = %v, want an error naming %s", err, tc.want)
		}
		if err := run(context.Background(), cfg, io.Discard); err == nil {
			t.Errorf("run accepted a config with %s", tc.want)
		}
	}
	if err := defaultConfig().validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
}

// Every profile's schedule covers the run from start to end, phase after
// phase, whatever the duration.
func TestSchedule(t *testing.T) {
	for _, name := range profileNames() {
		for _, d := range []time.Duration{500 * time.Millisecond, 3 * time.Second, 30 * time.Second, 7*time.Minute + 3} {
			phases := schedule(name, d)
			if len(phases) != len(profiles[name]) {
				t.Fatalf("%s: %d phases, want %d", name, len(phases), len(profiles[name]))
			}
			at := time.Duration(0)
			for i, p := range phases {
				if p.start != at || p.end <= p.start {
					t.Errorf("%s over %v: phase %d is [%v, %v), want it to start at %v and not be empty", name, d, i, p.start, p.end, at)
				}
				if got := phaseAt(phases, p.start); got != i {
					t.Errorf("%s over %v: phaseAt(%v) = %d, want %d", name, d, p.start, got, i)
				}
				at = p.end
			}
			if at != d {
				t.Errorf("%s over %v: the phases end at %v", name, d, at)
			}
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 99, 4 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
		}
	}
}

// Every phase's fault schedule is one the fault injector accepts, and only
// the healthy phases inject nothing.
func TestPhaseFaults(t *testing.T) {
	for k := healthy; k <= overload; k++ {
		f := k.faults()
		if err := f.Validate(); err != nil {
			t.Errorf("%s: %v", k, err)
		}
		if quiet := f.All == (server.Fault{}); quiet != (k == healthy || k == recovery) {
			t.Errorf("%s: faults %+v", k, f.All)
		}
	}
}

// FuzzSchedule: for any profile and duration, the phases tile the run in
// order and phaseAt finds each offset's phase.
func FuzzSchedule(f *testing.F) {
	f.Add(uint8(0), int64(30*time.Second), int64(12*time.Second))
	f.Add(uint8(3), int64(500*time.Millisecond), int64(0))
	f.Add(uint8(1), int64(1), int64(-5))
	names := profileNames()
	f.Fuzz(func(t *testing.T, profile uint8, d, at int64) {
		if d <= 0 {
			return
		}
		total := time.Duration(d)
		phases := schedule(names[int(profile)%len(names)], total)
		start := time.Duration(0)
		for i, p := range phases {
			if p.start != start || p.end < p.start {
				t.Fatalf("phase %d is [%v, %v) after %v", i, p.start, p.end, start)
			}
			start = p.end
		}
		if start != total {
			t.Fatalf("phases end at %v, want %v", start, total)
		}
		off := time.Duration(at)
		i := phaseAt(phases, off)
		if i < 0 || i >= len(phases) {
			t.Fatalf("phaseAt(%v) = %d", off, i)
		}
		if off >= 0 && off < total && (off < phases[i].start || off >= phases[i].end) {
			t.Fatalf("phaseAt(%v) = %d, which is [%v, %v)", off, i, phases[i].start, phases[i].end)
		}
	})
}

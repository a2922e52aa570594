package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors/config"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
)

// The server bulkhead's adaptive limit may be CPU-aware, with its own
// fields, and the Gradient's probes can be tuned or turned off.
func TestAdaptiveCPUAndProbes(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		check      func(t *testing.T, s bulkhead.Strategy)
	}{
		{"cpu", "server:\n  bulkhead: {limit: 200, adaptive: {kind: cpu, cpu_threshold: 0.9, window: 2s, buckets: 20, cool_off: 500ms, min_limit: 4}}\n",
			func(t *testing.T, s bulkhead.Strategy) {
				cpu, ok := s.(*bulkhead.CPU)
				if !ok {
					t.Fatalf("strategy %T, want *bulkhead.CPU", s)
				}
				defer cpu.Close()
				c := cpu.Config()
				if c.Threshold != 0.9 || c.Window != 2*time.Second || c.Buckets != 20 || c.CoolOff != 500*time.Millisecond || c.MinLimit != 4 || c.Usage != nil {
					t.Fatalf("CPU configuration %+v", c)
				}
			}},
		{"cpu defaults", "server:\n  bulkhead: {limit: 200, adaptive: {kind: cpu}}\n",
			func(t *testing.T, s bulkhead.Strategy) {
				cpu := s.(*bulkhead.CPU)
				defer cpu.Close()
				c := cpu.Config()
				if c.Threshold != bulkhead.DefaultCPUThreshold || c.Window != bulkhead.DefaultCPUWindow || c.Buckets != bulkhead.DefaultCPUBuckets ||
					c.CoolOff != bulkhead.DefaultCPUCoolOff || c.MinLimit != bulkhead.DefaultMinLimit {
					t.Fatalf("CPU configuration %+v, want the defaults", c)
				}
			}},
		{"gradient without probes", "server:\n  bulkhead: {limit: 20, adaptive: {kind: gradient, no_probe: true}}\n",
			func(t *testing.T, s bulkhead.Strategy) {
				g, ok := s.(*bulkhead.Gradient)
				if !ok {
					t.Fatalf("strategy %T, want *bulkhead.Gradient", s)
				}
				if c := g.Config(); !c.NoProbe || c.ProbeInterval != 0 {
					t.Fatalf("Gradient configuration %+v, want no probes", c)
				}
			}},
		{"gradient probing every 30s", "server:\n  bulkhead: {limit: 20, adaptive: {kind: gradient, probe_interval: 30s, min_limit: 2, max_limit: 90, smoothing: 0.5, tolerance: 1.5, queue_size: 4, window: 2s, window_samples: 7, long_window: 100}}\n",
			func(t *testing.T, s bulkhead.Strategy) {
				g, ok := s.(*bulkhead.Gradient)
				if !ok {
					t.Fatalf("strategy %T, want *bulkhead.Gradient", s)
				}
				c := g.Config()
				if c.ProbeInterval != 30*time.Second || c.NoProbe || c.MinLimit != 2 || c.MaxLimit != 90 || c.Smoothing != 0.5 || c.Tolerance != 1.5 ||
					c.QueueSize != 4 || c.Window != 2*time.Second || c.WindowSamples != 7 || c.LongWindow != 100 {
					t.Fatalf("Gradient configuration %+v", c)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tc.yaml), config.FormatYAML)
			if err != nil {
				t.Fatal(err)
			}
			sc := cfg.ServerConfig()
			if sc.Bulkhead.Adaptive == nil {
				t.Fatal("no adaptive strategy")
			}
			tc.check(t, sc.Bulkhead.Adaptive())
			if _, err := server.New(sc); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Fields of another kind, a max_limit on a CPU limit (the bulkhead's
// limit is its ceiling), a threshold outside (0, 1) and probe_interval
// with no_probe are reported under the file's field names, all at once.
func TestAdaptiveCPUProblems(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"cpu", "server:\n  bulkhead: {limit: 10, adaptive: {kind: cpu, max_limit: 5, cpu_threshold: 1.5, smoothing: 0.5, backoff_ratio: 0.5, buckets: -1}}\n", []string{
			"server.bulkhead.adaptive.buckets: -1, must not be negative",
			"server.bulkhead.adaptive: backoff_ratio or timeout set but kind is cpu, not aimd",
			"server.bulkhead.adaptive: smoothing, tolerance, queue_size, window_samples, long_window, probe_interval or no_probe set but kind is cpu, not gradient",
			"server.bulkhead.adaptive.max_limit: 5, set but kind is cpu: the bulkhead's limit is its ceiling",
			"server.bulkhead.adaptive.cpu_threshold: 1.5, must be in (0, 1)",
		}},
		{"gradient", "server:\n  bulkhead: {limit: 10, adaptive: {kind: gradient, no_probe: true, probe_interval: 1m, cool_off: 1s}}\n", []string{
			"server.bulkhead.adaptive: cpu_threshold, buckets or cool_off set but kind is gradient, not cpu",
			"server.bulkhead.adaptive.probe_interval: 1m0s, set but no_probe turns the probes off",
		}},
		{"aimd", "server:\n  bulkhead: {limit: 10, adaptive: {kind: aimd, cpu_threshold: 0.5}}\n", []string{
			"server.bulkhead.adaptive: cpu_threshold, buckets or cool_off set but kind is aimd, not cpu",
		}},
		{"cpu buckets beyond the window", "server:\n  bulkhead: {limit: 10, adaptive: {kind: cpu, window: 0.00000001s, buckets: 20}}\n", []string{
			"server.bulkhead.adaptive.buckets: 20, must not exceed the window (10ns) in nanoseconds",
		}},
		{"cpu window below the default buckets", "server:\n  bulkhead: {limit: 10, adaptive: {kind: cpu, window: 0.00000001s}}\n", []string{
			"server.bulkhead.adaptive.window: 10ns, must be at least 50 nanoseconds, one per bucket",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.yaml), config.FormatYAML)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

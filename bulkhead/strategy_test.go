package bulkhead

import (
	"math"
	"strings"
	"testing"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

var t0 = time.Unix(1_000_000, 0)

func TestAIMDInitClamps(t *testing.T) {
	tests := []struct {
		name    string
		cfg     AIMDConfig
		initial int
		want    int
	}{
		{"defaults keep the initial limit", AIMDConfig{}, 50, 50},
		{"below the minimum", AIMDConfig{MinLimit: 5}, 2, 5},
		{"above the maximum", AIMDConfig{MaxLimit: 20}, 30, 20},
		{"above the default maximum", AIMDConfig{}, 5000, DefaultMaxLimit},
		{"zero initial", AIMDConfig{}, 0, DefaultMinLimit},
		{"minimum above maximum is lowered", AIMDConfig{MinLimit: 50, MaxLimit: 10}, 1, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewAIMD(tt.cfg).Init(tt.initial); got != tt.want {
				t.Errorf("Init(%d) = %d, want %d", tt.initial, got, tt.want)
			}
		})
	}
}

func TestAIMDAdditiveIncrease(t *testing.T) {
	a := NewAIMD(AIMDConfig{})
	a.Init(10)
	// One limit's worth of samples at the limit raises it by one: the
	// additive step is 1/limit per sample.
	n, limit := 0, 10
	for limit == 10 {
		limit = a.Update(Sample{RTT: time.Millisecond, InFlight: 10, Now: t0})
		n++
	}
	if limit != 11 || n < 10 || n > 11 {
		t.Errorf("limit rose to %d after %d samples, want 11 after about 10", limit, n)
	}
}

func TestAIMDAppLimitedDoesNotGrow(t *testing.T) {
	tests := []struct {
		inFlight int
		grows    bool
	}{
		{4, false}, // 4*2 < 10: the limit was not the bottleneck
		{5, true},
		{10, true},
		{-3, false},
	}
	for _, tt := range tests {
		a := NewAIMD(AIMDConfig{})
		a.Init(10)
		for range 20 {
			a.Update(Sample{RTT: time.Millisecond, InFlight: tt.inFlight, Now: t0})
		}
		if got := a.Update(Sample{InFlight: tt.inFlight, Now: t0}) > 10; got != tt.grows {
			t.Errorf("InFlight %d: grew = %v, want %v", tt.inFlight, got, tt.grows)
		}
	}
}

func TestAIMDMultiplicativeDecrease(t *testing.T) {
	tests := []struct {
		name    string
		cfg     AIMDConfig
		initial int
		sample  Sample
		want    int
	}{
		{"drop", AIMDConfig{}, 20, Sample{Dropped: true}, 18},
		{"drop lowers by at least one", AIMDConfig{}, 5, Sample{Dropped: true}, 4},
		{"not below the minimum", AIMDConfig{MinLimit: 3}, 3, Sample{Dropped: true}, 3},
		{"default minimum is 1", AIMDConfig{}, 1, Sample{Dropped: true}, 1},
		{"ratio", AIMDConfig{BackoffRatio: 0.5}, 20, Sample{Dropped: true}, 10},
		{"slower than the timeout", AIMDConfig{Timeout: time.Second}, 20, Sample{RTT: time.Second + 1, InFlight: 20}, 18},
		{"default timeout is 5s", AIMDConfig{}, 20, Sample{RTT: 5*time.Second + 1, InFlight: 20}, 18},
		{"exactly the timeout is a success", AIMDConfig{Timeout: time.Second}, 20, Sample{RTT: time.Second, InFlight: 20}, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAIMD(tt.cfg)
			a.Init(tt.initial)
			tt.sample.Now = t0
			if got := a.Update(tt.sample); got != tt.want {
				t.Errorf("Update(%+v) = %d, want %d", tt.sample, got, tt.want)
			}
		})
	}
}

func TestAIMDOneDecreasePerEpisode(t *testing.T) {
	a := NewAIMD(AIMDConfig{BackoffRatio: 0.5})
	a.Init(40)
	steps := []struct {
		now  time.Duration // since t0
		rtt  time.Duration
		want int
	}{
		{100, 10, 20}, // decrease at 100
		{105, 10, 20}, // admitted at 95, before the decrease: ignored
		{110, 10, 10}, // admitted at 100, after it: decrease at 110
		{111, 50, 10}, // admitted at 61: ignored
		{200, 50, 5},
	}
	for _, s := range steps {
		got := a.Update(Sample{RTT: s.rtt, Dropped: true, Now: t0.Add(s.now)})
		if got != s.want {
			t.Errorf("drop at %d, rtt %d: limit %d, want %d", s.now, s.rtt, got, s.want)
		}
	}
}

func TestAIMDMaxLimit(t *testing.T) {
	a := NewAIMD(AIMDConfig{MaxLimit: 12})
	a.Init(12)
	for range 100 {
		if got := a.Update(Sample{InFlight: 12, Now: t0}); got != 12 {
			t.Fatalf("limit %d above MaxLimit 12", got)
		}
	}
}

// window feeds g one complete window of n samples of latency rtt with
// inFlight in flight, the last one dropped if drop is set, starting at
// *now, and returns the limit after it.
func window(g *Gradient, now *time.Time, n int, rtt time.Duration, inFlight int, drop bool) int {
	var limit int
	for i := range n {
		limit = g.Update(Sample{RTT: rtt, InFlight: inFlight, Dropped: drop && i == n-1, Now: *now})
		*now = now.Add(g.window / time.Duration(n-1))
	}
	return limit
}

func TestGradientUpdatesOncePerWindow(t *testing.T) {
	g := NewGradient(GradientConfig{QueueSize: 10, Smoothing: 1, Window: time.Second, WindowSamples: 4})
	g.Init(20)
	now := t0
	// Three samples in more than a second, then a fourth: the window needs
	// both the time and the samples.
	for i := range 3 {
		if got := g.Update(Sample{RTT: time.Millisecond, InFlight: 20, Now: now.Add(time.Duration(i) * time.Second)}); got != 20 {
			t.Fatalf("limit changed to %d before the window was complete", got)
		}
	}
	if got := g.Update(Sample{RTT: time.Millisecond, InFlight: 20, Now: now.Add(3 * time.Second)}); got != 30 {
		t.Fatalf("limit after a complete window = %d, want 20 + QueueSize 10", got)
	}
	// Four quick samples: not a second yet.
	for i := range 4 {
		if got := g.Update(Sample{RTT: time.Millisecond, InFlight: 30, Now: now.Add(4*time.Second + time.Duration(i))}); got != 30 {
			t.Fatalf("limit changed to %d before a second had passed", got)
		}
	}
}

func TestGradientFormula(t *testing.T) {
	const ms = time.Millisecond
	type win struct {
		rtt      time.Duration
		inFlight int
		drop     bool
	}
	tests := []struct {
		name    string
		cfg     GradientConfig
		initial int
		windows []win
		want    float64 // the limit after the last window, before truncation
	}{
		{
			name: "flat latency grows by the queue headroom",
			cfg:  GradientConfig{QueueSize: 4}, initial: 20,
			windows: []win{{10 * ms, 20, false}, {10 * ms, 20, false}},
			want:    20 + 0.8 + 0.8,
		},
		{
			name: "default headroom is the square root of the limit",
			cfg:  GradientConfig{}, initial: 100,
			windows: []win{{10 * ms, 100, false}},
			want:    100 + 0.2*10,
		},
		{
			name: "rising latency shrinks the limit",
			cfg:  GradientConfig{QueueSize: 4}, initial: 20,
			// long = (10+20)/2 = 15, gradient = 15/20 = 0.75
			windows: []win{{10 * ms, 20, false}, {20 * ms, 20, false}},
			want:    func() float64 { l := 20.8; return l*0.8 + (l*0.75+4)*0.2 }(),
		},
		{
			name: "the gradient is at least 0.5",
			cfg:  GradientConfig{QueueSize: 4, Smoothing: 1}, initial: 20,
			// long = (1+100)/2 = 50.5, gradient = 0.505 after one window at 24
			windows: []win{{ms, 20, false}, {100 * ms, 24, false}, {1000 * ms, 24, false}},
			want: func() float64 {
				l := 24 * 0.505
				l += 4
				long := (1 + 100 + 1000) / 3.0
				return l*math.Max(0.5, long/1000) + 4
			}(),
		},
		{
			name: "tolerance allows some queueing",
			cfg:  GradientConfig{QueueSize: 4, Tolerance: 2}, initial: 20,
			windows: []win{{10 * ms, 20, false}, {20 * ms, 20, false}},
			want:    20 + 0.8 + 0.8,
		},
		{
			name: "a drop is the steepest gradient",
			cfg:  GradientConfig{QueueSize: 4}, initial: 20,
			windows: []win{{10 * ms, 20, true}},
			want:    20*0.8 + (20*0.5+4)*0.2,
		},
		{
			name: "a drop counts even when app-limited",
			cfg:  GradientConfig{QueueSize: 4}, initial: 20,
			windows: []win{{10 * ms, 1, true}},
			want:    20*0.8 + (20*0.5+4)*0.2,
		},
		{
			name: "app-limited windows change nothing",
			cfg:  GradientConfig{QueueSize: 4}, initial: 20,
			windows: []win{{10 * ms, 9, false}, {10 * ms, 9, false}},
			want:    20,
		},
		{
			name: "minimum",
			cfg:  GradientConfig{QueueSize: 1, Smoothing: 1, MinLimit: 15}, initial: 20,
			windows: []win{{ms, 20, true}},
			want:    15,
		},
		{
			name: "maximum",
			cfg:  GradientConfig{QueueSize: 50, Smoothing: 1, MaxLimit: 30}, initial: 20,
			windows: []win{{ms, 20, false}},
			want:    30,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.WindowSamples = 5
			g := NewGradient(tt.cfg)
			g.Init(tt.initial)
			now := t0
			var got int
			for _, w := range tt.windows {
				got = window(g, &now, 5, w.rtt, w.inFlight, w.drop)
			}
			if math.Abs(g.limit-tt.want) > 1e-9 || got != int(tt.want) {
				t.Errorf("limit = %v (returned %d), want %v", g.limit, got, tt.want)
			}
		})
	}
}

func TestGradientLongAverageRecovers(t *testing.T) {
	g := NewGradient(GradientConfig{WindowSamples: 2, LongWindow: 1000})
	g.Init(50)
	now := t0
	for range longWarmup {
		window(g, &now, 2, 100*time.Millisecond, 50, false)
	}
	before := g.long
	// Latency falls to a tenth: the long-term average must fall faster
	// than its 1000-window EMA alone would move it.
	window(g, &now, 2, 10*time.Millisecond, 50, false)
	emaOnly := before + (10e6-before)*g.longFactor
	if want := emaOnly * 0.9; math.Abs(g.long-want) > 1 {
		t.Errorf("long-term average = %v, want %v (EMA step, then cut by a tenth)", g.long, want)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string // "" for no error
	}{
		{"AIMD zero", AIMDConfig{}.Validate(), ""},
		{"AIMD full", AIMDConfig{MinLimit: 2, MaxLimit: 20, BackoffRatio: 0.5, Timeout: time.Second}.Validate(), ""},
		{"AIMD MinLimit", AIMDConfig{MinLimit: -1}.Validate(), "MinLimit: -1: must be at least 0"},
		{"AIMD MaxLimit", AIMDConfig{MaxLimit: -2}.Validate(), "MaxLimit: -2: must be at least 0"},
		{"AIMD ratio 1", AIMDConfig{BackoffRatio: 1}.Validate(), "BackoffRatio: 1: must be in (0, 1)"},
		{"AIMD ratio NaN", AIMDConfig{BackoffRatio: math.NaN()}.Validate(), "BackoffRatio: NaN: must be in (0, 1)"},
		{"AIMD Timeout", AIMDConfig{Timeout: -time.Second}.Validate(), "Timeout: -1s: must be at least 0"},
		{"AIMD Min above Max", AIMDConfig{MinLimit: 30, MaxLimit: 20}.Validate(), "MinLimit: 30: must not exceed MaxLimit (20)"},
		{"AIMD Min above default Max", AIMDConfig{MinLimit: 2000}.Validate(), "MinLimit: 2000: must not exceed MaxLimit (1000)"},
		{"Gradient zero", GradientConfig{}.Validate(), ""},
		{"Gradient full", GradientConfig{MinLimit: 1, MaxLimit: 9, Smoothing: 1, Tolerance: 1.5, QueueSize: 3,
			Window: time.Second, WindowSamples: 3, LongWindow: 10}.Validate(), ""},
		{"Gradient MinLimit", GradientConfig{MinLimit: -1}.Validate(), "MinLimit: -1: must be at least 0"},
		{"Gradient MaxLimit", GradientConfig{MaxLimit: -1}.Validate(), "MaxLimit: -1: must be at least 0"},
		{"Gradient Smoothing", GradientConfig{Smoothing: 1.5}.Validate(), "Smoothing: 1.5: must be in (0, 1]"},
		{"Gradient Tolerance", GradientConfig{Tolerance: 0.5}.Validate(), "Tolerance: 0.5: must be finite and at least 1"},
		{"Gradient Tolerance Inf", GradientConfig{Tolerance: math.Inf(1)}.Validate(), "Tolerance: +Inf: must be finite and at least 1"},
		{"Gradient QueueSize", GradientConfig{QueueSize: -1}.Validate(), "QueueSize: -1: must be at least 0"},
		{"Gradient Window", GradientConfig{Window: -time.Millisecond}.Validate(), "Window: -1ms: must be at least 0"},
		{"Gradient WindowSamples", GradientConfig{WindowSamples: -1}.Validate(), "WindowSamples: -1: must be at least 0"},
		{"Gradient LongWindow", GradientConfig{LongWindow: -1}.Validate(), "LongWindow: -1: must be at least 0"},
		{"Gradient Min above Max", GradientConfig{MinLimit: 5, MaxLimit: 4}.Validate(), "MinLimit: 5: must not exceed MaxLimit (4)"},
		{"AIMD every problem", AIMDConfig{MinLimit: -1, MaxLimit: -1, BackoffRatio: 2, Timeout: -1}.Validate(),
			"MinLimit: -1: must be at least 0\nMaxLimit: -1: must be at least 0\nBackoffRatio: 2: must be in (0, 1)\nTimeout: -1ns: must be at least 0"},
		{"Gradient every problem", GradientConfig{MinLimit: 9, MaxLimit: 3, Smoothing: 2, QueueSize: -1}.Validate(),
			"Smoothing: 2: must be in (0, 1]\nQueueSize: -1: must be at least 0\nMinLimit: 9: must not exceed MaxLimit (3)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if tt.err != nil {
				got = tt.err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q, want %q", got, tt.want)
			}
			// Every problem is a *resilience.FieldError.
			if n := len(resilience.FieldErrors(tt.err)); n != strings.Count(tt.want, "\n")+min(len(tt.want), 1) {
				t.Errorf("%d FieldErrors in %q", n, got)
			}
		})
	}
}

// TestInvalidConfigTakesDefaults checks that the constructors treat what
// Validate rejects as the documented defaults.
func TestInvalidConfigTakesDefaults(t *testing.T) {
	a := NewAIMD(AIMDConfig{MinLimit: -1, MaxLimit: -1, BackoffRatio: 7, Timeout: -1})
	if a.minLimit != 1 || a.maxLimit != 1000 || a.ratio != 0.9 || a.timeout != 5*time.Second {
		t.Errorf("AIMD with invalid config = %+v, want the defaults", a)
	}
	g := NewGradient(GradientConfig{MinLimit: -1, MaxLimit: -1, Smoothing: -1, Tolerance: math.NaN(),
		QueueSize: -1, Window: -1, WindowSamples: -1, LongWindow: -1})
	if g.minLimit != 1 || g.maxLimit != 1000 || g.smoothing != 0.2 || g.tolerance != 1 || g.queueSize != 0 ||
		g.window != time.Second || g.windowSamples != 10 || g.longFactor != 2.0/601 {
		t.Errorf("Gradient with invalid config = %+v, want the defaults", g)
	}
	if !strings.Contains(GradientConfig{Tolerance: math.NaN()}.Validate().Error(), "Tolerance: NaN") {
		t.Error("Validate accepts a NaN Tolerance")
	}
}

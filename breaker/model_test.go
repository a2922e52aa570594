package breaker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// model is a reference implementation of the breaker's documented
// behaviour: sequential, with plain fields and lists, written from the
// documentation rather than from the implementation.
type model struct {
	// configuration, spelled out
	failureThreshold int // 0: off
	successThreshold int
	maxProbes        int
	probeTimeout     time.Duration
	timeout          time.Duration
	openDuration     func(int) time.Duration
	timeWindow       bool
	windowSize       int           // count window
	bucketDur        time.Duration // time window
	buckets          int
	minCalls         int
	failureRate      float64 // 0: off
	slowRate         float64 // 0: off
	slowDur          time.Duration

	now       time.Duration
	state     State
	mode      Mode
	gen       int
	consec    int
	window    []modelCall
	openUntil time.Duration
	opens     int
	probes    int
	probeSucc int
	inFlight  []time.Duration // starts of the probes holding a slot

	successes, failures, ignored, slows, rejections, discarded int
}

type modelCall struct {
	epoch        int64
	failed, slow bool
}

type modelPermit struct {
	gen   int
	state State
	start time.Duration
}

func (m *model) lazyHalfOpen() {
	if m.state == Open && m.mode == Auto && m.now >= m.openUntil {
		m.gen++
		m.state = HalfOpen
		m.probes, m.probeSucc, m.inFlight = 0, 0, nil
	}
}

// allow returns a permit, or the rejection's state and forced flag.
func (m *model) allow() (p modelPermit, ok bool, rejState State, forced bool) {
	m.lazyHalfOpen()
	switch m.state {
	case Closed:
		return modelPermit{m.gen, Closed, m.now}, true, 0, false
	case Open:
		m.rejections++
		return p, false, Open, m.mode == ForcedOpen
	}
	if m.probes >= m.maxProbes {
		// Slots held for ProbeTimeout or longer are free again.
		var kept []time.Duration
		for _, st := range m.inFlight {
			if st+m.probeTimeout > m.now {
				kept = append(kept, st)
			}
		}
		m.probes -= len(m.inFlight) - len(kept)
		m.inFlight = kept
	}
	if m.probes >= m.maxProbes {
		m.rejections++
		return p, false, HalfOpen, false
	}
	m.probes++
	m.inFlight = append(m.inFlight, m.now)
	return modelPermit{m.gen, HalfOpen, m.now}, true, 0, false
}

func (m *model) open() {
	m.opens++
	d := m.timeout
	if m.openDuration != nil {
		if x := m.openDuration(m.opens); x > 0 {
			d = x
		}
	}
	m.openUntil = m.now + d
	m.gen++
	m.state, m.mode = Open, Auto
}

func (m *model) close(mode Mode) {
	m.gen++
	m.state, m.mode = Closed, mode
	m.consec = 0
	m.window = nil
	m.opens = 0
}

func (m *model) windowCounts() (calls, failures, slows int) {
	var in []modelCall
	if m.timeWindow {
		cur := int64(m.now / m.bucketDur)
		for _, c := range m.window {
			if c.epoch > cur-int64(m.buckets) && c.epoch <= cur {
				in = append(in, c)
			}
		}
	} else {
		in = m.window[max(0, len(m.window)-m.windowSize):]
	}
	for _, c := range in {
		calls++
		if c.failed {
			failures++
		}
		if c.slow {
			slows++
		}
	}
	return calls, failures, slows
}

func (m *model) done(p modelPermit, o Outcome, d time.Duration) {
	slow := o != Ignored && m.slowDur > 0 && d >= m.slowDur
	if p.gen != m.gen {
		m.discarded++
		return
	}
	if p.state == HalfOpen {
		i := slices.Index(m.inFlight, p.start)
		if i < 0 { // the slot was reclaimed
			m.discarded++
			return
		}
		m.inFlight = slices.Delete(m.inFlight, i, i+1)
	}
	switch o {
	case Success:
		m.successes++
	case Failure:
		m.failures++
	default:
		m.ignored++
	}
	if slow {
		m.slows++
	}
	if p.state == HalfOpen {
		m.probes--
		switch {
		case o == Ignored:
		case o == Failure || (slow && m.slowRate > 0):
			m.open()
		default:
			m.probeSucc++
			if m.probeSucc >= m.successThreshold {
				m.close(Auto)
			}
		}
		return
	}
	if m.mode == ForcedClosed || o == Ignored {
		return
	}
	trip := false
	if m.failureThreshold > 0 {
		if o == Failure {
			m.consec++
			trip = m.consec >= m.failureThreshold
		} else {
			m.consec = 0
		}
	}
	if m.failureRate > 0 || m.slowRate > 0 {
		m.window = append(m.window, modelCall{int64(m.now / m.bucketDur), o == Failure, slow})
		calls, failures, slows := m.windowCounts()
		if calls >= m.minCalls {
			if m.failureRate > 0 && float64(failures)*100 >= m.failureRate*float64(calls) {
				trip = true
			}
			if m.slowRate > 0 && float64(slows)*100 >= m.slowRate*float64(calls) {
				trip = true
			}
		}
	}
	if trip {
		m.open()
	}
}

func (m *model) forceOpen() {
	if m.mode != ForcedOpen {
		m.opens = 0
		m.gen++
		m.state, m.mode = Open, ForcedOpen
	}
}

func (m *model) forceClosed() {
	if m.mode != ForcedClosed {
		m.close(ForcedClosed)
	}
}

type modelCase struct {
	name string
	cfg  Config
	m    model
}

func modelCases() []modelCase {
	table := []time.Duration{3 * time.Second, 7 * time.Second, 20 * time.Second}
	openDur := func(n int) time.Duration { return table[min(n, len(table))-1] }
	return []modelCase{
		{"seed defaults", Config{},
			model{failureThreshold: 5, successThreshold: 2, maxProbes: 2, probeTimeout: DefaultTimeout, timeout: DefaultTimeout}},
		{"consecutive with adaptive open duration and wide half-open",
			Config{FailureThreshold: 2, SuccessThreshold: 3, MaxHalfOpenProbes: 5, OpenDurationFunc: openDur},
			model{failureThreshold: 2, successThreshold: 3, maxProbes: 5, probeTimeout: DefaultTimeout, timeout: DefaultTimeout, openDuration: openDur}},
		{"count window, failure and slow rates",
			Config{FailureRateThreshold: 50, SlowCallRateThreshold: 60, SlowCallDuration: 2 * time.Second, WindowSize: 6, MinimumCalls: 4, SuccessThreshold: 1, Timeout: 5 * time.Second},
			model{successThreshold: 1, maxProbes: 1, probeTimeout: DefaultProbeTimeout, timeout: 5 * time.Second, windowSize: 6, minCalls: 4, failureRate: 50, slowRate: 60, slowDur: 2 * time.Second, bucketDur: 1}},
		{"count window and consecutive",
			Config{FailureThreshold: 3, FailureRateThreshold: 40, WindowSize: 10, MinimumCalls: 5, SlowCallDuration: time.Second, MaxHalfOpenProbes: 2, SuccessThreshold: 2, Timeout: time.Second},
			model{failureThreshold: 3, successThreshold: 2, maxProbes: 2, probeTimeout: DefaultProbeTimeout, timeout: time.Second, windowSize: 10, minCalls: 5, failureRate: 40, slowDur: time.Second, bucketDur: 1}},
		{"short probe timeout",
			Config{FailureThreshold: 2, SuccessThreshold: 3, MaxHalfOpenProbes: 2, Timeout: 2 * time.Second, ProbeTimeout: 1500 * time.Millisecond},
			model{failureThreshold: 2, successThreshold: 3, maxProbes: 2, probeTimeout: 1500 * time.Millisecond, timeout: 2 * time.Second}},
		{"time window",
			Config{WindowType: TimeWindow, WindowPeriod: 10 * time.Second, WindowBuckets: 5, FailureRateThreshold: 50, SlowCallRateThreshold: 50, SlowCallDuration: time.Second, MinimumCalls: 3, SuccessThreshold: 2, MaxHalfOpenProbes: 3, Timeout: 4 * time.Second, OpenDurationFunc: openDur},
			model{successThreshold: 2, maxProbes: 3, probeTimeout: DefaultProbeTimeout, timeout: 4 * time.Second, openDuration: openDur, timeWindow: true, bucketDur: 2 * time.Second, buckets: 5, minCalls: 3, failureRate: 50, slowRate: 50, slowDur: time.Second}},
	}
}

// TestModel drives random sequences of operations (allow, success, failure,
// slow calls, ignored calls, advancing time, manual control) against the
// breaker and the reference model and fails at the first divergence,
// printing the sequence.
func TestModel(t *testing.T) {
	sequences, steps := 300, 300
	if testing.Short() || raceEnabled {
		// The race detector slows the model ~80 times; the concurrent
		// tests are the ones that need it.
		sequences = 40
	}
	for _, tc := range modelCases() {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(sequences) {
				if err := runModel(tc, seed, steps); err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
			}
		})
	}
}

func runModel(tc modelCase, seed uint64, steps int) error {
	r := rand.New(rand.NewPCG(seed, 99))
	m := tc.m
	b, clk := newFake(tc.cfg)
	type pair struct {
		real Permit
		mod  modelPermit
	}
	var (
		permits []pair
		log     []string
	)
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s\nafter:\n  %s", fmt.Sprintf(format, args...), strings.Join(log, "\n  "))
	}
	slowDur := max(m.slowDur, time.Second)
	for range steps {
		var op string
		switch k := r.IntN(100); {
		case k < 35:
			op = "allow"
			p, err := b.Allow()
			mp, ok, rs, forced := m.allow()
			switch {
			case ok != (err == nil):
				return fail("allow: breaker err %v, model ok %v", err, ok)
			case ok:
				if p.State() != mp.state {
					return fail("allow: permit state %v, model %v", p.State(), mp.state)
				}
				permits = append(permits, pair{p, mp})
			default:
				var oe *OpenError
				if !errors.As(err, &oe) || oe.State() != rs || oe.Forced() != forced {
					return fail("allow: rejection %v, model state %v forced %v", err, rs, forced)
				}
			}
		case k < 70 && len(permits) > 0:
			i := r.IntN(len(permits))
			pp := permits[i]
			permits = append(permits[:i], permits[i+1:]...)
			o := Outcome(r.IntN(3))
			switch r.IntN(3) {
			case 0: // explicit duration, around the slow threshold
				d := []time.Duration{0, slowDur - 1, slowDur, 3 * slowDur}[r.IntN(4)]
				op = fmt.Sprintf("done %v in %v (permit gen %d %v)", o, d, pp.mod.gen, pp.mod.state)
				pp.real.DoneDuration(o, d)
				m.done(pp.mod, o, d)
			case 1: // measured since Allow
				op = fmt.Sprintf("done %v measured %v (permit gen %d %v)", o, m.now-pp.mod.start, pp.mod.gen, pp.mod.state)
				pp.real.Done(o)
				m.done(pp.mod, o, m.now-pp.mod.start)
			default: // classified error
				err := []error{nil, errors.New("boom"), context.Canceled}[o]
				op = fmt.Sprintf("record %v (permit gen %d %v)", err, pp.mod.gen, pp.mod.state)
				pp.real.Record(err)
				m.done(pp.mod, o, m.now-pp.mod.start)
			}
		case k < 85:
			d := time.Duration(r.Int64N(int64(3 * time.Second)))
			if r.IntN(5) == 0 {
				d = time.Duration(r.Int64N(int64(30 * time.Second)))
			}
			op = fmt.Sprintf("advance %v", d)
			clk.advance(d)
			m.now += d
		case k < 90:
			op = "state"
			m.lazyHalfOpen()
			if got := b.State(); got != m.state {
				return fail("State = %v, model %v", got, m.state)
			}
		case k < 95:
			op = "metrics"
			m.lazyHalfOpen()
			got := b.Metrics()
			calls, failures, slows := m.windowCounts()
			want := Metrics{
				State: m.state, Mode: m.mode,
				Calls:     uint64(m.successes + m.failures + m.ignored),
				Successes: uint64(m.successes), Failures: uint64(m.failures), Ignored: uint64(m.ignored),
				SlowCalls: uint64(m.slows), Rejections: uint64(m.rejections), Discarded: uint64(m.discarded),
				ConsecutiveFailures: int64(m.consec), ConsecutiveOpens: m.opens,
				WindowCalls: int64(calls), WindowFailures: int64(failures), WindowSlowCalls: int64(slows),
			}
			if m.state == HalfOpen {
				want.HalfOpenProbes = m.probes
			}
			if m.state == Open && m.mode == Auto {
				want.OpenRemaining = m.openUntil - m.now
			}
			if calls > 0 {
				want.FailureRate = float64(failures) * 100 / float64(calls)
				want.SlowCallRate = float64(slows) * 100 / float64(calls)
			}
			got.Transitions = 0 // the model does not count them
			if got != want {
				return fail("Metrics\n  got  %+v\n  want %+v", got, want)
			}
		default:
			switch r.IntN(3) {
			case 0:
				op = "force open"
				b.ForceOpen()
				m.forceOpen()
			case 1:
				op = "force closed"
				b.ForceClosed()
				m.forceClosed()
			default:
				op = "reset"
				b.Reset()
				m.close(Auto)
			}
		}
		if op == "" {
			continue
		}
		w := b.word.Load()
		log = append(log, fmt.Sprintf("%s -> %v/%v", op, stateOf(w), modeOf(w)))
		if stateOf(w) != m.state || modeOf(w) != m.mode {
			return fail("state %v/%v, model %v/%v", stateOf(w), modeOf(w), m.state, m.mode)
		}
	}
	return nil
}

package main

import (
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
)

// phaseKind is one kind of phase of a fault schedule.
type phaseKind uint8

const (
	healthy  phaseKind = iota // no fault
	partial                   // a share of calls fail with UNAVAILABLE
	outage                    // every call fails with UNAVAILABLE, slowly
	recovery                  // no fault again, after a fault
	overload                  // bursts of calls well above the server's bulkhead
)

var phaseNames = [...]string{"healthy", "partial", "outage", "recovery", "overload"}

func (k phaseKind) String() string { return phaseNames[k] }

// The faults of the phases.
const (
	// partialErrorRate is the share of calls failed during the partial
	// phase.
	partialErrorRate = 0.3
	// outageLatency is how long the server takes to fail a call during
	// the outage, at least and at most, as a server waiting on a dead
	// dependency would.
	outageLatencyMin, outageLatencyMax = 50 * time.Millisecond, 150 * time.Millisecond
	// overloadLatency is how long each call takes during the overload, at
	// least and at most: the calls hold their bulkhead slots that long.
	overloadLatencyMin, overloadLatencyMax = 10 * time.Millisecond, 30 * time.Millisecond
)

// faults returns the fault injector's schedule during a phase of kind k.
func (k phaseKind) faults() server.FaultConfig {
	switch k {
	case partial:
		return server.FaultConfig{All: server.Fault{ErrorRate: partialErrorRate, Code: codes.Unavailable}}
	case outage:
		return server.FaultConfig{All: server.Fault{
			ErrorRate: 1, Code: codes.Unavailable,
			Latency: outageLatencyMin, LatencyMax: outageLatencyMax,
		}}
	case overload:
		return server.FaultConfig{All: server.Fault{Latency: overloadLatencyMin, LatencyMax: overloadLatencyMax}}
	}
	return server.FaultConfig{}
}

// describe says in a few words what the phase does.
func (k phaseKind) describe(cfg config) string {
	switch k {
	case partial:
		return fmt.Sprintf("%.0f%% UNAVAILABLE", partialErrorRate*100)
	case outage:
		return fmt.Sprintf("every call fails after %v-%v", outageLatencyMin, outageLatencyMax)
	case overload:
		return fmt.Sprintf("bursts of %d calls every %v, %v-%v each", cfg.Concurrency, cfg.burstEvery(), overloadLatencyMin, overloadLatencyMax)
	}
	return "no fault"
}

// burstEvery is the time between two bursts of the overload phase: 1s at
// the default duration, scaled with it, at least 200ms.
func (c config) burstEvery() time.Duration {
	return max(time.Duration(float64(time.Second)*float64(c.Duration)/float64(30*time.Second)), 200*time.Millisecond).Round(time.Millisecond)
}

// step is one phase of a profile and its share of the duration.
type step struct {
	kind  phaseKind
	share float64
}

// profiles are the fault schedules the -profile flag selects.
var profiles = map[string][]step{
	"default":       {{healthy, 4}, {partial, 7}, {outage, 5}, {recovery, 5}, {overload, 9}},
	"outage-only":   {{healthy, 4}, {outage, 6}, {recovery, 5}},
	"flaky-only":    {{healthy, 3}, {partial, 12}},
	"overload-only": {{healthy, 3}, {overload, 12}},
}

// phase is one phase of the schedule of a run, with its bounds as offsets
// from the start of the run.
type phase struct {
	kind       phaseKind
	start, end time.Duration
}

// schedule spreads the phases of profile over d.
func schedule(profile string, d time.Duration) []phase {
	steps := profiles[profile]
	var total float64
	for _, s := range steps {
		total += s.share
	}
	phases := make([]phase, len(steps))
	var at float64
	for i, s := range steps {
		start := time.Duration(float64(d) * at / total)
		at += s.share
		phases[i] = phase{kind: s.kind, start: start, end: time.Duration(float64(d) * at / total)}
	}
	phases[len(phases)-1].end = d
	return phases
}

// phaseAt returns the index of the phase that contains the offset t; the
// last phase for t at or after the end.
func phaseAt(phases []phase, t time.Duration) int {
	for i, p := range phases {
		if t < p.end {
			return i
		}
	}
	return len(phases) - 1
}

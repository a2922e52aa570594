package main

import (
	"sync"
	"time"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
)

// openFor is the open duration every breaker gets in the recovery scenario:
// the libraries' defaults (60s for ours, sony/gobreaker and failsafe-go, 5s
// for hystrix-go) would all exceed the scenario.
const openFor = 500 * time.Millisecond

// recoveryLibs are the clients compared in the recovery scenario: retries
// with their defaults, and breakers with their defaults except the open
// duration.
func recoveryLibs() []lib {
	return []lib{
		bareLib(),
		oursLib("ours-retry", interceptors.Policy{Retry: &interceptors.RetryPolicy{}}),
		oursLib("ours-breaker", interceptors.Policy{Breaker: oursBreaker(openFor)}),
		oursLib("ours-retry+breaker", interceptors.Policy{Retry: &interceptors.RetryPolicy{}, Breaker: oursBreaker(openFor)}),
		mwRetryLib(),
		nativeRetryLib(true),
		failsafeBreakerLib(openFor),
		gobreakerLib(openFor),
		eapacheBreakerLib(openFor),
		hystrixLib(openFor),
	}
}

// bucket is the width of the windows in which the recovery scenario counts
// successes.
const bucket = 25 * time.Millisecond

// runRecovery lets 32 callers call in a loop through an outage of the
// server (every call UNAVAILABLE) and for a while after it ends, and
// reports the time from the end of the outage until calls succeed at 99%
// or more: the end of the last 25ms window after the outage, by the time
// calls ended, in which fewer than 99% of the calls that ended succeeded.
// A window in which no call ended says nothing and is skipped (calls
// waiting in a backoff across the end of the outage end later, mostly
// with success). A client that never recovers within the scenario gets the
// scenario's length and recovered 0.
func runRecovery(s settings) error {
	down, after := s.duration(time.Second), s.duration(1500*time.Millisecond)
	for _, l := range recoveryLibs() {
		e, err := newEnv(noFaults())
		if err != nil {
			return err
		}
		c, err := e.dial(l)
		if err != nil {
			e.close()
			return err
		}
		if err := e.chaos.Set(outage()); err != nil {
			c.close()
			e.close()
			return err
		}
		var mu sync.Mutex
		healed := time.Now().Add(down)
		nb := int(after / bucket)
		ok, all := make([]int, nb), make([]int, nb)
		timer := time.AfterFunc(down, func() {
			mu.Lock()
			defer mu.Unlock()
			healed = time.Now()
			// Set only fails on an invalid schedule; the zero one is valid.
			_ = e.chaos.Set(noFaults())
		})
		calls := closedLoop(c, callers, down+after, s.count(1<<30), func(end time.Time, err error) {
			mu.Lock()
			defer mu.Unlock()
			if i := int(end.Sub(healed) / bucket); end.After(healed) && i < nb {
				all[i]++
				if err == nil {
					ok[i]++
				}
			}
		})
		timer.Stop()
		c.close()
		e.close()
		took, recovered := recoveryTime(ok, all)
		recoveredValue := 0.0
		if recovered {
			recoveredValue = 1
		}
		s.emit("Recovery/"+l.name, int(calls.Load()),
			metric{ms(took), "recovery-ms"},
			metric{recoveredValue, "recovered"})
	}
	return nil
}

// recoveryTime returns the time from the end of the outage to the end of
// the last window in which fewer than 99% of the calls that ended
// succeeded (ok[i] of all[i] calls in window i, each window bucket long),
// and whether calls recovered before the last window. Windows without calls
// are skipped.
func recoveryTime(ok, all []int) (time.Duration, bool) {
	last := -1
	for i := range all {
		if all[i] > 0 && float64(ok[i]) < 0.99*float64(all[i]) {
			last = i
		}
	}
	return time.Duration(last+1) * bucket, last < len(all)-1
}

package main

import (
	"context"
	"time"

	testingv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/testing/v1"
)

// overheadLibs are the clients compared with the bare call: those of the
// callers scenario (a second bare client, whose "overhead" is the noise of
// the measurement, our full pipeline and the peers' retry and breaker) and
// grpc-go's native retry.
func overheadLibs() []lib {
	return append(callersLibs(), nativeRetryLib(false))
}

// runOverhead makes rounds of serial calls on a healthy server: each round
// calls every client once, in an order that rotates from round to round,
// so that the machine's noise spreads evenly over the clients. It reports
// each client's median and p90 latency and its overhead over the bare
// client's median, in percent.
func runOverhead(s settings) error {
	e, err := newEnv(noFaults())
	if err != nil {
		return err
	}
	defer e.close()
	libs := overheadLibs()
	conns := make([]*conn, len(libs))
	for i, l := range libs {
		if conns[i], err = e.dial(l); err != nil {
			return err
		}
		defer conns[i].close()
	}
	rounds := s.count(10000)
	lat := make([][]time.Duration, len(libs))
	req := &testingv1.IdempotentUnaryRequest{Payload: []byte("ping")}
	deadline := time.Now().Add(s.duration(20 * time.Second))
	warm := rounds / 10
	for r := 0; r < rounds+warm && time.Now().Before(deadline); r++ {
		for k := range libs {
			i := (r + k) % len(libs)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			start := time.Now()
			err := conns[i].call(ctx, req)
			d := time.Since(start)
			cancel()
			if err != nil {
				return err
			}
			if r >= warm {
				lat[i] = append(lat[i], d)
			}
		}
	}
	base := percentile(lat[0], 50)
	for i, l := range libs {
		med := percentile(lat[i], 50)
		s.emit("LoopbackOverhead/"+l.name, len(lat[i]),
			metric{float64(med.Nanoseconds()), "median-ns"},
			metric{float64(percentile(lat[i], 90).Nanoseconds()), "p90-ns"},
			metric{100 * (float64(med) - float64(base)) / float64(base), "overhead-%"})
	}
	return nil
}

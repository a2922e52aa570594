package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// stats sums up a set of calls of one client.
type stats struct {
	calls, ok, fallback int
	attempts, shed      int64
	p50, p99            time.Duration
}

// summarize sums up the calls of client among rs for which keep returns
// true.
func summarize(rs []result, client int, keep func(result) bool) stats {
	var s stats
	var lat []time.Duration
	for _, r := range rs {
		if r.client != client || !keep(r) {
			continue
		}
		s.calls++
		if r.ok() {
			s.ok++
		}
		if r.fallback {
			s.fallback++
		}
		s.attempts += int64(r.attempts)
		s.shed += int64(r.shed)
		lat = append(lat, r.end-r.start)
	}
	slices.Sort(lat)
	s.p50, s.p99 = percentile(lat, 50), percentile(lat, 99)
	return s
}

// percentile returns the p-th percentile of the sorted durations, by the
// nearest-rank method; zero for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func all(result) bool { return true }

// okRate is the share of calls the server answered, in percent.
func (s stats) okRate() float64 { return 100 * float64(s.ok) / float64(s.calls) }

// answeredRate is the share of calls answered, by the server or the
// fallback, in percent.
func (s stats) answeredRate() float64 { return 100 * float64(s.ok+s.fallback) / float64(s.calls) }

func (s stats) attemptsPerCall() float64 { return float64(s.attempts) / float64(s.calls) }

// fmtLatency prints d with three significant digits at most.
func fmtLatency(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.0fms", ms)
	}
	return fmt.Sprintf("%.2fs", ms/1000)
}

// fmtSeconds prints d in seconds, with one decimal when it has a fraction.
func fmtSeconds(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// The live view: one line per second for both clients.
const (
	liveTime      = "%6s %-9s"
	livePlain     = " | %6s %5s %8s %8s %5s"
	liveResilient = " | %6s %4s %5s %8s %8s %5s  %s\n"
)

func (d *demo) printLiveHeader() {
	fmt.Fprintf(d.out, "%-16s | %-35s | %s\n", "", "plain client", "resilient client")
	fmt.Fprintf(d.out, liveTime+livePlain+liveResilient, "time", "phase",
		"ok", "att", "p50", "p99", "shed",
		"ok", "fb", "att", "p50", "p99", "shed", "breaker")
}

// printLive prints the line of the calls that ended since the previous
// line (results from index from on) at the offset at, and returns the index
// to start the next line from. The line is labelled with the phase in
// force in the middle of the second it covers.
func (d *demo) printLive(from int, at time.Duration) int {
	rs := d.since(from)
	cols := func(id int) (ok, fb, att, p50, p99, shed string) {
		s := summarize(rs, id, all)
		if s.calls == 0 {
			return "-", "-", "-", "-", "-", "0"
		}
		return fmt.Sprintf("%.1f%%", s.okRate()), fmt.Sprint(s.fallback), fmt.Sprintf("%.2f", s.attemptsPerCall()),
			fmtLatency(s.p50), fmtLatency(s.p99), fmt.Sprint(s.shed)
	}
	var b strings.Builder
	fmt.Fprintf(&b, liveTime, fmtSeconds(at.Truncate(100*time.Millisecond)), d.phases[phaseAt(d.phases, max(at-500*time.Millisecond, 0))].kind)
	ok, _, att, p50, p99, shed := cols(plainClient)
	fmt.Fprintf(&b, livePlain, ok, att, p50, p99, shed)
	ok, fb, att, p50, p99, shed := cols(resilientClient)
	fmt.Fprintf(&b, liveResilient, ok, fb, att, p50, p99, shed, d.breakerState())
	fmt.Fprint(d.out, b.String())
	return from + len(rs)
}

// The comparison table.
const (
	tableHeader = "%-9s %-9s %6s %7s %8s %8s %8s %8s %6s\n"
	tableRow    = "%-9s %-9s %6d %6.1f%% %8s %8.2f %8s %8s %6d\n"
)

// report prints the comparison table, per phase and overall, and what the
// breaker, the budget and the server did.
func (d *demo) report() {
	rs := d.since(0)
	fmt.Fprintf(d.out, "\nPer phase (calls counted in the phase they started in; latency of every call, failed ones included):\n")
	fmt.Fprintf(d.out, tableHeader, "phase", "client", "calls", "ok", "fallback", "att/call", "p50", "p99", "shed")
	row := func(label string, keep func(result) bool) {
		for id := range nClients {
			s := summarize(rs, id, keep)
			if s.calls == 0 {
				continue
			}
			fb := fmt.Sprint(s.fallback)
			if id == plainClient {
				fb = "-"
			}
			if id != plainClient {
				label = ""
			}
			fmt.Fprintf(d.out, tableRow, label, clientNames[id], s.calls, s.okRate(), fb,
				s.attemptsPerCall(), fmtLatency(s.p50), fmtLatency(s.p99), s.shed)
		}
	}
	for i, p := range d.phases {
		row(p.kind.String(), func(r result) bool { return r.phase == i })
	}
	row("overall", all)

	fmt.Fprintf(d.out, "\nresilient client: breaker opened %d times and failed %d attempts fast; %d retries waited as the server's pushback asked; the budget denied %d retries.\n",
		d.obs.opened.Load(), d.obs.rejected.Load(), d.obs.pushback.Load(), d.obs.denied.Load())
	fmt.Fprintf(d.out, "server: injected %d errors, shed %d calls with pushback, rejected %d calls past their deadline.\n",
		d.srvStats.faults.Load(), d.srvStats.shed.Load(), d.srvStats.lateRejected.Load())
	if d.tel != nil {
		if id := d.obs.retriedTrace(); id != "" {
			fmt.Fprintf(d.out, "retried-trace: %s\n", id)
		}
	}
}

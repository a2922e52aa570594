package console

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
)

// serverObserver returns the hook the console subscribes to a server with;
// it runs only for calls a server interceptor acted on.
func (p *pipeline) serverObserver() server.Observer {
	return server.Observer{OnEvent: p.serverEvent}
}

func (p *pipeline) serverEvent(_ context.Context, e server.Event) {
	p.count(int(e.Kind))
	var t int
	switch e.Kind {
	case server.EventShed:
		p.row(keyOf("", e.FullMethod)).shed.Add(1)
		t = TroubleLimited
	case server.EventRateLimited:
		p.row(keyOf("", e.FullMethod)).limited.Add(1)
		t = TroubleLimited
	case server.EventDeadlineRejected:
		p.row(keyOf("", e.FullMethod)).deadline.Add(1)
		t = TroubleFailing
	case server.EventFaultError, server.EventFaultAbort, server.EventFaultLatency:
		p.row(keyOf("", e.FullMethod)).faults.Add(1)
		t = TroubleFailing
	case server.EventPartitionOverflow, server.EventRateLimitOverflow:
		t = TroubleLimited
	case server.EventDefaultDeadline, server.EventPartitionEvicted, server.EventRateLimitEvicted:
		// Routine: counted, and shown once per interval.
	default:
		t = TroubleFailing
	}
	if p.wants(int(e.Kind)) {
		p.remember(int(e.Kind), Event{
			Pipeline: p.name,
			Kind:     e.Kind.String(),
			Method:   clip(e.FullMethod),
			Key:      clip(e.Key),
			Text:     serverEventText(e),
			Trouble:  t,
		})
	}
}

func serverEventText(e server.Event) string {
	switch e.Kind {
	case server.EventShed:
		return "the bulkhead shed a call with pushback " + e.Delay.String()
	case server.EventRateLimited:
		return "the rate limit refused a call; next permit in " + e.Delay.String()
	case server.EventDeadlineRejected:
		return "a call arrived with " + e.Remaining.String() + " left and was rejected"
	case server.EventDefaultDeadline:
		return "a call without a deadline got " + e.Delay.String()
	case server.EventFaultLatency:
		return "chaos delayed a call by " + e.Delay.String()
	case server.EventFaultError:
		return "chaos failed a call with " + e.Code.String()
	case server.EventFaultAbort:
		return fmt.Sprintf("chaos aborted a stream with %s after %d messages", e.Code, e.Messages)
	case server.EventPartitionEvicted:
		return "an idle bulkhead partition was dropped"
	case server.EventPartitionOverflow:
		return "every bulkhead partition is busy: a new key runs in the overflow partition"
	case server.EventRateLimitEvicted:
		return "an idle rate-limit key was dropped"
	case server.EventRateLimitOverflow:
		return "a rate-limit key was decided by the overflow limiter"
	case server.EventRateLimitStoreFailed:
		return "the rate limit's shared store could not decide: the call was admitted"
	}
	return e.Kind.String()
}

// serverRows reads the server's snapshot into rows: its bulkhead
// partitions, its rate-limit quotas and their keys, and the methods its
// events concerned.
func (p *pipeline) serverRows(out *Pipeline, now time.Time, elapsed time.Duration, regular bool) []Row {
	snap := p.server.Snapshot()
	out.Server = serverSettings(snap)
	var rows []Row
	perSec := func(a, b uint64) float64 { return rate(a, b, elapsed) }

	if bh := snap.Bulkhead; bh.Enabled {
		add := func(id, key string, m bulkhead.Metrics) {
			r := Row{ID: id, Kind: RowPartition, Key: key}
			cur := countSet{bulkheadRejected: m.Rejected}
			prev := p.rowState(id, now).step(cur, regular)
			r.Bulkhead = &Bulkhead{
				InFlight:        m.InFlight,
				Waiting:         m.Waiting,
				Limit:           m.Limit,
				ConfiguredLimit: bh.Limit,
				Adaptive:        bh.Adaptive,
				RejectedPerSec:  perSec(prev.bulkheadRejected, cur.bulkheadRejected),
			}
			r.Trouble = trouble(nil, r.Bulkhead, nil, nil, nil, nil)
			r.Last = Sample{TimeMS: now.UnixMilli(), InFlight: float64(m.InFlight), Refused: r.Bulkhead.RejectedPerSec}
			rows = append(rows, r)
		}
		add("b", "", bh.Shared)
		for _, part := range bh.Partitions {
			key := clip(part.Key)
			add("b "+key, key, part.Metrics)
		}
	}
	if rl := snap.RateLimit; rl.Enabled {
		for _, q := range rl.Quotas {
			name := clip(q.Name)
			r := Row{ID: "q " + name, Kind: RowQuota, Method: name, Key: clip(q.Class)}
			cur := countSet{admitted: q.Metrics.Admitted, limited: q.Metrics.Limited}
			prev := p.rowState(r.ID, now).step(cur, regular)
			r.RateLimit = &RateLimit{
				Rate:           finite(q.Rate),
				Burst:          q.Burst,
				Tokens:         -1,
				AdmittedPerSec: perSec(prev.admitted, cur.admitted),
				LimitedPerSec:  perSec(prev.limited, cur.limited),
				Keys:           q.Metrics.Keys,
			}
			r.Trouble = trouble(nil, nil, r.RateLimit, nil, nil, nil)
			r.Last = Sample{TimeMS: now.UnixMilli(), Refused: r.RateLimit.LimitedPerSec}
			rows = append(rows, r)
			for _, part := range q.Partitions {
				method, key := clip(part.Method), clip(part.Key)
				pr := Row{ID: "qk " + name + " " + method + " " + key, Kind: RowQuota, Method: cmpOr(method, name), Key: key}
				p.rowState(pr.ID, now)
				pr.RateLimit = &RateLimit{Rate: finite(q.Rate), Burst: q.Burst, Tokens: finite(part.Tokens), AdmittedPerSec: -1, LimitedPerSec: -1}
				pr.Last = Sample{TimeMS: now.UnixMilli()}
				rows = append(rows, pr)
			}
		}
	}
	// The methods the server's events concerned; a method whose counts
	// stood still for a whole history makes room for others.
	idle := time.Duration(p.c.cfg.History) * p.c.cfg.Interval
	p.rows.Range(func(k, v any) bool {
		key := k.(rowKey)
		rc := v.(*rowCounts)
		r := Row{ID: "m " + key.method, Kind: RowMethod, Method: key.method}
		cur := rc.load()
		if regular && rc.idle(cur, now) >= idle {
			p.dropRow(key, rc)
			delete(p.states, r.ID)
			return true
		}
		prev := p.rowState(r.ID, now).step(cur, regular)
		r.ServerCounts = serverCounts(prev, cur, elapsed)
		r.Trouble = trouble(nil, nil, nil, nil, nil, r.ServerCounts)
		r.Last = Sample{
			TimeMS:  now.UnixMilli(),
			Refused: r.ServerCounts.ShedPerSec + r.ServerCounts.RateLimitedPerSec,
			Retries: r.ServerCounts.FaultsPerSec + r.ServerCounts.DeadlineRejectedPerSec,
		}
		rows = append(rows, r)
		return true
	})
	return rows
}

// serverCounts returns a server method's rates from its counts.
func serverCounts(prev, cur countSet, elapsed time.Duration) *ServerCounts {
	return &ServerCounts{
		ShedPerSec:             rate(prev.shed, cur.shed, elapsed),
		DeadlineRejectedPerSec: rate(prev.deadline, cur.deadline, elapsed),
		RateLimitedPerSec:      rate(prev.limited, cur.limited, elapsed),
		FaultsPerSec:           rate(prev.faults, cur.faults, elapsed),
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// serverSettings describes the server's settings in force, in a few words
// each.
func serverSettings(s server.ServerSnapshot) *ServerSettings {
	out := &ServerSettings{Faults: []string{}}
	if d := describeFault(s.Faults.All); d != "" {
		out.Faults = append(out.Faults, "every method: "+d)
	}
	methods := make([]string, 0, len(s.Faults.Methods))
	for m := range s.Faults.Methods {
		methods = append(methods, m)
	}
	slices.Sort(methods)
	for _, m := range methods {
		if len(out.Faults) >= 20 {
			out.Faults = append(out.Faults, fmt.Sprintf("and %d more", len(methods)-19))
			break
		}
		d := describeFault(s.Faults.Methods[m])
		if d == "" {
			d = "none (exempt)"
		}
		out.Faults = append(out.Faults, clip(m)+": "+d)
	}

	var dl []string
	if s.Deadline.MinRemaining > 0 {
		dl = append(dl, "rejects calls with less than "+s.Deadline.MinRemaining.String()+" left")
	} else {
		dl = append(dl, "rejects calls whose deadline passed")
	}
	if s.Deadline.Default > 0 {
		dl = append(dl, "gives "+s.Deadline.Default.String()+" to calls without a deadline")
	}
	out.Deadline = strings.Join(dl, "; ")

	if bh := s.Bulkhead; bh.Enabled {
		by := "one bulkhead for every call"
		if bh.PartitionBy != server.PartitionNone {
			by = "a partition per " + bh.PartitionBy.String()
			if bh.Header != "" {
				by += " " + clip(bh.Header)
			}
			by += fmt.Sprintf(" (at most %d)", bh.MaxPartitions)
		}
		out.Bulkhead = fmt.Sprintf("limit %d, queue %d, %s", bh.Limit, bh.Queue, by)
		if bh.Adaptive {
			out.Bulkhead += ", adaptive"
		}
		if bh.PartitionBy != server.PartitionNone && !bh.ShowKeys {
			out.Bulkhead += "; caller keys shown hashed"
		}
	} else {
		out.Bulkhead = "off"
	}
	if rl := s.RateLimit; rl.Enabled {
		out.RateLimit = fmt.Sprintf("%d quotas", len(rl.Quotas))
		if rl.PartitionBy != server.PartitionNone {
			out.RateLimit += " per " + rl.PartitionBy.String()
			if rl.Header != "" {
				out.RateLimit += " " + clip(rl.Header)
			}
			if !rl.ShowKeys {
				out.RateLimit += "; caller keys shown hashed"
			}
		}
	} else {
		out.RateLimit = "off"
	}
	return out
}

// describeFault says what f injects, "" for nothing.
func describeFault(f server.Fault) string {
	var parts []string
	code := f.Code
	if code == codes.OK {
		code = codes.Unavailable
	}
	if f.ErrorRate > 0 {
		parts = append(parts, fmt.Sprintf("%.0f%% %s", f.ErrorRate*100, code))
	}
	if f.Latency > 0 || f.LatencyMax > 0 {
		if f.LatencyMax > f.Latency {
			parts = append(parts, "latency "+f.Latency.String()+"–"+f.LatencyMax.String())
		} else {
			parts = append(parts, "latency "+f.Latency.String())
		}
	}
	if f.TailRate > 0 {
		parts = append(parts, fmt.Sprintf("%.0f%% tail of %v", f.TailRate*100, f.TailLatency))
	}
	if f.AbortRate > 0 {
		parts = append(parts, fmt.Sprintf("%.0f%% of streams aborted with %s", f.AbortRate*100, code))
	}
	if f.Pushback > 0 {
		parts = append(parts, "pushback "+f.Pushback.String())
	}
	return strings.Join(parts, ", ")
}

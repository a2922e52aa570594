package console

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
)

// maxKinds bounds the event kinds of either pipeline; a kind past it is
// counted in the last slot.
const maxKinds = 32

// pipeline is one registered client or server: its subscription's
// counters, written by the hooks, and the per-row state the sampler keeps.
type pipeline struct {
	c      *Console
	kind   string
	name   string
	client *interceptors.Client
	server *server.Server
	cancel func()

	// Written by the hooks with atomic operations.
	counts [maxKinds]atomic.Uint64
	// seen holds the first event of each kind since the last regular
	// sample, for the merged event list's entry; the sampler takes it.
	seen     [maxKinds]atomic.Pointer[Event]
	rows     sync.Map // rowKey -> *rowCounts
	nRows    atomic.Int64
	overflow rowCounts // the counts of rows past the cap, shown as RowOther

	// pending holds the failed attempts of calls still running, by the
	// call's span, for the retried-calls list; bounded by maxPending.
	pendingMu sync.Mutex
	pending   map[callKey]*pendingCall

	// breakers holds when each breaker (by key) entered its state; written
	// by the transition hook and the sampler.
	breakersMu sync.Mutex
	breakers   map[string]stateSince

	// Owned by the sampler goroutine.
	states     map[string]*rowState
	prevCounts [maxKinds]uint64
	prevAt     time.Time
	last       Pipeline // the latest full sample
	sampled    bool     // last holds one
}

// callKey identifies a call by the span in the context its hooks get: a
// fixed-size comparable value, so that following a call allocates no
// string.
type callKey struct {
	trace trace.TraceID
	span  trace.SpanID
}

// callKeyOf returns the key of the call whose hook got ctx; ok is false
// when ctx carries no valid span.
func callKeyOf(ctx context.Context) (k callKey, ok bool) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return callKey{}, false
	}
	return callKey{trace: sc.TraceID(), span: sc.SpanID()}, true
}

// rowKey names the row a hook's counts go to: a client's (target,
// method), or a server method with an empty target; both clipped.
type rowKey struct{ target, method string }

func keyOf(target, method string) rowKey { return rowKey{clip(target), clip(method)} }

// rowCounts are the counts of one row's events.
type rowCounts struct {
	retries, denied, exhausted, fallback atomic.Uint64 // client
	pushbacks, pushbackWaitUS            atomic.Uint64 // client: retries after the server's pushback, their waits
	shed, deadline, limited, faults      atomic.Uint64 // server

	// Owned by the sampler: the counts at the latest regular sample and
	// when they last moved, to forget a server method that went quiet.
	seen  countSet
	moved time.Time
}

// idle records the regular sample at now of counts cur and returns for
// how long they have stood still.
func (r *rowCounts) idle(cur countSet, now time.Time) time.Duration {
	if r.moved.IsZero() || cur != r.seen {
		r.seen, r.moved = cur, now
	}
	return now.Sub(r.moved)
}

// load returns the counts as plain numbers.
func (r *rowCounts) load() countSet {
	return countSet{
		retries: r.retries.Load(), denied: r.denied.Load(), exhausted: r.exhausted.Load(), fallback: r.fallback.Load(),
		pushbacks: r.pushbacks.Load(), pushbackWaitUS: r.pushbackWaitUS.Load(),
		shed: r.shed.Load(), deadline: r.deadline.Load(), limited: r.limited.Load(), faults: r.faults.Load(),
	}
}

// countSet is a reading of a row's counters, events' and the pipeline
// engines' alike.
type countSet struct {
	retries, denied, exhausted, fallback uint64
	pushbacks, pushbackWaitUS            uint64
	shed, deadline, limited, faults      uint64
	breakerRejected, bulkheadRejected    uint64
	throttled                            uint64
	admitted                             uint64
}

// rowState is what the sampler keeps of a row between samples.
type rowState struct {
	prev    countSet
	started bool         // prev holds a reading
	hist    *ring[point] // only while the row is shown
	seen    time.Time    // the latest sample that had the row
	shown   time.Time    // the latest sample that showed the row
}

// stateSince is when a breaker entered its state.
type stateSince struct {
	state   string
	mode    string // "" when unknown
	since   time.Time
	atLeast bool // the state predates the console's first look
}

// pendingCall is the failed attempts of a call seen so far.
type pendingCall struct {
	steps []Step
	at    time.Time
	// shared is set when steps came out of order: two calls without a
	// span of their own share their caller's, and their steps cannot be
	// told apart.
	shared bool
}

// Bounds of the per-pipeline maps, whatever the traffic.
const (
	maxPending   = 256
	maxStepsKept = 16
	pendingTTL   = time.Minute
)

func newPipeline(c *Console, kind, name string) *pipeline {
	return &pipeline{
		c:        c,
		kind:     kind,
		name:     clip(name),
		pending:  make(map[callKey]*pendingCall),
		breakers: make(map[string]stateSince),
		states:   make(map[string]*rowState),
	}
}

// count adds one event of kind to the pipeline's totals.
func (p *pipeline) count(kind int) {
	p.counts[min(kind, maxKinds-1)].Add(1)
}

// wants reports whether the pipeline has no example of kind yet for the
// merged event entry of the interval; the hooks build one only then.
func (p *pipeline) wants(kind int) bool {
	return p.seen[min(kind, maxKinds-1)].Load() == nil
}

// remember keeps e as the example of its kind for the merged event entry,
// unless one is kept already: at most one allocation per kind and
// interval.
func (p *pipeline) remember(kind int, e Event) {
	p.seen[min(kind, maxKinds-1)].CompareAndSwap(nil, &e)
}

// forgetRows drops the event counters of the rows not in keep, so that
// rows gone from the pipeline make room for new ones.
func (p *pipeline) forgetRows(keep map[rowKey]bool) {
	if int(p.nRows.Load()) <= len(keep) {
		return
	}
	p.rows.Range(func(k, _ any) bool {
		if !keep[k.(rowKey)] {
			if _, loaded := p.rows.LoadAndDelete(k); loaded {
				p.nRows.Add(-1)
			}
		}
		return true
	})
}

// dropRow forgets the counters of server method k, which have stood
// still; a hook that loaded them just before may still add an event, which
// the pipeline's counters keep.
func (p *pipeline) dropRow(k rowKey, rc *rowCounts) {
	if p.rows.CompareAndDelete(k, rc) {
		p.nRows.Add(-1)
	}
}

// row returns the counters of k, creating them while the pipeline has
// fewer than its cap; past it, the shared overflow counters.
func (p *pipeline) row(k rowKey) *rowCounts {
	if r, ok := p.rows.Load(k); ok {
		return r.(*rowCounts)
	}
	if p.nRows.Load() >= int64(4*p.c.cfg.MaxRows) {
		return &p.overflow
	}
	r, loaded := p.rows.LoadOrStore(k, new(rowCounts))
	if !loaded {
		p.nRows.Add(1)
	}
	return r.(*rowCounts)
}

// rowCountsOf returns the counters of k, or nil when it has none.
func (p *pipeline) rowCountsOf(k rowKey) *rowCounts {
	if r, ok := p.rows.Load(k); ok {
		return r.(*rowCounts)
	}
	return nil
}

// transition records that breaker key entered state, in mode, at t.
func (p *pipeline) transition(key, state, mode string, t time.Time) {
	p.breakersMu.Lock()
	p.breakers[key] = stateSince{state: state, mode: mode, since: t}
	p.breakersMu.Unlock()
}

// inState returns for how long the breaker key has been in state, as of
// now, and whether it was longer; it starts the clock when the console
// first sees the breaker, and restarts it when the state differs from the
// one recorded (a transition the hook did not report).
func (p *pipeline) inState(key, state string, now time.Time) (time.Duration, bool) {
	p.breakersMu.Lock()
	defer p.breakersMu.Unlock()
	s, ok := p.breakers[key]
	switch {
	case !ok:
		s = stateSince{state: state, since: now, atLeast: true}
		p.breakers[key] = s
	case s.state != state:
		s = stateSince{state: state, since: now}
		p.breakers[key] = s
	case s.mode != "":
		s.mode = "" // the sample says the mode from now on
		p.breakers[key] = s
	}
	return max(now.Sub(s.since), 0), s.atLeast
}

// pruneBreakers forgets the breakers not in keep.
func (p *pipeline) pruneBreakers(keep map[string]bool) {
	p.breakersMu.Lock()
	defer p.breakersMu.Unlock()
	if len(p.breakers) <= len(keep) {
		return
	}
	for k := range p.breakers {
		if !keep[k] {
			delete(p.breakers, k)
		}
	}
}

// addStep records a failed attempt of the call k. opens says whether the
// step may start the call's entry: a retry or a hedge does, a step that
// ends the call (exhausted, denied, past the deadline) does not, since a
// call whose first step ends it made one attempt and is no retried call.
// When the map is full, the oldest call makes room: calls whose end the
// console did not hear (a retry that never reached the server) age out.
func (p *pipeline) addStep(k callKey, s Step, now time.Time, opens bool) {
	p.pendingMu.Lock()
	defer p.pendingMu.Unlock()
	pc := p.pending[k]
	if pc == nil {
		if !opens {
			return
		}
		if len(p.pending) >= maxPending {
			p.dropOldestLocked()
		}
		pc = &pendingCall{at: now}
		p.pending[k] = pc
	}
	if n := len(pc.steps); n > 0 {
		// One call's steps come in order: attempts grow, and a step of
		// the same attempt (a hedge, then the denial of the next) is of
		// another kind.
		last := pc.steps[n-1]
		if s.Attempt < last.Attempt || s.Attempt == last.Attempt && s.Kind == last.Kind {
			pc.shared = true
		}
	}
	if !pc.shared && len(pc.steps) < maxStepsKept {
		pc.steps = append(pc.steps, s)
	}
}

// dropOldestLocked forgets the call first seen longest ago. p.pendingMu
// is held.
func (p *pipeline) dropOldestLocked() {
	var oldest callKey
	var at time.Time
	for k, pc := range p.pending {
		if at.IsZero() || pc.at.Before(at) {
			oldest, at = k, pc.at
		}
	}
	delete(p.pending, oldest)
}

// takeSteps returns and forgets the failed attempts of call k; nil when
// the console has none, or could not tell them from another call's.
func (p *pipeline) takeSteps(k callKey) []Step {
	p.pendingMu.Lock()
	defer p.pendingMu.Unlock()
	pc := p.pending[k]
	if pc == nil {
		return nil
	}
	delete(p.pending, k)
	if pc.shared {
		return nil
	}
	return pc.steps
}

// prunePending forgets the calls older than pendingTTL: calls whose end
// the console did not hear.
func (p *pipeline) prunePending(now time.Time) {
	p.pendingMu.Lock()
	defer p.pendingMu.Unlock()
	for k, pc := range p.pending {
		if now.Sub(pc.at) > pendingTTL {
			delete(p.pending, k)
		}
	}
}

// sample reads the pipeline into a Pipeline.
func (p *pipeline) sample(now time.Time, regular bool) Pipeline {
	elapsed := now.Sub(p.prevAt)
	if p.prevAt.IsZero() {
		elapsed = 0
	}
	out := Pipeline{Name: p.name, Kind: p.kind}
	var rows []Row
	switch {
	case p.client != nil:
		rows = p.clientRows(&out, now, elapsed, regular)
	case p.server != nil:
		rows = p.serverRows(&out, now, elapsed, regular)
	}
	// Pipeline counters.
	var cur [maxKinds]uint64
	for k := range p.counts {
		cur[k] = p.counts[k].Load()
		if cur[k] == 0 {
			continue
		}
		out.Counters = append(out.Counters, Counter{Kind: p.kindName(k), Total: cur[k], PerSec: rate(p.prevCounts[k], cur[k], elapsed)})
	}
	p.sortRows(rows)
	if len(rows) > p.c.cfg.MaxRows {
		out.Hidden = len(rows) - p.c.cfg.MaxRows
		rows = rows[:p.c.cfg.MaxRows]
	}
	// The other row is shown whatever the cap: it says that the console
	// counts some methods together.
	if o := p.overflow.load(); o != (countSet{}) {
		rows = append(rows, p.otherRow(o, now, elapsed, regular))
		p.sortRows(rows)
	}
	out.Rows = rows
	for _, r := range rows {
		out.Trouble = max(out.Trouble, r.Trouble)
	}
	p.keepHistories(rows, now, regular)
	if regular {
		p.mergeEvents(cur, now)
		p.prevCounts = cur
		p.prevAt = now
		p.prunePending(now)
	} else if p.prevAt.IsZero() {
		p.prevCounts = cur
		p.prevAt = now
	}
	p.last, p.sampled = out, true
	return out
}

// refresh returns the latest full sample with the breaker transitions
// heard since applied: what an early sample shows, at the cost of a look
// at the pipeline's breakers, without reading the pipeline's snapshot.
// A server has no breaker: its latest sample stands.
func (p *pipeline) refresh(now time.Time) Pipeline {
	out := p.last
	if p.client == nil {
		return out
	}
	var rows []Row
	p.breakersMu.Lock()
	for i, r := range out.Rows {
		b := r.Breaker
		if b == nil {
			continue
		}
		s, ok := p.breakers[b.Key]
		if !ok || s.state == b.State {
			continue
		}
		if rows == nil {
			rows = slices.Clone(out.Rows)
		}
		nb := *b
		nb.State = s.state
		if s.mode != "" {
			nb.Mode = s.mode
		}
		nb.InStateMS = max(now.Sub(s.since), 0).Milliseconds()
		nb.InStateAtLeast = false
		nb.Transitions++
		rows[i].Breaker = &nb
		rows[i].Trouble = trouble(&nb, r.Bulkhead, r.RateLimit, r.Throttle, r.Retry, nil)
	}
	p.breakersMu.Unlock()
	if rows == nil {
		return out
	}
	p.sortRows(rows)
	out.Rows = rows
	out.Trouble = TroubleNone
	for _, r := range rows {
		out.Trouble = max(out.Trouble, r.Trouble)
	}
	p.last = out
	return out
}

// otherRow is the row of the events counted past the cap of rows.
func (p *pipeline) otherRow(cur countSet, now time.Time, elapsed time.Duration, regular bool) Row {
	r := Row{ID: "other", Kind: RowOther}
	// The row has its state whatever the cap of the others.
	st := p.states[r.ID]
	if st == nil {
		st = &rowState{}
		p.states[r.ID] = st
	}
	st.seen = now
	prev := st.step(cur, regular)
	perSec := func(a, b uint64) float64 { return rate(a, b, elapsed) }
	r.Last = Sample{TimeMS: now.UnixMilli()}
	if p.client != nil {
		r.Retry = &Retry{
			RetriesPerSec:   perSec(prev.retries, cur.retries),
			DeniedPerSec:    perSec(prev.denied, cur.denied),
			ExhaustedPerSec: perSec(prev.exhausted, cur.exhausted),
			FallbackPerSec:  perSec(prev.fallback, cur.fallback),
			BudgetLeft:      -1,
		}
		r.Retry.pushback(prev, cur, elapsed)
		r.Last.Retries = r.Retry.RetriesPerSec
	} else {
		r.ServerCounts = serverCounts(prev, cur, elapsed)
		r.Last.Refused = r.ServerCounts.ShedPerSec + r.ServerCounts.RateLimitedPerSec
		r.Last.Retries = r.ServerCounts.FaultsPerSec + r.ServerCounts.DeadlineRejectedPerSec
	}
	r.Trouble = trouble(nil, nil, nil, nil, r.Retry, r.ServerCounts)
	return r
}

// sortRows puts trouble first, then rows by kind, target, method and key.
func (p *pipeline) sortRows(rows []Row) {
	slices.SortFunc(rows, func(a, b Row) int {
		if a.Trouble != b.Trouble {
			return cmp.Compare(b.Trouble, a.Trouble)
		}
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Target, b.Target), cmp.Compare(a.Method, b.Method), cmp.Compare(a.Key, b.Key), cmp.Compare(a.ID, b.ID))
	})
}

// rowState returns the sampler's state of row id, creating it; nil when
// the pipeline keeps as many as it may already.
func (p *pipeline) rowState(id string, now time.Time) *rowState {
	st := p.states[id]
	if st == nil {
		if len(p.states) >= 4*p.c.cfg.MaxRows {
			return nil
		}
		st = &rowState{}
		p.states[id] = st
	}
	st.seen = now
	return st
}

// keepHistories attaches each shown row's history, adds the regular
// sample to it, drops the histories of the rows not shown (at most
// MaxRows rows keep one), and forgets the rows no longer seen.
func (p *pipeline) keepHistories(rows []Row, now time.Time, regular bool) {
	p.c.histMu.Lock()
	defer p.c.histMu.Unlock()
	for i := range rows {
		st := p.states[rows[i].ID]
		if st == nil {
			continue
		}
		if st.hist == nil {
			st.hist = newRing[point](p.c.cfg.History)
		}
		if regular {
			st.hist.add(pointOf(rows[i].Last))
		}
		st.shown = now
		rows[i].hist = st.hist
	}
	for id, st := range p.states {
		switch {
		case st.seen.Before(now):
			delete(p.states, id)
		case st.shown.Before(now):
			st.hist = nil
		}
	}
}

// step returns the counts to compute the row's rates from: its counts at
// the last regular sample, or cur itself (rates of zero) for a row seen
// for the first time. It moves the reference point to cur after a regular
// sample.
func (st *rowState) step(cur countSet, regular bool) countSet {
	if st == nil {
		return cur
	}
	prev := st.prev
	if !st.started {
		prev = cur
	}
	if regular || !st.started {
		st.prev, st.started = cur, true
	}
	return prev
}

// mergeEvents adds to the event list one entry per frequent event kind
// seen since the last regular sample, with its count.
func (p *pipeline) mergeEvents(cur [maxKinds]uint64, now time.Time) {
	for k := range p.seen {
		e := p.seen[k].Swap(nil)
		if e == nil {
			continue
		}
		n := cur[k] - p.prevCounts[k]
		if cur[k] < p.prevCounts[k] || n == 0 {
			n = 1
		}
		e.Count = n
		e.Time = now
		if n > 1 {
			e.Text = fmt.Sprintf("%s ×%d in %v, such as: %s", e.Kind, n, p.c.cfg.Interval, e.Text)
		}
		p.c.addEvent(*e)
	}
}

func (p *pipeline) kindName(k int) string {
	if p.client != nil {
		return interceptors.EventKind(k).String()
	}
	return server.EventKind(k).String()
}

// trouble returns the Trouble of a row from its parts.
func trouble(b *Breaker, bh *Bulkhead, rl *RateLimit, th *Throttle, rt *Retry, sc *ServerCounts) int {
	t := TroubleNone
	if b != nil {
		switch {
		case b.State == "open":
			t = TroubleOpen
		case b.State == "half-open":
			t = TroubleHalfOpen
		case b.RejectedPerSec > 0:
			t = TroubleLimited
		case b.FailureRate > 0 || b.SlowCallRate > 0:
			t = TroubleFailing
		}
	}
	if bh != nil && bh.RejectedPerSec > 0 {
		t = max(t, TroubleLimited)
	}
	if rl != nil && rl.LimitedPerSec > 0 {
		t = max(t, TroubleLimited)
	}
	if th != nil && (th.Probability > 0 || th.RejectedPerSec > 0) {
		t = max(t, TroubleLimited)
	}
	if rt != nil && (rt.RetriesPerSec > 0 || rt.FallbackPerSec > 0 || rt.ExhaustedPerSec > 0) {
		t = max(t, TroubleFailing)
	}
	if rt != nil && rt.DeniedPerSec > 0 {
		t = max(t, TroubleLimited)
	}
	if sc != nil {
		if sc.ShedPerSec > 0 || sc.RateLimitedPerSec > 0 {
			t = max(t, TroubleLimited)
		} else if sc.DeadlineRejectedPerSec > 0 || sc.FaultsPerSec > 0 {
			t = max(t, TroubleFailing)
		}
	}
	return t
}

package redisfleet

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/engineeringlabs/grpc-resilience/breaker"
)

// member is one joined breaker.
type member struct {
	name   string
	b      *breaker.Breaker
	keys   [3]string // window, state, lease
	detach func()

	// gateUntil is the reading of Breakers.now before which the breaker
	// may half-open (math.MaxInt64: always; 0: never). The syncer writes
	// it; the breaker's AllowHalfOpen reads it.
	gateUntil atomic.Int64
	// resync is set when one of the breaker's state changes could not be
	// handed to the syncer.
	resync atomic.Bool

	// Owned by the syncer goroutine (and by Join before the member is
	// published).
	last       breaker.Metrics // the counts last published
	known      bool            // the fleet's state was read at least once
	applied    uint64          // the epoch of the fleet state last applied
	fleet      fleetState
	leased     bool          // this process holds the probe lease
	leaseUntil time.Duration // Breakers.now reading at which the lease is deemed over
	pending    *transition   // a local transition not yet written to the fleet
	idle       int           // ticks skipped in a row for want of news
	lastOK     time.Duration // Breakers.now reading of the last successful sync
	stale      bool          // no successful sync for longer than the probe lease
}

// maxOpenFor bounds the fleet's open time; the scripts take a later end as
// hostile (maxOpenMS).
const maxOpenFor = 7 * 24 * time.Hour

// idleEvery is how many ticks apart an idle breaker of a closed fleet
// syncs.
const idleEvery = 10

// transition is a local change of state the fleet has to hear of.
type transition struct {
	open    bool
	openFor time.Duration // open: how long the fleet stays open
	epoch   uint64        // closed: the epoch the probes closed
	reason  string
}

type localEvent struct {
	m *member
	c breaker.StateChange
}

func (f *Breakers) runSyncer() {
	defer f.wg.Done()
	t := time.NewTicker(f.s.interval)
	defer t.Stop()
	f.tick()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
			f.tick()
		case ev := <-f.events:
			f.local(ev)
			for more := true; more; {
				select {
				case ev := <-f.events:
					f.local(ev)
				default:
					more = false
				}
			}
			f.flush()
		case msg := <-f.msgs:
			hinted := f.remote(nil, msg)
			for more := true; more; {
				select {
				case msg := <-f.msgs:
					hinted = f.remote(hinted, msg)
				default:
					more = false
				}
			}
			f.round(hinted, true)
		}
	}
}

// joined returns the joined members.
func (f *Breakers) joined() []*member {
	f.mu.Lock()
	defer f.mu.Unlock()
	ms := make([]*member, 0, len(f.members))
	for _, m := range f.members {
		ms = append(ms, m)
	}
	return ms
}

// isJoined reports whether m is still joined.
func (f *Breakers) isJoined(m *member) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.members[m.name] == m
}

// tick publishes every joined breaker's new counts and reads the fleet's
// totals and state, in one round trip for all of them, together with the
// transitions not yet written.
func (f *Breakers) tick() { f.round(f.joined(), false) }

// flush writes the pending transitions (and syncs their breakers) in one
// round trip; while Redis does not answer, the next tick does.
func (f *Breakers) flush() {
	if f.fallback.Load() {
		return
	}
	f.round(f.pending(f.joined()), true)
}

// pending returns the members of list with a transition to write.
func (f *Breakers) pending(list []*member) []*member {
	var out []*member
	for _, m := range list {
		if m.pending != nil {
			out = append(out, m)
		}
	}
	return out
}

// round makes one round trip for the members of list: their pending
// transitions (unless Redis is known to be away: they wait for it to
// answer again), then their counts and the fleet's state. An idle breaker
// of a closed fleet syncs every idleEvery rounds only, unless force.
func (f *Breakers) round(list []*member, force bool) {
	if len(list) == 0 {
		return
	}
	start := f.now()
	fallback := f.fallback.Load()
	var (
		ts    []*member // the members whose transition is written
		ms    []*member // the members synced
		cur   []breaker.Metrics
		execs []scriptExec
	)
	for _, m := range list {
		if m.resync.Swap(false) {
			f.rederive(m)
		}
		if m.pending == nil || fallback {
			continue
		}
		if m.pending.open && m.b.Peek().State == breaker.Closed {
			m.pending = nil // the breaker closed again before the fleet heard
			continue
		}
		ts = append(ts, m)
		execs = append(execs, scriptExec{transitionSource, f.transitionExec(m)})
	}
	window := strconv.FormatInt(f.s.windowSec, 10)
	lease := strconv.FormatInt(f.s.lease.Milliseconds(), 10)
	for _, m := range list {
		// Peek, not Metrics: reading the breaker must not half-open it
		// without a call, or an idle lease holder would keep its lease.
		met := m.b.Peek()
		calls := countDelta(met.Successes+met.Failures, m.last.Successes+m.last.Failures)
		fails := countDelta(met.Failures, m.last.Failures)
		slows := countDelta(met.SlowCalls, m.last.SlowCalls)
		// Ask for the lease only when calls wait for it: the breaker's own
		// open time is over and it rejected calls since the last sync.
		want := m.fleet.open && met.State == breaker.Open && met.Mode == breaker.Auto &&
			met.OpenRemaining == 0 && met.Rejections > m.last.Rejections
		// Extend it only while the holder probes: a probe in flight, or
		// calls since the last sync. A holder with nothing to call lets
		// it run out.
		renew := m.leased && (met.HalfOpenProbes > 0 || met.Calls > m.last.Calls)
		// An idle breaker of a closed fleet syncs every idleEvery ticks
		// only: the channel brings transitions at once, the round trip is
		// the safety net.
		if !force && calls == "0" && !want && !renew && m.known && !m.fleet.open && m.pending == nil && !fallback {
			if m.idle++; m.idle < idleEvery {
				continue
			}
		}
		m.idle = 0
		ms = append(ms, m)
		cur = append(cur, met)
		execs = append(execs, scriptExec{syncSource, rueidis.LuaExec{
			Keys: m.keys[:],
			Args: []string{calls, fails, slows, window, f.id, flag(want), flag(renew), lease},
		}})
	}
	if len(execs) == 0 {
		return
	}
	res, rerun := f.evalMulti(execs)

	// Counts sent are never sent again, whatever the answer: a script
	// that failed halfway may have added them, and counting them twice
	// would be worse than losing them. Counts made while Redis does not
	// answer are dropped too: they would land in one second when it
	// answers again.
	for i, m := range ms {
		m.last = cur[i]
	}
	for _, r := range res {
		if err := r.Error(); classify(err) == replyUnavailable {
			f.down(err)
			return
		}
	}
	f.up()
	var late map[*member]bool // a transition run again after its sync
	for i, m := range ts {
		if rerun[i] {
			if late == nil {
				late = make(map[*member]bool)
			}
			late[m] = true
		}
		if f.isJoined(m) {
			f.transitioned(m, res[i])
		}
	}
	for i, m := range ms {
		// The sync of a member whose transition ran again by its source
		// (NOSCRIPT) read the state before the transition: the next
		// round trip reads it again.
		if f.isJoined(m) && !late[m] {
			f.synced(m, res[len(ts)+i], start)
		}
	}
	// Transitions that waited for Redis, or that this round trip caused
	// (the fleet's rate was reached), are written at once.
	if again := f.pending(list); len(again) > 0 && (fallback || !force) {
		f.round(again, true)
	}
}

// synced handles the reply of m's sync, made with start the reading of
// Breakers.now before the round trip.
func (f *Breakers) synced(m *member, r rueidis.RedisResult, start time.Duration) {
	v, err := r.AsIntSlice()
	var rep syncReply
	if err == nil {
		rep, err = parseSyncReply(v)
	}
	if err != nil {
		f.failedFor(m, err)
		return
	}
	f.c.syncs.Add(1)
	m.lastOK, m.stale = f.now(), false
	f.sawHostile(m.name, rep.hostile)
	switch {
	case rep.leased && !m.leased:
		f.c.leases.Add(1)
		fallthrough
	case rep.leased:
		m.leased = true
		m.leaseUntil = leaseDeadline(start, rep.leaseLeftMS)
	default:
		m.leased = false
	}
	f.apply(m, rep.state)
	if m.pending == nil && !rep.state.open {
		if r := f.rateReason(rep); r != "" {
			f.tripForRate(m, r)
		}
	}
	if !m.leased && m.fleet.open {
		// The lease ran out (or went to another process) while the
		// breaker is half-open between probes: it opens again, so that
		// only the holder probes.
		if met := m.b.Peek(); met.Mode == breaker.Auto && met.State == breaker.HalfOpen && met.HalfOpenProbes == 0 {
			m.b.Trip()
			f.c.trips.Add(1)
		}
	}
}

// failedFor records a round trip for m that Redis answered with an error
// or a malformed reply. When m has had no successful sync for longer than
// the probe lease, its breaker runs on its own (its gate opens) until one
// succeeds.
func (f *Breakers) failedFor(m *member, err error) {
	f.c.syncErrors.Add(1)
	if classify(err) != replyHostile || !errors.Is(err, errBreakerReply) {
		err = fmt.Errorf("redisfleet: breaker %q: %w", m.name, err)
	}
	f.report(m.name, err)
	if !m.stale && f.now()-m.lastOK > f.s.lease {
		m.stale = true
		f.setGate(m)
	}
}

// leaseDeadline returns the reading of Breakers.now until which a lease
// with leftMS left at start (a reading taken before the round trip) is
// used: nine tenths of it, so that the process stops probing before Redis
// gives the lease to another. It saturates instead of overflowing.
func leaseDeadline(start time.Duration, leftMS int64) time.Duration {
	left := time.Duration(min(max(leftMS, 0), maxLeaseLeftMS)) * time.Millisecond / 10 * 9
	if start > math.MaxInt64-left {
		return math.MaxInt64
	}
	return start + left
}

// rateReason returns why the fleet's rates call for opening, or "".
func (f *Breakers) rateReason(r syncReply) string {
	if r.calls < f.s.minCalls {
		return ""
	}
	switch {
	case exceeds(r.failures, r.calls, f.s.failureRate):
		return breaker.ReasonFailureRate.String()
	case exceeds(r.slows, r.calls, f.s.slowRate):
		return breaker.ReasonSlowCallRate.String()
	}
	return ""
}

// exceeds reports whether n of calls is at or above rate percent; a rate of
// zero (or less) is off.
func exceeds(n, calls int64, rate float64) bool {
	if !(rate > 0) || calls <= 0 || n < 0 {
		return false
	}
	return float64(n)*100 >= rate*float64(calls)
}

// countDelta returns cur-prev as the scripts take it: a decimal count
// between 0 and maxCount.
func countDelta(cur, prev uint64) string {
	if cur <= prev {
		return "0"
	}
	return strconv.FormatUint(min(cur-prev, maxCount), 10)
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// tripForRate opens the local breaker because the fleet's rate reached its
// threshold, and opens the fleet for as long as the breaker stays open.
func (f *Breakers) tripForRate(m *member, reason string) {
	m.b.Trip()
	met := m.b.Peek()
	if met.State != breaker.Open || met.Mode != breaker.Auto || met.OpenRemaining <= 0 {
		return // forced by hand, or open and waiting for the lease already
	}
	f.c.trips.Add(1)
	m.pending = &transition{open: true, openFor: met.OpenRemaining, reason: reason}
}

// local handles a state change of a joined breaker: a transition the
// fleet has to hear of becomes pending, written by the next round trip.
func (f *Breakers) local(ev localEvent) {
	m, c := ev.m, ev.c
	if c.Mode != breaker.Auto || !f.isJoined(m) {
		return
	}
	switch {
	case c.To == breaker.Open && (c.Reason == breaker.ReasonConsecutiveFailures ||
		c.Reason == breaker.ReasonFailureRate || c.Reason == breaker.ReasonSlowCallRate ||
		c.Reason == breaker.ReasonProbeFailed):
		m.pending = &transition{open: true, openFor: c.OpenFor, reason: c.Reason.String()}
	case c.To == breaker.Closed && c.Reason == breaker.ReasonProbesSucceeded && m.known && m.fleet.open:
		m.pending = &transition{epoch: m.applied, reason: c.Reason.String()}
	case c.To == breaker.Closed:
		// Closed here while Redis did not answer: an opening not yet
		// written is moot.
		m.pending = nil
		return
	default:
		// Trips and resets the fleet caused, half-opening, and changes
		// made by hand stay local.
	}
}

// rederive rebuilds the pending transition of a breaker whose state
// changes the syncer missed, from its current state.
func (f *Breakers) rederive(m *member) {
	met := m.b.Peek()
	switch {
	case met.Mode != breaker.Auto:
	case met.State == breaker.Open && !m.fleet.open && met.OpenRemaining > 0:
		m.pending = &transition{open: true, openFor: met.OpenRemaining, reason: "resync"}
	case met.State == breaker.Closed && m.fleet.open && m.leased:
		m.pending = &transition{epoch: m.applied, reason: "resync"}
	}
}

// transitionExec returns the script call that writes m's pending
// transition to the fleet.
func (f *Breakers) transitionExec(m *member) rueidis.LuaExec {
	p := m.pending
	op := "closed"
	if p.open {
		op = "open"
	}
	openFor := min(max(p.openFor.Milliseconds(), 1), maxOpenFor.Milliseconds())
	return rueidis.LuaExec{Keys: m.keys[:], Args: []string{
		op, strconv.FormatInt(openFor, 10), f.id, strconv.FormatUint(p.epoch, 10),
		f.s.prefix + breakerSpace + breakerChannel, m.name, p.reason,
		strconv.FormatInt(stateKeep.Milliseconds(), 10),
	}}
}

// transitioned handles the reply to m's transition. Redis answered: the
// transition is no longer pending, whether it applied, found the fleet
// moved on, or failed.
func (f *Breakers) transitioned(m *member, r rueidis.RedisResult) {
	m.pending = nil
	v, err := r.AsIntSlice()
	var rep transitionReply
	if err == nil {
		rep, err = parseTransitionReply(v)
	}
	if err != nil {
		f.failedFor(m, err)
		return
	}
	f.sawHostile(m.name, rep.hostile)
	if rep.changed {
		f.c.published.Add(1)
	}
	f.apply(m, rep.state)
}

// remote handles a message heard on the channel. A message is only a
// hint: the member it names is read from Redis at once (one round trip
// for all the messages waiting), and its state is what Redis holds, never
// what the message says. remote returns hinted with that member added.
// The process's own transitions are already applied and need no reading.
func (f *Breakers) remote(hinted []*member, msg message) []*member {
	f.c.received.Add(1)
	if msg.origin == f.id {
		return hinted
	}
	f.mu.Lock()
	m := f.members[msg.name]
	f.mu.Unlock()
	if m == nil || slices.Contains(hinted, m) {
		return hinted
	}
	return append(hinted, m)
}

// apply brings the local breaker in line with the fleet's state st, as
// read from Redis. An epoch above the one applied is a transition the
// process missed; an epoch below it means the fleet's state was lost
// (Redis restarted or the key expired): it starts again from st.
func (f *Breakers) apply(m *member, st fleetState) {
	if !m.known || st.epoch != m.applied {
		again := m.known && st.epoch > m.applied
		m.known, m.applied = true, st.epoch
		switch {
		case st.open:
			f.tripLocal(m)
		case again:
			f.resetLocal(m)
		}
	}
	m.fleet = st
	if !st.open {
		m.leased = false
	}
	f.setGate(m)
}

func (f *Breakers) tripLocal(m *member) {
	if m.b.Mode() == breaker.Auto && m.b.Peek().State != breaker.Open {
		m.b.Trip()
		f.c.trips.Add(1)
	}
}

func (f *Breakers) resetLocal(m *member) {
	if m.b.Mode() == breaker.Auto && m.b.Peek().State != breaker.Closed {
		m.b.Reset()
		f.c.resets.Add(1)
	}
}

// setGate decides whether m's breaker may half-open: always while Redis
// does not answer, while m's syncs have failed for longer than the probe
// lease, or while the fleet is closed; while the fleet is open, only in
// the process holding the probe lease, until the lease runs out.
func (f *Breakers) setGate(m *member) {
	switch {
	case f.fallback.Load() || m.stale || !m.fleet.open:
		m.gateUntil.Store(math.MaxInt64)
	case m.leased:
		m.gateUntil.Store(int64(m.leaseUntil))
	default:
		m.gateUntil.Store(0)
	}
}

// down records a round trip that failed because Redis could not serve it
// and falls back to local breakers.
func (f *Breakers) down(err error) {
	f.c.syncErrors.Add(1)
	f.report("", err)
	if f.fallback.Swap(true) {
		return
	}
	f.c.fallbacks.Add(1)
	f.downSince = time.Now()
	for _, m := range f.joined() {
		f.setGate(m)
	}
	f.s.logger.Warn("redisfleet: Redis unavailable; shared breakers run on their own local state until it answers",
		"cause", err, "breakers", len(f.joined()))
	if f.s.onFallback != nil {
		f.s.onFallback(FallbackEvent{Reason: err})
	}
}

// up records a round trip Redis answered, ending a fallback.
func (f *Breakers) up() {
	if !f.fallback.Swap(false) {
		return
	}
	for _, m := range f.joined() {
		f.setGate(m)
	}
	down := time.Since(f.downSince)
	f.s.logger.Info("redisfleet: Redis answers again; shared breakers follow the fleet", "down", down)
	if f.s.onRecover != nil {
		f.s.onRecover(RecoverEvent{Down: down})
	}
}

func (f *Breakers) report(name string, err error) {
	if f.s.onError != nil {
		f.s.onError(name, err)
	}
}

func (f *Breakers) sawHostile(name string, n int64) {
	if n <= 0 {
		return
	}
	f.c.hostile.Add(uint64(n))
	f.report(name, fmt.Errorf("%w: %d under the keys of breaker %q", ErrHostileValue, n, name))
}

// Script SHAs, for EVALSHA.
var scriptSHA = map[string]string{
	syncSource:       sha1Hex(syncSource),
	transitionSource: sha1Hex(transitionSource),
}

func sha1Hex(s string) string {
	h := sha1.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// scriptExec is one script call of a round trip.
type scriptExec struct {
	src string // syncSource or transitionSource
	rueidis.LuaExec
}

// evalMulti runs execs in one round trip, each script by its SHA, and
// again by its source for the execs the server did not know it for
// (NOSCRIPT: after a restart or SCRIPT FLUSH), in a second round trip;
// rerun[i] reports that execs[i] ran in the second one, after the execs
// that followed it. The whole is bounded by Timeout, and ends when the
// Breakers is closed.
func (f *Breakers) evalMulti(execs []scriptExec) (res []rueidis.RedisResult, rerun []bool) {
	ctx, cancel := context.WithTimeout(f.ctx, f.s.timeout)
	defer cancel()
	c := f.client
	cmds := make(rueidis.Commands, len(execs))
	for i, e := range execs {
		cmds[i] = c.B().Evalsha().Sha1(scriptSHA[e.src]).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build()
	}
	res = c.DoMulti(ctx, cmds...)
	rerun = make([]bool, len(execs))
	var again []int
	for i, r := range res {
		if e, ok := rueidis.IsRedisErr(r.Error()); ok && e.IsNoScript() {
			again = append(again, i)
			rerun[i] = true
		}
	}
	if len(again) == 0 {
		return res, rerun
	}
	cmds = cmds[:0]
	for _, i := range again {
		e := execs[i]
		cmds = append(cmds, c.B().Eval().Script(e.src).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build())
	}
	for j, r := range c.DoMulti(ctx, cmds...) {
		res[again[j]] = r
	}
	return res, rerun
}

// runSubscriber hears the fleet's transitions on the channel and hands
// them to the syncer. When the subscription breaks, it subscribes again;
// the syncer's round trips bring back what it missed meanwhile.
func (f *Breakers) runSubscriber() {
	defer f.wg.Done()
	channel := f.s.prefix + breakerSpace + breakerChannel
	retry := min(max(f.s.interval, 10*time.Millisecond), time.Second)
	for {
		_ = f.client.Receive(f.ctx, f.client.B().Subscribe().Channel(channel).Build(), func(pm rueidis.PubSubMessage) {
			msg, err := parseMessage(pm.Message)
			if err != nil {
				f.c.hostile.Add(1)
				f.report("", fmt.Errorf("%w: %w", ErrHostileValue, err))
				return
			}
			select {
			case f.msgs <- msg:
			default:
				f.c.dropped.Add(1)
			}
		})
		t := time.NewTimer(retry)
		select {
		case <-f.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

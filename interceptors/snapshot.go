package interceptors

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/ratelimit"
	"github.com/engineeringlabs/grpc-resilience/retry"
	"github.com/engineeringlabs/grpc-resilience/throttle"
)

// ClientSnapshot is the state of a [Client] at one moment, for consoles,
// health pages and tests: what each method's breaker, throttle, bulkhead,
// rate limit and retry budget are doing, and the policy in force. It is plain data,
// a copy that later calls do not change, and every list in it is sorted,
// so that two snapshots of the same state are equal and marshal to the
// same JSON.
//
// Its size is bounded by the client's bounded state: at most
// Config.MaxKeys entries in Methods and in Budgets, and one entry per
// policy in Policies.
type ClientSnapshot struct {
	// Methods has one entry per method and target the client keeps state
	// for, sorted by Target, then Method. A state evicted to make room
	// (see "Bounded state" in the package documentation) is not in it.
	Methods []MethodSnapshot
	// Budgets has one entry per target's retry budget
	// (Config.TargetBudget), sorted by Target.
	Budgets []BudgetSnapshot
	// Policies has one entry per policy: the default one, then one per
	// key of Config.Methods and Config.Services, sorted by Name.
	Policies []PolicySnapshot
}

// MethodSnapshot is the state of the calls of one method to one target.
// It is plain data.
type MethodSnapshot struct {
	// Target is the target of the calls' connection, cc.Target(); Method
	// the full method name.
	Target, Method string
	// Policy is the Name of the [PolicySnapshot] that governs the calls.
	Policy string
	// Pattern, MaxAttempts and Idempotent are what a call makes by
	// default; per-call options may change them.
	Pattern     Pattern
	MaxAttempts int
	Idempotent  bool
	// Breaker is the breaker that guards the calls; nil when the policy
	// has none.
	Breaker *BreakerSnapshot
	// Bulkhead is the bulkhead that bounds the calls; nil when the policy
	// has none.
	Bulkhead *BulkheadSnapshot
	// Throttle is the adaptive throttle of the calls; nil when the
	// policy has none.
	Throttle *ThrottleSnapshot
	// RateLimit is the rate limit of the calls; nil when the policy has
	// none.
	RateLimit *RateLimitSnapshot
	// Budget is the budget the calls' retries or hedges draw on: the
	// target's, or the policy's own (then its Target is empty); nil when
	// they draw on none or the method neither retries nor hedges.
	Budget *BudgetSnapshot
}

// BreakerSnapshot is a breaker and the policy that configures it. It is
// plain data.
type BreakerSnapshot struct {
	// Scope says which calls share the breaker, and Key is its scope key
	// (and its name): target and method, target and service, or target.
	Scope Scope
	Key   string
	// FailureThreshold, FailureRateThreshold, SlowCallRateThreshold and
	// OpenDuration are the policy's, as configured: zero means the
	// default or none, as [BreakerPolicy] says.
	FailureThreshold      int
	FailureRateThreshold  float64
	SlowCallRateThreshold float64
	OpenDuration          time.Duration
	// Metrics are the breaker's state and counts. For a breaker shared
	// by a scope that no call made yet, or that was evicted while idle,
	// they are those of a new, closed breaker.
	Metrics breaker.Metrics
}

// ThrottleSnapshot is an adaptive throttle and the policy that configures
// it. It is plain data.
type ThrottleSnapshot struct {
	// Scope and Key are as for [BreakerSnapshot].
	Scope Scope
	Key   string
	// Metrics are the throttle's window counts, rejection probability and
	// settings in force (defaults filled in): zero counts for a shared
	// throttle that no call made yet or that was evicted while idle.
	Metrics throttle.Metrics
}

// BulkheadSnapshot is a bulkhead and the policy that configures it. It is
// plain data.
type BulkheadSnapshot struct {
	// Scope and Key are as for [BreakerSnapshot].
	Scope Scope
	Key   string
	// Limit, Queue and MaxWait are the policy's; Metrics.Limit is the
	// limit in force.
	Limit   int
	Queue   int
	MaxWait time.Duration
	// Metrics are the bulkhead's counts: zero for a shared bulkhead that
	// no call made yet or that was evicted while idle.
	Metrics bulkhead.Metrics
}

// RateLimitSnapshot is a rate limit and the policy that configures it. It
// is plain data.
type RateLimitSnapshot struct {
	// Scope and Key are as for [BreakerSnapshot].
	Scope Scope
	Key   string
	// Rate, Burst and Wait are the policy's, Burst with its default
	// filled in.
	Rate  float64
	Burst int
	Wait  bool
	// Tokens is the permits Key has left now: Burst when it is unused.
	Tokens float64
	// Limited counts the attempts of this method to this target that the
	// limit refused. The policy's totals are in [PolicySnapshot].
	Limited uint64
}

// BudgetSnapshot is a retry budget. It is plain data.
type BudgetSnapshot struct {
	// Target is the target whose budget it is (Config.TargetBudget);
	// empty for a policy's own budget (RetryPolicy.Budget,
	// HedgingPolicy.Budget).
	Target string
	// Type is the budget's Go type, such as "*retry.RatioBudget".
	Type string
	// Available is how many retries the budget would grant now, as
	// [retry.RatioBudget.Available] and [retry.TokenBucket.Available] say;
	// -1 when the budget has no method Available() int.
	Available int
}

// PolicySnapshot is the state a policy shares between every call it
// governs. It is plain data.
type PolicySnapshot struct {
	// Name is "default", "method:" and a key of Config.Methods, or
	// "service:" and a key of Config.Services.
	Name string
	// RateLimit has the totals of the policy's rate limit over every key;
	// nil without a rate limit.
	RateLimit *ratelimit.KeyedMetrics
	// OverflowBreaker and OverflowBulkhead are the breaker and bulkhead
	// shared by the calls that found the client's bounded state full (see
	// "Bounded state" in the package documentation); nil when the policy
	// has none. A breaker or bulkhead shared by a scope has its own
	// overflow, not shown.
	OverflowBreaker  *breaker.Metrics
	OverflowBulkhead *bulkhead.Metrics
	// OverflowThrottle is the throttle shared, likewise, by the calls
	// that found the client's bounded state full; nil when the policy has
	// no throttle of ScopeMethod.
	OverflowThrottle *throttle.Metrics
}

// availabler is implemented by the budgets that say how many retries they
// would grant now, such as retry.RatioBudget and retry.TokenBucket.
type availabler interface{ Available() int }

// Snapshot returns the client's state now: see [ClientSnapshot]. It is
// safe to call concurrently with calls, which it neither blocks nor slows
// (it reads the client's caches without their locks), and it creates no
// state: a breaker or bulkhead no call made yet is not made by it. The
// values are read one after the other while calls may change them.
//
// It reads breakers with [breaker.Breaker.Peek], so that looking never
// moves an open breaker whose open duration ran out to half-open: such a
// breaker shows as open, with no time remaining, until a call looks.
func (c *Client) Snapshot() ClientSnapshot {
	var s ClientSnapshot
	c.states.Range(func(_ stateKey, ms *methodState) bool {
		s.Methods = append(s.Methods, ms.snapshot())
		return true
	})
	slices.SortFunc(s.Methods, func(a, b MethodSnapshot) int {
		return cmp.Or(strings.Compare(a.Target, b.Target), strings.Compare(a.Method, b.Method))
	})
	c.budgets.Range(func(target string, b retry.Budget) bool {
		if b != nil {
			s.Budgets = append(s.Budgets, budgetSnapshot(target, b))
		}
		return true
	})
	slices.SortFunc(s.Budgets, func(a, b BudgetSnapshot) int { return strings.Compare(a.Target, b.Target) })
	s.Policies = append(s.Policies, c.def.snapshot())
	for _, cp := range c.methods {
		s.Policies = append(s.Policies, cp.snapshot())
	}
	for _, cp := range c.services {
		s.Policies = append(s.Policies, cp.snapshot())
	}
	slices.SortFunc(s.Policies, func(a, b PolicySnapshot) int { return strings.Compare(a.Name, b.Name) })
	return s
}

// budgetSnapshot describes b, the budget of target ("" for a policy's).
func budgetSnapshot(target string, b retry.Budget) BudgetSnapshot {
	bs := BudgetSnapshot{Target: target, Type: fmt.Sprintf("%T", b), Available: -1}
	if a, ok := b.(availabler); ok {
		bs.Available = a.Available()
	}
	return bs
}

// snapshot describes the state of one method on one target.
func (ms *methodState) snapshot() MethodSnapshot {
	p := &ms.c.p
	m := MethodSnapshot{Target: ms.target, Method: ms.method, Policy: ms.c.name,
		Pattern: ms.pattern, MaxAttempts: ms.maxAttempts, Idempotent: ms.idempotent}
	if bp := p.Breaker; bp != nil {
		bs := &BreakerSnapshot{Scope: bp.Scope, FailureThreshold: bp.FailureThreshold, FailureRateThreshold: bp.FailureRateThreshold,
			SlowCallRateThreshold: bp.SlowCallRateThreshold, OpenDuration: bp.OpenDuration}
		b := ms.breaker
		if ms.breakers != nil {
			bs.Key = ms.breakerKey
			b, _ = ms.breakers.Lookup(ms.breakerKey)
		} else {
			bs.Key = scopeKey(ScopeMethod, ms.target, ms.method)
		}
		if b != nil {
			bs.Metrics = b.Peek()
		} else {
			bs.Metrics = breaker.Metrics{Name: bs.Key}
		}
		m.Breaker = bs
	}
	if bp := p.Bulkhead; bp != nil {
		bs := &BulkheadSnapshot{Scope: bp.Scope, Limit: bp.Limit, Queue: bp.Queue, MaxWait: bp.MaxWait}
		b := ms.bulkhead
		if ms.bulkheads != nil {
			bs.Key = ms.bulkheadKey
			b, _ = ms.bulkheads.Lookup(ms.bulkheadKey)
		} else {
			bs.Key = scopeKey(ScopeMethod, ms.target, ms.method)
		}
		if b != nil {
			bs.Metrics = b.Metrics()
		}
		m.Bulkhead = bs
	}
	if tp := p.Throttle; tp != nil {
		ts := &ThrottleSnapshot{Scope: tp.Scope}
		t := ms.throttle
		if ms.throttles != nil {
			ts.Key = ms.throttleKey
			t, _ = ms.throttles.Lookup(ms.throttleKey)
		} else {
			ts.Key = scopeKey(ScopeMethod, ms.target, ms.method)
		}
		if t != nil {
			ts.Metrics = t.Metrics()
		}
		m.Throttle = ts
	}
	if l := ms.limiter; l != nil {
		m.RateLimit = &RateLimitSnapshot{Scope: p.RateLimit.Scope, Key: ms.limiterKey, Rate: l.Rate(), Burst: l.Burst(),
			Wait: p.RateLimit.Wait, Tokens: l.Tokens(ms.limiterKey), Limited: ms.limited.Load()}
	}
	if b := ms.budget; b != nil {
		target := ms.target
		if own := ms.ownBudget(); own != nil {
			target = ""
		}
		bs := budgetSnapshot(target, b)
		m.Budget = &bs
	}
	return m
}

// ownBudget returns the budget the state's policy sets for itself, nil
// when its calls draw on their target's budget or none.
func (ms *methodState) ownBudget() retry.Budget {
	var own retry.Budget
	switch p := &ms.c.p; {
	case p.Retry != nil:
		own = p.Retry.Budget
	case p.Hedging != nil:
		own = p.Hedging.Budget
	}
	if own == NoBudget {
		return nil
	}
	return own
}

// snapshot describes the state the policy shares.
func (cp *compiled) snapshot() PolicySnapshot {
	ps := PolicySnapshot{Name: cp.name}
	if cp.limiters != nil {
		m := cp.limiters.Metrics()
		ps.RateLimit = &m
	}
	if cp.overBreaker != nil {
		m := cp.overBreaker.Peek()
		ps.OverflowBreaker = &m
	}
	if cp.overBulkhead != nil {
		m := cp.overBulkhead.Metrics()
		ps.OverflowBulkhead = &m
	}
	if cp.overThrottle != nil {
		m := cp.overThrottle.Metrics()
		ps.OverflowThrottle = &m
	}
	return ps
}

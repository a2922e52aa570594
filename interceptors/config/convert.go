package config

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	configv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/config/v1"
	"github.com/engineeringlabs/grpc-resilience/retry"
)

// Defaults of the schema that differ from the Go types' zero values.
const (
	// defaultMultiplier is the multiplier of an exponential backoff or an
	// open backoff whose multiplier is unset.
	defaultMultiplier = 2
)

// codeNames are the canonical names of the status codes, indexed by code.
var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
	"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// parseCode returns the code named name, upper case as in google.rpc.Code.
func parseCode(name string) (codes.Code, bool) {
	for i, n := range codeNames {
		if n == name {
			return codes.Code(i), true
		}
	}
	return 0, false
}

// maxDuration is the longest duration a time.Duration holds, as the
// problems print it; as a backoff's cap it means none.
const maxDuration = time.Duration(math.MaxInt64)

// toDuration converts d to a time.Duration: ok is false when d is not a
// valid google.protobuf.Duration or does not fit a time.Duration. A nil d
// is zero.
func toDuration(d *durationpb.Duration) (time.Duration, bool) {
	if d == nil {
		return 0, true
	}
	if d.CheckValid() != nil {
		return 0, false
	}
	td := d.AsDuration()
	// AsDuration saturates on overflow: converting back tells.
	back := durationpb.New(td)
	if back.Seconds != d.Seconds || back.Nanos != d.Nanos {
		return 0, false
	}
	return td, true
}

// durationText prints d as the file spells it ("1.5s"), for problems.
func durationText(d *durationpb.Duration) string {
	if td, ok := toDuration(d); ok {
		return td.String()
	}
	return fmt.Sprintf("{seconds: %d, nanos: %d}", d.GetSeconds(), d.GetNanos())
}

// conv converts the schema to the Go types of the interceptors and
// records every problem on the way. Conversion goes on after a problem
// (with the bad value replaced by its default), so that one pass reports
// everything.
type conv struct {
	ps problems
}

// duration converts a non-negative duration field.
func (c *conv) duration(path string, d *durationpb.Duration) time.Duration {
	td, ok := toDuration(d)
	switch {
	case !ok:
		c.ps.add(path, durationText(d), fmt.Sprintf("must be a valid duration of at most %v", maxDuration))
		return 0
	case td < 0:
		c.ps.add(path, td, "must not be negative")
		return 0
	}
	return td
}

// code converts a status code name.
func (c *conv) code(path, name string) (codes.Code, bool) {
	code, ok := parseCode(name)
	if !ok {
		c.ps.add(path, strconv.Quote(name), "must be a status code name such as \"UNAVAILABLE\"")
	}
	return code, ok
}

// errorCodes converts a list of code names that must not hold OK or the
// same code twice.
func (c *conv) errorCodes(path string, names []string) []codes.Code {
	var out []codes.Code
	for i, n := range names {
		p := index(path, i)
		code, ok := c.code(p, n)
		switch {
		case !ok:
		case code == codes.OK:
			c.ps.add(p, `"OK"`, "must be an error code")
		case slices.Contains(out, code):
			c.ps.add(p, strconv.Quote(n), "listed twice")
		default:
			out = append(out, code)
		}
	}
	return out
}

// policy converts one method policy. Budgets are created anew on every
// call: a policy's budget belongs to the pipeline built from it.
func (c *conv) policy(path string, mp *configv1.MethodPolicy) interceptors.Policy {
	var p interceptors.Policy
	if r := mp.GetRetry(); r != nil {
		p.Retry = c.retry(join(path, "retry"), r)
	}
	if h := mp.GetHedging(); h != nil {
		p.Hedging = c.hedging(join(path, "hedging"), h)
	}
	if b := mp.GetBreaker(); b != nil {
		p.Breaker = c.breaker(join(path, "breaker"), b)
	}
	if b := mp.GetBulkhead(); b != nil {
		p.Bulkhead = &interceptors.BulkheadPolicy{
			Limit:   int(b.GetLimit()),
			Queue:   int(b.GetQueue()),
			MaxWait: c.duration(join(path, "bulkhead.max_wait"), b.GetMaxWait()),
			Scope:   c.scope(join(path, "bulkhead.scope"), b.GetScope()),
		}
	}
	if rl := mp.GetRateLimit(); rl != nil {
		p.RateLimit = c.rateLimit(join(path, "rate_limit"), rl)
	}
	if t := mp.GetThrottle(); t != nil {
		p.Throttle = c.throttle(join(path, "throttle"), t)
	}
	p.DefaultTimeout = c.duration(join(path, "timeout"), mp.GetTimeout())
	switch i := mp.GetIdempotency(); i {
	case configv1.Idempotency_IDEMPOTENCY_UNSPECIFIED:
	case configv1.Idempotency_IDEMPOTENCY_IDEMPOTENT:
		p.Idempotency = interceptors.AlwaysIdempotent
	case configv1.Idempotency_IDEMPOTENCY_NOT_IDEMPOTENT:
		p.Idempotency = interceptors.NeverIdempotent
	default:
		c.ps.add(join(path, "idempotency"), enumText(i), "must be one of "+shortNames(i.Descriptor()))
	}
	c.goPolicy(path, p, mp.GetRetry().GetBackoff().GetKind())
	return p
}

// rateLimit converts a client rate limit. interceptors.Policy.Validate
// checks its values; an unset rate is reported here, as unset.
func (c *conv) rateLimit(path string, rl *configv1.RateLimitPolicy) *interceptors.RateLimitPolicy {
	if rl.GetRate() == 0 {
		c.ps.addMsg(join(path, "rate"), "unset, must be a positive number of attempts per second")
	}
	return &interceptors.RateLimitPolicy{
		Rate:  rl.GetRate(),
		Burst: int(rl.GetBurst()),
		Wait:  rl.GetWait(),
		Scope: c.scope(join(path, "scope"), rl.GetScope()),
	}
}

func (c *conv) scope(path string, s configv1.Scope) interceptors.Scope {
	switch s {
	case configv1.Scope_SCOPE_UNSPECIFIED, configv1.Scope_SCOPE_METHOD:
		return interceptors.ScopeMethod
	case configv1.Scope_SCOPE_SERVICE:
		return interceptors.ScopeService
	case configv1.Scope_SCOPE_TARGET:
		return interceptors.ScopeTarget
	}
	c.ps.add(path, enumText(s), "must be one of "+shortNames(s.Descriptor()))
	return interceptors.ScopeMethod
}

func (c *conv) retry(path string, r *configv1.RetryPolicy) *interceptors.RetryPolicy {
	out := &interceptors.RetryPolicy{}
	if r.MaxAttempts != nil {
		if n := r.GetMaxAttempts(); n < 1 {
			c.ps.add(join(path, "max_attempts"), n, "must be at least 1")
		} else {
			out.MaxAttempts = int(n)
		}
	}
	if b := r.GetBackoff(); b != nil {
		out.Backoff = c.backoff(join(path, "backoff"), b)
	}
	out.Jitter, out.JitterFactor = c.jitter(path, r.GetJitter(), r.GetJitterFactor())
	out.AttemptTimeout = c.duration(join(path, "attempt_timeout"), r.GetAttemptTimeout())
	if b := r.GetBudget(); b != nil {
		out.Budget = c.budget(join(path, "budget"), b, true)
	}
	if len(r.GetRetryableCodes()) > 0 || len(r.GetCodeRules()) > 0 {
		t := classify.Default()
		if names := r.GetRetryableCodes(); len(names) > 0 {
			on := c.errorCodes(join(path, "retryable_codes"), names)
			for code := codes.OK; code <= codes.Unauthenticated; code++ {
				rule := t.Rule(code)
				rule.Retry = classify.RetryNever
				if slices.Contains(on, code) {
					rule.Retry = classify.RetryAlways
				}
				t = t.With(code, rule)
			}
		}
		var seen []codes.Code
		for i, cr := range r.GetCodeRules() {
			p := index(join(path, "code_rules"), i)
			code, ok := c.code(join(p, "code"), cr.GetCode())
			switch {
			case !ok:
			case code == codes.OK:
				c.ps.add(join(p, "code"), `"OK"`, "must be an error code")
				ok = false
			case slices.Contains(seen, code):
				c.ps.add(join(p, "code"), strconv.Quote(cr.GetCode()), "has a rule already")
				ok = false
			}
			seen = append(seen, code)
			rule, rok := retryRule(cr.GetRule())
			if !rok {
				c.ps.add(join(p, "rule"), enumText(cr.GetRule()), "must be one of "+shortNames(cr.GetRule().Descriptor()))
			}
			if ok && rok {
				row := t.Rule(code)
				row.Retry = rule
				t = t.With(code, row)
			}
		}
		out.Table = &t
	}
	return out
}

func retryRule(r configv1.RetryRule) (classify.RetryRule, bool) {
	switch r {
	case configv1.RetryRule_RETRY_RULE_NEVER:
		return classify.RetryNever, true
	case configv1.RetryRule_RETRY_RULE_ALWAYS:
		return classify.RetryAlways, true
	case configv1.RetryRule_RETRY_RULE_IF_IDEMPOTENT:
		return classify.RetryIfIdempotent, true
	case configv1.RetryRule_RETRY_RULE_IF_PUSHBACK:
		return classify.RetryIfPushback, true
	case configv1.RetryRule_RETRY_RULE_IF_ATTEMPT_TIMEOUT:
		return classify.RetryIfAttemptTimeout, true
	}
	return 0, false
}

// jitter converts a jitter kind and its factor. A proportional jitter
// of factor 0 waits what the backoff says, as JitterNone does (the Go
// type's zero JitterFactor means 0.2).
func (c *conv) jitter(path string, k configv1.JitterKind, factor float64) (interceptors.JitterKind, float64) {
	if k != configv1.JitterKind_JITTER_KIND_PROPORTIONAL && factor != 0 {
		c.ps.add(join(path, "jitter_factor"), factor, fmt.Sprintf("set but jitter is %s (only %s takes a factor)",
			enumText(k), short(configv1.JitterKind_JITTER_KIND_PROPORTIONAL)))
	}
	switch k {
	case configv1.JitterKind_JITTER_KIND_UNSPECIFIED, configv1.JitterKind_JITTER_KIND_FULL:
		return interceptors.JitterFull, 0
	case configv1.JitterKind_JITTER_KIND_NONE:
		return interceptors.JitterNone, 0
	case configv1.JitterKind_JITTER_KIND_EQUAL:
		return interceptors.JitterEqual, 0
	case configv1.JitterKind_JITTER_KIND_PROPORTIONAL:
		switch {
		case math.IsNaN(factor) || factor < 0 || factor > 1:
			c.ps.add(join(path, "jitter_factor"), factor, "must be in [0, 1]")
		case factor == 0:
			return interceptors.JitterNone, 0
		}
		return interceptors.JitterProportional, factor
	}
	c.ps.add(join(path, "jitter"), enumText(k), "must be one of "+shortNames(k.Descriptor()))
	return interceptors.JitterFull, 0
}

// backoff converts a backoff. Parameters the kind does not take are
// problems, so that a typo in the kind is not silently a constant wait.
//
// The schema's defaults differ from the Go type's: an unset max means no
// cap (maxDuration), an unset linear step adds nothing (a constant wait),
// and an unset or zero constant delay retries at once (a wait of 1ns, the
// shortest a Backoff says).
func (c *conv) backoff(path string, b *configv1.Backoff) interceptors.Backoff {
	kind := b.GetKind()
	type param struct {
		name string
		set  bool
	}
	params := []param{
		{"delay", b.Delay != nil}, {"initial", b.Initial != nil}, {"step", b.Step != nil},
		{"max", b.Max != nil}, {"multiplier", b.Multiplier != nil},
	}
	var takes []string
	switch kind {
	case configv1.BackoffKind_BACKOFF_KIND_UNSPECIFIED:
	case configv1.BackoffKind_BACKOFF_KIND_CONSTANT:
		takes = []string{"delay"}
	case configv1.BackoffKind_BACKOFF_KIND_LINEAR:
		takes = []string{"initial", "step", "max"}
	case configv1.BackoffKind_BACKOFF_KIND_EXPONENTIAL:
		takes = []string{"initial", "max", "multiplier"}
	case configv1.BackoffKind_BACKOFF_KIND_FIBONACCI,
		configv1.BackoffKind_BACKOFF_KIND_DECORRELATED_JITTER,
		configv1.BackoffKind_BACKOFF_KIND_DECORRELATED_JITTER_V2:
		takes = []string{"initial", "max"}
	default:
		c.ps.add(join(path, "kind"), enumText(kind), "must be one of "+shortNames(kind.Descriptor()))
		return interceptors.Backoff{}
	}
	for _, p := range params {
		if p.set && !slices.Contains(takes, p.name) {
			if kind == configv1.BackoffKind_BACKOFF_KIND_UNSPECIFIED {
				c.ps.add(join(path, "kind"), enumText(kind), fmt.Sprintf("must be set when %s is, to one of %s", p.name, shortNames(kind.Descriptor())))
				return interceptors.Backoff{}
			}
			c.ps.addMsg(join(path, p.name), fmt.Sprintf("set but %s does not take it", short(kind)))
		}
	}
	delay := c.duration(join(path, "delay"), b.GetDelay())
	initial := c.duration(join(path, "initial"), b.GetInitial())
	step := c.duration(join(path, "step"), b.GetStep())
	ceiling := c.duration(join(path, "max"), b.GetMax())
	if slices.Contains(takes, "initial") && initial <= 0 && b.Initial.CheckValid() == nil {
		c.ps.add(join(path, "initial"), durationText(b.GetInitial()), fmt.Sprintf("must be positive for %s", short(kind)))
	}
	if b.Max == nil {
		ceiling = maxDuration
	} else if slices.Contains(takes, "max") && ceiling < initial {
		c.ps.add(join(path, "max"), ceiling, fmt.Sprintf("must be at least initial (%v)", initial))
	}
	mult := float64(defaultMultiplier)
	if b.Multiplier != nil {
		mult = b.GetMultiplier()
		if math.IsNaN(mult) || mult < 1 || math.IsInf(mult, 1) {
			c.ps.add(join(path, "multiplier"), mult, "must be a finite number of at least 1")
			mult = defaultMultiplier
		}
	}
	// Values the checks above rejected reach the Backoff as they are; the
	// configuration is not used then.
	switch kind {
	case configv1.BackoffKind_BACKOFF_KIND_CONSTANT:
		return interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: max(delay, time.Nanosecond)}
	case configv1.BackoffKind_BACKOFF_KIND_LINEAR:
		if step == 0 {
			return interceptors.Backoff{Kind: interceptors.BackoffConstant, Initial: min(initial, ceiling)}
		}
		return interceptors.Backoff{Kind: interceptors.BackoffLinear, Initial: initial, Step: step, Max: ceiling}
	case configv1.BackoffKind_BACKOFF_KIND_EXPONENTIAL:
		return interceptors.Backoff{Kind: interceptors.BackoffExponential, Initial: initial, Max: ceiling, Multiplier: mult}
	case configv1.BackoffKind_BACKOFF_KIND_FIBONACCI:
		return interceptors.Backoff{Kind: interceptors.BackoffFibonacci, Initial: initial, Max: ceiling}
	case configv1.BackoffKind_BACKOFF_KIND_DECORRELATED_JITTER:
		return interceptors.Backoff{Kind: interceptors.BackoffDecorrelated, Initial: initial, Max: ceiling}
	case configv1.BackoffKind_BACKOFF_KIND_DECORRELATED_JITTER_V2:
		return interceptors.Backoff{Kind: interceptors.BackoffDecorrelatedV2, Initial: initial, Max: ceiling}
	}
	return interceptors.Backoff{}
}

// budget converts a budget; unspecified says whether
// BUDGET_KIND_UNSPECIFIED (the target budget) is allowed.
func (c *conv) budget(path string, b *configv1.Budget, unspecified bool) retry.Budget {
	kind := b.GetKind()
	ratio := b.Ttl != nil || b.GetMinRetriesPerSecond() != 0 || b.GetRatio() != 0 || b.GetFloorInsideRatio()
	bucket := b.GetMaxTokens() != 0 || b.GetTokenRatio() != 0
	if kind != configv1.BudgetKind_BUDGET_KIND_RATIO && ratio {
		c.ps.addMsg(path, fmt.Sprintf("ttl, min_retries_per_second, ratio or floor_inside_ratio set but kind is %s, not %s", enumText(kind), short(configv1.BudgetKind_BUDGET_KIND_RATIO)))
	}
	if kind != configv1.BudgetKind_BUDGET_KIND_TOKEN_BUCKET && bucket {
		c.ps.addMsg(path, fmt.Sprintf("max_tokens or token_ratio set but kind is %s, not %s", enumText(kind), short(configv1.BudgetKind_BUDGET_KIND_TOKEN_BUCKET)))
	}
	switch kind {
	case configv1.BudgetKind_BUDGET_KIND_UNSPECIFIED:
		if !unspecified {
			c.ps.add(join(path, "kind"), enumText(kind), "must be one of "+shortNames(kind.Descriptor()))
		}
		return nil
	case configv1.BudgetKind_BUDGET_KIND_NONE:
		return interceptors.NoBudget
	case configv1.BudgetKind_BUDGET_KIND_RATIO:
		ttl := c.duration(join(path, "ttl"), b.GetTtl())
		if b.Ttl != nil && ttl == 0 && b.Ttl.CheckValid() == nil && b.Ttl.AsDuration() == 0 {
			c.ps.add(join(path, "ttl"), "0s", "must be positive")
		}
		if n := b.GetMinRetriesPerSecond(); n < 0 {
			c.ps.add(join(path, "min_retries_per_second"), n, "must not be negative")
		}
		if r := b.GetRatio(); math.IsNaN(r) || r < 0 || r > 1000 {
			c.ps.add(join(path, "ratio"), r, "must be in [0, 1000]")
		}
		if b.GetFloorInsideRatio() && b.GetRatio() >= 1e-6 {
			return retry.NewRatioBudgetFromConfig(retry.RatioBudgetConfig{
				TTL:                 ttl,
				MinRetriesPerSecond: int(b.GetMinRetriesPerSecond()),
				Ratio:               b.GetRatio(),
				FloorInsideRatio:    true,
			})
		}
		// With a ratio of zero (or below 0.000001, which counts as zero)
		// the floor alone counts, whichever way the two combine.
		return retry.NewRatioBudget(ttl, int(b.GetMinRetriesPerSecond()), b.GetRatio())
	case configv1.BudgetKind_BUDGET_KIND_TOKEN_BUCKET:
		if m := b.GetMaxTokens(); !(m > 0 && m <= 1000) {
			c.ps.add(join(path, "max_tokens"), m, "must be in (0, 1000]")
		}
		if r := b.GetTokenRatio(); !(r > 0 && r <= 1000) {
			c.ps.add(join(path, "token_ratio"), r, "must be in (0, 1000]")
		}
		return retry.NewTokenBucket(b.GetMaxTokens(), b.GetTokenRatio())
	}
	c.ps.add(join(path, "kind"), enumText(kind), "must be one of "+shortNames(kind.Descriptor()))
	return nil
}

func (c *conv) hedging(path string, h *configv1.HedgingPolicy) *interceptors.HedgingPolicy {
	out := &interceptors.HedgingPolicy{
		Delay:      c.duration(join(path, "delay"), h.GetDelay()),
		Percentile: h.GetPercentile(),
		MinSamples: int(h.GetMinSamples()),
	}
	if h.MaxExtraAttempts != nil {
		if n := h.GetMaxExtraAttempts(); n < 1 {
			c.ps.add(join(path, "max_extra_attempts"), n, "must be at least 1")
		} else {
			out.MaxExtraAttempts = int(n)
		}
	}
	if names := h.GetNonFatalCodes(); len(names) > 0 {
		out.NonFatalCodes = c.errorCodes(join(path, "non_fatal_codes"), names)
	}
	if b := h.GetBudget(); b != nil {
		out.Budget = c.budget(join(path, "budget"), b, true)
	}
	return out
}

func (c *conv) breaker(path string, b *configv1.BreakerPolicy) *interceptors.BreakerPolicy {
	out := &interceptors.BreakerPolicy{
		FailureThreshold:      int(b.GetFailureThreshold()),
		OpenDuration:          c.duration(join(path, "open_duration"), b.GetOpenDuration()),
		SuccessThreshold:      int(b.GetSuccessThreshold()),
		MaxHalfOpenProbes:     int(b.GetMaxHalfOpenProbes()),
		WindowSize:            int(b.GetWindowSize()),
		WindowPeriod:          c.duration(join(path, "window_period"), b.GetWindowPeriod()),
		WindowBuckets:         int(b.GetWindowBuckets()),
		FailureRateThreshold:  b.GetFailureRateThreshold(),
		SlowCallRateThreshold: b.GetSlowCallRateThreshold(),
		MinimumCalls:          int(b.GetMinimumCalls()),
		SlowCallDuration:      c.duration(join(path, "slow_call_duration"), b.GetSlowCallDuration()),
		Scope:                 c.scope(join(path, "scope"), b.GetScope()),
	}
	switch w := b.GetWindowType(); w {
	case configv1.WindowType_WINDOW_TYPE_UNSPECIFIED, configv1.WindowType_WINDOW_TYPE_COUNT:
		out.WindowType = breaker.CountWindow
	case configv1.WindowType_WINDOW_TYPE_TIME:
		out.WindowType = breaker.TimeWindow
	default:
		c.ps.add(join(path, "window_type"), enumText(w), "must be one of "+shortNames(w.Descriptor()))
	}
	if ob := b.GetOpenBackoff(); ob != nil {
		op := join(path, "open_backoff")
		initial := out.OpenDuration
		if initial == 0 {
			initial = breaker.DefaultTimeout
		}
		ceiling := c.duration(join(op, "max"), ob.GetMax())
		switch {
		case ob.Max == nil:
			c.ps.addMsg(join(op, "max"), "unset, must be set")
		case ceiling < initial && ob.Max.CheckValid() == nil && ceiling >= 0:
			c.ps.add(join(op, "max"), ceiling, fmt.Sprintf("must be at least open_duration (%v)", initial))
		}
		mult := float64(defaultMultiplier)
		if ob.Multiplier != nil {
			mult = ob.GetMultiplier()
			if math.IsNaN(mult) || mult < 1 || math.IsInf(mult, 1) {
				c.ps.add(join(op, "multiplier"), mult, "must be a finite number of at least 1")
				mult = defaultMultiplier
			}
		}
		// The Go type's open duration grows only with a multiplier above
		// 1; at 1 it stays constant, as the schema's does.
		out.OpenDuration, out.MaxOpenDuration, out.OpenDurationMultiplier = initial, max(ceiling, initial), mult
	}
	out.Table = c.codeOutcomes(join(path, "code_outcomes"), b.GetCodeOutcomes())
	return out
}

// throttle converts a client throttle. interceptors.Policy.Validate
// checks its values.
func (c *conv) throttle(path string, t *configv1.ThrottlePolicy) *interceptors.ThrottlePolicy {
	return &interceptors.ThrottlePolicy{
		K:            t.GetK(),
		Window:       c.duration(join(path, "window"), t.GetWindow()),
		Buckets:      int(t.GetBuckets()),
		MinRequests:  int(t.GetMinRequests()),
		PassInterval: c.duration(join(path, "pass_interval"), t.GetPassInterval()),
		Scope:        c.scope(join(path, "scope"), t.GetScope()),
		Table:        c.codeOutcomes(join(path, "code_outcomes"), t.GetCodeOutcomes()),
	}
}

// codeOutcomes returns the default classification table with the
// breaker column changed as rules say, or nil when there are none.
func (c *conv) codeOutcomes(path string, rules []*configv1.BreakerCodeRule) *classify.Table {
	if len(rules) > 0 {
		t := classify.Default()
		var seen []codes.Code
		for i, r := range rules {
			p := index(path, i)
			code, ok := c.code(join(p, "code"), r.GetCode())
			if ok && slices.Contains(seen, code) {
				c.ps.add(join(p, "code"), strconv.Quote(r.GetCode()), "has an outcome already")
				ok = false
			}
			seen = append(seen, code)
			var o classify.BreakerOutcome
			switch r.GetOutcome() {
			case configv1.BreakerOutcome_BREAKER_OUTCOME_SUCCESS:
				o = classify.BreakerSuccess
			case configv1.BreakerOutcome_BREAKER_OUTCOME_FAILURE:
				o = classify.BreakerFailure
			case configv1.BreakerOutcome_BREAKER_OUTCOME_IGNORED:
				o = classify.BreakerIgnore
			default:
				c.ps.add(join(p, "outcome"), enumText(r.GetOutcome()), "must be one of "+shortNames(r.GetOutcome().Descriptor()))
				ok = false
			}
			if ok {
				row := t.Rule(code)
				row.Breaker = o
				t = t.With(code, row)
			}
		}
		return &t
	}
	return nil
}

// serverConfig converts the server section.
func (c *conv) serverConfig(path string, s *configv1.ServerConfig) server.Config {
	var cfg server.Config
	if s == nil {
		return cfg
	}
	start := len(c.ps)
	for i, m := range s.GetExempt() {
		if !methodPattern(m) {
			c.ps.add(index(join(path, "exempt"), i), strconv.Quote(m), `must be "/pkg.Service/Method", "/pkg.Service/" or "pkg.Service"`)
		}
	}
	cfg.Exempt = slices.Clone(s.GetExempt())
	if d := s.GetDeadline(); d != nil {
		cfg.Deadline = server.DeadlineConfig{
			MinRemaining: c.duration(join(path, "deadline.min_remaining"), d.GetMinRemaining()),
			Default:      c.duration(join(path, "deadline.default"), d.GetDefault()),
		}
	}
	if b := s.GetBulkhead(); b != nil {
		cfg.Bulkhead = c.serverBulkhead(join(path, "bulkhead"), b)
	}
	if ch := s.GetChaos(); ch != nil {
		cfg.Chaos = server.ChaosConfig{Seed: ch.GetSeed(), Faults: c.faults(join(path, "chaos"), ch)}
	}
	if rl := s.GetRateLimit(); rl != nil {
		cfg.RateLimit = c.serverRateLimit(join(path, "rate_limit"), rl)
	}
	if len(c.ps) == start {
		c.goProblems(path, cfg.Validate(), serverFields, nil)
	}
	return cfg
}

// faults converts the fault schedule of a chaos section.
func (c *conv) faults(path string, ch *configv1.Chaos) server.FaultConfig {
	var fc server.FaultConfig
	if a := ch.GetAll(); a != nil {
		fc.All = c.fault(join(path, "all"), a)
	}
	if ms := ch.GetMethods(); len(ms) > 0 {
		fc.Methods = make(map[string]server.Fault, len(ms))
		for _, m := range sortedKeys(ms) {
			p := key(join(path, "methods"), m)
			if !methodPattern(m) {
				c.ps.addMsg(p, `must be keyed by "/pkg.Service/Method", "/pkg.Service/" or "pkg.Service"`)
			}
			fc.Methods[m] = c.fault(p, ms[m])
		}
	}
	return fc
}

func (c *conv) fault(path string, f *configv1.Fault) server.Fault {
	out := server.Fault{
		ErrorRate:   f.GetErrorRate(),
		Pushback:    c.duration(join(path, "pushback"), f.GetPushback()),
		Latency:     c.duration(join(path, "latency"), f.GetLatency()),
		LatencyMax:  c.duration(join(path, "latency_max"), f.GetLatencyMax()),
		TailRate:    f.GetTailRate(),
		TailLatency: c.duration(join(path, "tail_latency"), f.GetTailLatency()),
		AbortRate:   f.GetAbortRate(),
		AbortAfter:  int(f.GetAbortAfter()),
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"error_rate", out.ErrorRate}, {"tail_rate", out.TailRate}, {"abort_rate", out.AbortRate}} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			c.ps.add(join(path, r.name), r.v, "must be in [0, 1]")
		}
	}
	if name := f.GetCode(); name != "" {
		if code, ok := c.code(join(path, "code"), name); ok {
			if code == codes.OK {
				c.ps.add(join(path, "code"), `"OK"`, "must be an error code")
			}
			out.Code = code
		}
	}
	if out.LatencyMax != 0 && out.LatencyMax < out.Latency {
		c.ps.add(join(path, "latency_max"), out.LatencyMax, fmt.Sprintf("must be unset or at least latency (%v)", out.Latency))
	}
	if out.TailRate > 0 && f.TailLatency == nil {
		c.ps.addMsg(join(path, "tail_latency"), fmt.Sprintf("unset, must be set when tail_rate (%v) is", out.TailRate))
	}
	if out.AbortAfter < 0 {
		c.ps.add(join(path, "abort_after"), out.AbortAfter, "must not be negative")
	} else if out.AbortAfter > 0 && out.AbortRate == 0 {
		c.ps.add(join(path, "abort_after"), out.AbortAfter, "set but abort_rate is 0")
	}
	return out
}

func (c *conv) serverBulkhead(path string, b *configv1.ServerBulkhead) server.BulkheadConfig {
	out := server.BulkheadConfig{
		Limit:         int(b.GetLimit()),
		MaxPartitions: int(b.GetMaxPartitions()),
		Queue:         int(b.GetQueue()),
		MaxWait:       c.duration(join(path, "max_wait"), b.GetMaxWait()),
		PushbackDelay: c.duration(join(path, "pushback_delay"), b.GetPushbackDelay()),
		NoPushback:    b.GetNoPushback(),
	}
	if out.Limit < 1 {
		c.ps.add(join(path, "limit"), out.Limit, "must be at least 1")
	}
	out.Header = b.GetHeader()
	out.PartitionBy = c.partition(join(path, "partition_by"), b.GetPartitionBy(), out.Header)
	header := short(configv1.Partition_PARTITION_HEADER)
	switch {
	case out.PartitionBy == server.PartitionByHeader && out.Header == "":
		c.ps.addMsg(join(path, "header"), "unset, must be set when partition_by is "+header)
	case out.PartitionBy != server.PartitionByHeader && out.Header != "":
		c.ps.add(join(path, "header"), strconv.Quote(out.Header), "set but partition_by is not "+header)
	}
	if out.MaxPartitions < 0 {
		c.ps.add(join(path, "max_partitions"), out.MaxPartitions, "must not be negative")
	}
	if out.Queue < 0 {
		c.ps.add(join(path, "queue"), out.Queue, "must not be negative")
	}
	if out.MaxWait > 0 && out.Queue <= 0 {
		c.ps.add(join(path, "max_wait"), out.MaxWait, "needs queue above 0")
	}
	if out.PushbackDelay > 0 && out.NoPushback {
		c.ps.add(join(path, "pushback_delay"), out.PushbackDelay, "set but no_pushback is true")
	}
	if a := b.GetAdaptive(); a != nil {
		out.Adaptive = c.adaptive(join(path, "adaptive"), a)
	}
	return out
}

// partition converts a partition of the server bulkhead or rate limit. A
// value the schema lacks is a problem, and converts to PartitionByHeader
// when header is set, so that the header is not reported as well.
func (c *conv) partition(path string, p configv1.Partition, header string) server.Partition {
	switch p {
	case configv1.Partition_PARTITION_UNSPECIFIED, configv1.Partition_PARTITION_NONE:
		return server.PartitionNone
	case configv1.Partition_PARTITION_METHOD:
		return server.PartitionByMethod
	case configv1.Partition_PARTITION_HEADER:
		return server.PartitionByHeader
	case configv1.Partition_PARTITION_PEER:
		return server.PartitionByPeer
	}
	c.ps.add(path, enumText(p), "must be one of "+shortNames(p.Descriptor()))
	if header != "" {
		return server.PartitionByHeader
	}
	return server.PartitionNone
}

// serverRateLimit converts the server's rate limit and reports what
// server.RateLimitConfig.Validate finds in it at once, so that its
// problems come with those of the rest of the file.
func (c *conv) serverRateLimit(path string, r *configv1.ServerRateLimit) server.RateLimitConfig {
	out := server.RateLimitConfig{
		Rate:          r.GetRate(),
		Burst:         int(r.GetBurst()),
		Header:        r.GetHeader(),
		MaxPartitions: int(r.GetMaxPartitions()),
		NoPushback:    r.GetNoPushback(),
	}
	out.PartitionBy = c.partition(join(path, "partition_by"), r.GetPartitionBy(), out.Header)
	if out.MaxPartitions < 0 {
		c.ps.add(join(path, "max_partitions"), out.MaxPartitions, "must not be negative")
	}
	if ms := r.GetMethods(); len(ms) > 0 {
		out.Methods = make(map[string]server.RateQuota, len(ms))
		services := map[string]string{} // "/pkg.Svc/" -> the key naming it
		for _, m := range sortedKeys(ms) {
			p := key(join(path, "methods"), m)
			switch {
			case !methodPattern(m):
				c.ps.addMsg(p, `must be keyed by "/pkg.Service/Method", "/pkg.Service/" or "pkg.Service"`)
			case m[0] != '/' || strings.HasSuffix(m, "/"):
				svc := "/" + strings.Trim(m, "/") + "/"
				if prev, dup := services[svc]; dup {
					c.ps.addMsg(p, fmt.Sprintf("names the same service as %q", prev))
				}
				services[svc] = m
			}
			q := ms[m]
			out.Methods[m] = server.RateQuota{Rate: q.GetRate(), Burst: int(q.GetBurst())}
		}
	}
	c.goProblems(path, out.Validate(), rateLimitFields, nil)
	return out
}

func (c *conv) adaptive(path string, a *configv1.AdaptiveLimit) func() bulkhead.Strategy {
	for _, f := range []struct {
		name string
		v    int32
	}{{"min_limit", a.GetMinLimit()}, {"max_limit", a.GetMaxLimit()}, {"queue_size", a.GetQueueSize()}, {"window_samples", a.GetWindowSamples()}, {"long_window", a.GetLongWindow()}, {"buckets", a.GetBuckets()}} {
		if f.v < 0 {
			c.ps.add(join(path, f.name), f.v, "must not be negative")
		}
	}
	lo, hi := int(a.GetMinLimit()), int(a.GetMaxLimit())
	if effHi := hi; lo > 0 {
		if effHi < 1 {
			effHi = bulkhead.DefaultMaxLimit
		}
		if lo > effHi {
			c.ps.add(join(path, "min_limit"), lo, fmt.Sprintf("must not exceed max_limit (%d)", effHi))
		}
	}
	timeout := c.duration(join(path, "timeout"), a.GetTimeout())
	window := c.duration(join(path, "window"), a.GetWindow())
	coolOff := c.duration(join(path, "cool_off"), a.GetCoolOff())
	probeInterval := c.duration(join(path, "probe_interval"), a.GetProbeInterval())
	aimdOnly := a.GetBackoffRatio() != 0 || a.Timeout != nil
	gradientOnly := a.GetSmoothing() != 0 || a.GetTolerance() != 0 || a.GetQueueSize() != 0 ||
		a.GetWindowSamples() != 0 || a.GetLongWindow() != 0 || a.ProbeInterval != nil || a.GetNoProbe()
	cpuOnly := a.GetCpuThreshold() != 0 || a.GetBuckets() != 0 || a.CoolOff != nil
	const (
		gradientFields = "smoothing, tolerance, queue_size, window_samples, long_window, probe_interval or no_probe"
		cpuFields      = "cpu_threshold, buckets or cool_off"
	)
	switch k := a.GetKind(); k {
	case configv1.AdaptiveKind_ADAPTIVE_KIND_AIMD:
		if gradientOnly || a.Window != nil {
			c.ps.addMsg(path, fmt.Sprintf("smoothing, tolerance, queue_size, window, window_samples, long_window, probe_interval or no_probe set but kind is %s, not %s",
				short(k), short(configv1.AdaptiveKind_ADAPTIVE_KIND_GRADIENT)))
		}
		if cpuOnly {
			c.ps.addMsg(path, fmt.Sprintf("%s set but kind is %s, not %s", cpuFields, short(k), short(configv1.AdaptiveKind_ADAPTIVE_KIND_CPU)))
		}
		if r := a.GetBackoffRatio(); r != 0 && !(r > 0 && r < 1) {
			c.ps.add(join(path, "backoff_ratio"), r, "must be in (0, 1)")
		}
		cfg := bulkhead.AIMDConfig{MinLimit: lo, MaxLimit: hi, BackoffRatio: a.GetBackoffRatio(), Timeout: timeout}
		return func() bulkhead.Strategy { return bulkhead.NewAIMD(cfg) }
	case configv1.AdaptiveKind_ADAPTIVE_KIND_GRADIENT:
		if aimdOnly {
			c.ps.addMsg(path, fmt.Sprintf("backoff_ratio or timeout set but kind is %s, not %s",
				short(k), short(configv1.AdaptiveKind_ADAPTIVE_KIND_AIMD)))
		}
		if cpuOnly {
			c.ps.addMsg(path, fmt.Sprintf("%s set but kind is %s, not %s", cpuFields, short(k), short(configv1.AdaptiveKind_ADAPTIVE_KIND_CPU)))
		}
		if a.ProbeInterval != nil && probeInterval < bulkhead.MinProbeInterval {
			c.ps.add(join(path, "probe_interval"), probeInterval.String(), "must be at least "+bulkhead.MinProbeInterval.String())
		}
		if a.GetNoProbe() && a.ProbeInterval != nil {
			c.ps.add(join(path, "probe_interval"), a.GetProbeInterval().AsDuration().String(), "set but no_probe turns the probes off")
		}
		if s := a.GetSmoothing(); s != 0 && !(s > 0 && s <= 1) {
			c.ps.add(join(path, "smoothing"), s, "must be in (0, 1]")
		}
		if t := a.GetTolerance(); t != 0 && !(t >= 1 && !math.IsInf(t, 1)) {
			c.ps.add(join(path, "tolerance"), t, "must be finite and at least 1")
		}
		cfg := bulkhead.GradientConfig{
			MinLimit: lo, MaxLimit: hi, Smoothing: a.GetSmoothing(), Tolerance: a.GetTolerance(),
			QueueSize: int(a.GetQueueSize()), Window: window, WindowSamples: int(a.GetWindowSamples()),
			LongWindow: int(a.GetLongWindow()), ProbeInterval: probeInterval, NoProbe: a.GetNoProbe(),
		}
		return func() bulkhead.Strategy { return bulkhead.NewGradient(cfg) }
	case configv1.AdaptiveKind_ADAPTIVE_KIND_CPU:
		if aimdOnly {
			c.ps.addMsg(path, fmt.Sprintf("backoff_ratio or timeout set but kind is %s, not %s",
				short(k), short(configv1.AdaptiveKind_ADAPTIVE_KIND_AIMD)))
		}
		if gradientOnly {
			c.ps.addMsg(path, fmt.Sprintf("%s set but kind is %s, not %s", gradientFields, short(k), short(configv1.AdaptiveKind_ADAPTIVE_KIND_GRADIENT)))
		}
		if hi != 0 {
			c.ps.add(join(path, "max_limit"), hi, "set but kind is "+short(k)+": the bulkhead's limit is its ceiling")
		}
		if t := a.GetCpuThreshold(); t != 0 && !(t > 0 && t < 1) {
			c.ps.add(join(path, "cpu_threshold"), t, "must be in (0, 1)")
		}
		// bulkhead.NewCPU would silently take both defaults for a window
		// shorter than its buckets in nanoseconds.
		if w, n := window, int(a.GetBuckets()); n >= 0 && (w > 0 || n > 0) {
			if w == 0 {
				w = bulkhead.DefaultCPUWindow
			}
			if n == 0 {
				n = bulkhead.DefaultCPUBuckets
			}
			if w/time.Duration(n) <= 0 {
				if a.GetBuckets() > 0 {
					c.ps.add(join(path, "buckets"), n, fmt.Sprintf("must not exceed the window (%v) in nanoseconds", w))
				} else {
					c.ps.add(join(path, "window"), w.String(), fmt.Sprintf("must be at least %d nanoseconds, one per bucket", n))
				}
			}
		}
		cfg := bulkhead.CPUConfig{Threshold: a.GetCpuThreshold(), Window: window, Buckets: int(a.GetBuckets()), CoolOff: coolOff, MinLimit: lo}
		return func() bulkhead.Strategy { return bulkhead.NewCPU(cfg) }
	default:
		c.ps.add(join(path, "kind"), enumText(k), "must be one of "+shortNames(k.Descriptor()))
		return nil
	}
}

// methodPattern reports whether p is "/pkg.Service/Method",
// "/pkg.Service/" or "pkg.Service", as the server package requires.
func methodPattern(p string) bool {
	if p != "" && p[0] != '/' {
		return !strings.ContainsAny(p, "/ ") && !strings.HasPrefix(p, ".") && !strings.HasSuffix(p, ".")
	}
	if len(p) < 3 {
		return false
	}
	i := strings.IndexByte(p[1:], '/') + 1
	return i > 1 && strings.IndexByte(p[i+1:], '/') < 0
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

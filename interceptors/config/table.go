package config

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	configv1 "github.com/engineeringlabs/grpc-resilience/proto/gen/grpcresilience/config/v1"
	"github.com/engineeringlabs/grpc-resilience/ratelimit"
	"github.com/engineeringlabs/grpc-resilience/throttle"
)

// WriteTable writes the effective client policy of every name of the
// configuration, one row each in file order, with every default filled in,
// followed by a summary of the server pipeline:
//
//	NAME                    PATTERN  ATTEMPTS  BACKOFF                             ...
//	/pkg.Svc/Get            retry    4         exponential 50ms..1s x2, full jitter ...
//
// Kinds are named as files may name them ("exponential", "token_bucket").
// Columns: NAME ("*" for the default, "pkg.Svc/*" for a service), PATTERN
// (retry, hedging or single), ATTEMPTS (for hedging 1+extra), BACKOFF (or
// the hedging delay), ATTEMPT TIMEOUT, TIMEOUT (the default deadline),
// BREAKER, THROTTLE (only when some policy has a throttle), RATE LIMIT,
// BULKHEAD and IDEMPOTENT. "-" means none.
func (c *Config) WriteTable(w io.Writer) error {
	throttles := slices.ContainsFunc(c.msg.GetMethodPolicies(), func(mp *configv1.MethodPolicy) bool { return mp.GetThrottle() != nil })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	throttleHead := ""
	if throttles {
		throttleHead = "\tTHROTTLE"
	}
	fmt.Fprintln(tw, "NAME\tPATTERN\tATTEMPTS\tBACKOFF\tATTEMPT TIMEOUT\tTIMEOUT\tBREAKER"+throttleHead+"\tRATE LIMIT\tBULKHEAD\tIDEMPOTENT")
	for _, e := range c.entries {
		mp := c.msg.GetMethodPolicies()[e.policy]
		name := e.pattern
		switch {
		case name == "":
			name = "*"
		case name[0] != '/':
			name += "/*"
		}
		pattern, attempts, backoff, attemptTimeout := "single", "1", "-", "-"
		if r := mp.GetRetry(); r != nil {
			pattern, attempts = "retry", "3"
			if r.MaxAttempts != nil {
				attempts = fmt.Sprint(r.GetMaxAttempts())
			}
			backoff = describeBackoff(r)
			attemptTimeout = orDash(r.GetAttemptTimeout().AsDuration())
		}
		if h := mp.GetHedging(); h != nil {
			pattern, attempts = "hedging", "1+1"
			if h.MaxExtraAttempts != nil {
				attempts = fmt.Sprintf("1+%d", h.GetMaxExtraAttempts())
			}
			backoff = "delay " + h.GetDelay().AsDuration().String()
			if p := h.GetPercentile(); p > 0 {
				backoff = fmt.Sprintf("p%v latency (%s first)", p, backoff)
			}
		}
		guard := describeBreaker(mp.GetBreaker())
		if throttles {
			guard += "\t" + describeThrottle(mp.GetThrottle())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, pattern, attempts, backoff, attemptTimeout,
			orDash(mp.GetTimeout().AsDuration()), guard, describeRateLimit(mp.GetRateLimit()),
			describeBulkhead(mp.GetBulkhead()), describeIdempotency(mp.GetIdempotency()))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\ntarget budget: %s\nserver: %s\n", describeBudget(c.msg.GetTargetBudget()), describeServer(c.msg.GetServer()))
	return err
}

func orDash(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.String()
}

func describeBackoff(r *configv1.RetryPolicy) string {
	b := r.GetBackoff()
	ceiling := func() string {
		if b.Max == nil {
			return "uncapped"
		}
		return b.GetMax().AsDuration().String()
	}
	mult := func() float64 {
		if b.Multiplier == nil {
			return defaultMultiplier
		}
		return b.GetMultiplier()
	}
	var s string
	switch b.GetKind() {
	case configv1.BackoffKind_BACKOFF_KIND_UNSPECIFIED:
		s = "exponential 100ms..10s x2"
	case configv1.BackoffKind_BACKOFF_KIND_CONSTANT:
		s = "constant " + b.GetDelay().AsDuration().String()
	case configv1.BackoffKind_BACKOFF_KIND_LINEAR:
		s = fmt.Sprintf("linear %v+%v..%s", b.GetInitial().AsDuration(), b.GetStep().AsDuration(), ceiling())
	case configv1.BackoffKind_BACKOFF_KIND_EXPONENTIAL:
		s = fmt.Sprintf("exponential %v..%s x%v", b.GetInitial().AsDuration(), ceiling(), mult())
	case configv1.BackoffKind_BACKOFF_KIND_FIBONACCI:
		s = fmt.Sprintf("fibonacci %v..%s", b.GetInitial().AsDuration(), ceiling())
	case configv1.BackoffKind_BACKOFF_KIND_DECORRELATED_JITTER, configv1.BackoffKind_BACKOFF_KIND_DECORRELATED_JITTER_V2:
		s = fmt.Sprintf("%s %v..%s", short(b.GetKind()), b.GetInitial().AsDuration(), ceiling())
	}
	switch r.GetJitter() {
	case configv1.JitterKind_JITTER_KIND_UNSPECIFIED, configv1.JitterKind_JITTER_KIND_FULL:
		s += ", full jitter"
	case configv1.JitterKind_JITTER_KIND_EQUAL:
		s += ", equal jitter"
	case configv1.JitterKind_JITTER_KIND_PROPORTIONAL:
		s += fmt.Sprintf(", proportional ±%v%% jitter", r.GetJitterFactor()*100)
	}
	return s
}

func describeBreaker(b *configv1.BreakerPolicy) string {
	if b == nil {
		return "-"
	}
	var trig []string
	rates := b.GetFailureRateThreshold() > 0 || b.GetSlowCallRateThreshold() > 0
	if n := b.GetFailureThreshold(); n > 0 || !rates {
		if n == 0 {
			n = breaker.DefaultFailureThreshold
		}
		trig = append(trig, fmt.Sprintf("%d consecutive", n))
	}
	if rates {
		window := fmt.Sprintf("last %d calls", orInt(b.GetWindowSize(), breaker.DefaultWindowSize))
		if b.GetWindowType() == configv1.WindowType_WINDOW_TYPE_TIME {
			p := b.GetWindowPeriod().AsDuration()
			if p == 0 {
				p = breaker.DefaultWindowPeriod
			}
			window = "last " + p.String()
		}
		if r := b.GetFailureRateThreshold(); r > 0 {
			trig = append(trig, fmt.Sprintf("%v%% failed", r))
		}
		if r := b.GetSlowCallRateThreshold(); r > 0 {
			trig = append(trig, fmt.Sprintf("%v%% slower than %v", r, b.GetSlowCallDuration().AsDuration()))
		}
		trig[len(trig)-1] += " of " + window
	}
	open := b.GetOpenDuration().AsDuration()
	if open == 0 {
		open = breaker.DefaultTimeout
	}
	s := strings.Join(trig, " or ") + ", open " + open.String()
	if ob := b.GetOpenBackoff(); ob != nil {
		mult := float64(defaultMultiplier)
		if ob.Multiplier != nil {
			mult = ob.GetMultiplier()
		}
		s += fmt.Sprintf("..%v x%v", ob.GetMax().AsDuration(), mult)
	}
	return s + describeScope(b.GetScope())
}

func orInt(v int32, def int) int {
	if v == 0 {
		return def
	}
	return int(v)
}

func describeScope(s configv1.Scope) string {
	switch s {
	case configv1.Scope_SCOPE_SERVICE:
		return ", per service"
	case configv1.Scope_SCOPE_TARGET:
		return ", per target"
	}
	return ""
}

func describeBulkhead(b *configv1.BulkheadPolicy) string {
	if b == nil {
		return "-"
	}
	s := fmt.Sprintf("%d in flight", b.GetLimit())
	if q := b.GetQueue(); q > 0 {
		s += fmt.Sprintf(", queue %d", q)
		if w := b.GetMaxWait().AsDuration(); w > 0 {
			s += " for " + w.String()
		}
	}
	return s + describeScope(b.GetScope())
}

// describeRateLimit describes a client rate limit: "10/s burst 20, wait".
func describeRateLimit(rl *configv1.RateLimitPolicy) string {
	if rl == nil {
		return "-"
	}
	s := describeRate(rl.GetRate(), rl.GetBurst())
	if rl.GetWait() {
		s += ", wait"
	}
	return s + describeScope(rl.GetScope())
}

// describeThrottle describes a throttle, defaults filled in: "K 2, 10s
// in 40 buckets, min 20".
func describeThrottle(t *configv1.ThrottlePolicy) string {
	if t == nil {
		return "-"
	}
	k := t.GetK()
	if k == 0 {
		k = throttle.DefaultK
	}
	window := t.GetWindow().AsDuration()
	if window == 0 {
		window = throttle.DefaultWindow
	}
	return fmt.Sprintf("K %v, %v in %d buckets, min %d", k, window, orInt(t.GetBuckets(), throttle.DefaultBuckets),
		orInt(t.GetMinRequests(), throttle.DefaultMinRequests)) + describeScope(t.GetScope())
}

// describeRate describes a rate and its burst, the default burst filled
// in: "10/s burst 10".
func describeRate(rate float64, burst int32) string {
	b := int64(burst)
	if b == 0 {
		b = max(1, int64(min(math.Ceil(rate), ratelimit.MaxRate)))
	}
	return fmt.Sprintf("%v/s burst %d", rate, b)
}

func describeIdempotency(i configv1.Idempotency) string {
	switch i {
	case configv1.Idempotency_IDEMPOTENCY_IDEMPOTENT:
		return "yes"
	case configv1.Idempotency_IDEMPOTENCY_NOT_IDEMPOTENT:
		return "no"
	}
	return "descriptor"
}

func describeBudget(b *configv1.Budget) string {
	if b == nil {
		return "ratio 20% of 10s, or 1/s when more (default)"
	}
	switch b.GetKind() {
	case configv1.BudgetKind_BUDGET_KIND_RATIO:
		ttl := b.GetTtl().AsDuration()
		if ttl == 0 {
			ttl = 10 * time.Second
		}
		if b.GetFloorInsideRatio() && b.GetRatio() >= 1e-6 {
			return fmt.Sprintf("ratio %v%% of %v, or %d/s when more", b.GetRatio()*100, ttl, b.GetMinRetriesPerSecond())
		}
		return fmt.Sprintf("ratio %v%% of %v + %d/s", b.GetRatio()*100, ttl, b.GetMinRetriesPerSecond())
	case configv1.BudgetKind_BUDGET_KIND_TOKEN_BUCKET:
		return fmt.Sprintf("token_bucket of %v, %v per success", b.GetMaxTokens(), b.GetTokenRatio())
	}
	return "none"
}

func describeServer(s *configv1.ServerConfig) string {
	var parts []string
	d := s.GetDeadline()
	dl := "reject expired deadlines"
	if m := d.GetMinRemaining().AsDuration(); m > 0 {
		dl = "reject deadlines under " + m.String()
	}
	if def := d.GetDefault().AsDuration(); def > 0 {
		dl += ", default deadline " + def.String()
	}
	parts = append(parts, dl)
	if rl := s.GetRateLimit(); rl.GetRate() != 0 || len(rl.GetMethods()) > 0 {
		parts = append(parts, describeServerRateLimit(rl))
	}
	if b := s.GetBulkhead(); b != nil {
		bh := fmt.Sprintf("bulkhead %d%s", b.GetLimit(), describePartition(b.GetPartitionBy(), b.GetHeader()))
		if q := b.GetQueue(); q > 0 {
			bh += fmt.Sprintf(", queue %d", q)
		}
		if a := b.GetAdaptive(); a != nil {
			bh += ", adaptive " + short(a.GetKind())
		}
		parts = append(parts, bh)
	}
	if ex := s.GetExempt(); len(ex) > 0 {
		parts = append(parts, "exempt "+strings.Join(ex, " "))
	}
	if ch := s.GetChaos(); ch.GetAll() != nil || len(ch.GetMethods()) > 0 {
		parts = append(parts, fmt.Sprintf("chaos on %d method patterns", len(ch.GetMethods())+boolInt(ch.GetAll() != nil)))
	}
	return strings.Join(parts, "; ")
}

// describePartition describes how calls are split: "", " per method",
// " per x-caller", " per peer".
func describePartition(p configv1.Partition, header string) string {
	switch p {
	case configv1.Partition_PARTITION_METHOD:
		return " per method"
	case configv1.Partition_PARTITION_HEADER:
		return " per " + header
	case configv1.Partition_PARTITION_PEER:
		return " per peer"
	}
	return ""
}

// describeServerRateLimit describes the server's quotas, the default one
// first: "rate limit per x-caller: 100/s burst 100, /pkg.Svc/Login 1/s
// burst 5".
func describeServerRateLimit(rl *configv1.ServerRateLimit) string {
	var quotas []string
	if r := rl.GetRate(); r != 0 {
		quotas = append(quotas, describeRate(r, rl.GetBurst()))
	}
	for _, m := range sortedKeys(rl.GetMethods()) {
		q := rl.GetMethods()[m]
		if q.GetRate() == 0 {
			quotas = append(quotas, m+" unlimited")
			continue
		}
		quotas = append(quotas, m+" "+describeRate(q.GetRate(), q.GetBurst()))
	}
	s := "rate limit" + describePartition(rl.GetPartitionBy(), rl.GetHeader()) + ": " + strings.Join(quotas, ", ")
	if rl.GetNoPushback() {
		s += ", no pushback"
	}
	return s
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

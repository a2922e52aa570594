package retry

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestBudgetChargesARetryOnce drives each budget through Record/AllowRetry
// sequences that a Policy makes under the Budget contract, and checks after
// every step how many retries are left: each implementation charges a
// granted retry exactly once, in the place its doc comment names
// (RatioBudget in AllowRetry, TokenBucket in Record of the failure), and a
// denial charges nothing.
func TestBudgetChargesARetryOnce(t *testing.T) {
	type step struct {
		op   string  // "F<n>" retryable failure of attempt n, "X<n>" final failure, "S<n>" success, "?" AllowRetry
		ok   bool    // AllowRetry's expected answer
		left float64 // retries left (RatioBudget.Available) or tokens (TokenBucket.Tokens) after the step
	}
	ratio := func(ttl time.Duration, minPerSec int, r float64) func() (Budget, func() float64) {
		return func() (Budget, func() float64) {
			b := newRatioBudget(ttl, minPerSec, r, false, newManualNow().now)
			return b, func() float64 { return float64(b.Available()) }
		}
	}
	bucket := func(maxTokens, r float64) func() (Budget, func() float64) {
		return func() (Budget, func() float64) {
			b := NewTokenBucket(maxTokens, r)
			return b, b.Tokens
		}
	}
	tests := []struct {
		name  string
		newB  func() (Budget, func() float64)
		steps []step
	}{
		{"ratio budget: floor only, charged in AllowRetry", ratio(time.Second, 2, 0), []step{
			{op: "F1", left: 2}, // a failure charges nothing
			{op: "?", ok: true, left: 1},
			{op: "F2", left: 1},
			{op: "?", ok: true, left: 0},
			{op: "F3", left: 0},
			{op: "?", ok: false, left: 0}, // a denial charges nothing
			{op: "S1", left: 0},           // ratio 0: calls deposit nothing
		}},
		{"ratio budget: deposits by first attempts", ratio(10*time.Second, 0, 0.5), []step{
			{op: "F1", left: 0}, // half a retry
			{op: "?", ok: false, left: 0},
			{op: "S1", left: 1},
			{op: "F2", left: 1}, // later attempts deposit nothing
			{op: "X1", left: 1}, // any first attempt deposits: one and a half
			{op: "?", ok: true, left: 0},
			{op: "?", ok: false, left: 0},
		}},
		{"token bucket: charged in Record", bucket(4, 1), []step{
			{op: "F1", left: 3}, // the failure takes its token
			{op: "?", ok: true, left: 3},
			{op: "F2", left: 2},
			{op: "?", ok: false, left: 2}, // not above half: denied, nothing taken
			{op: "S1", left: 3},
			{op: "X1", left: 3}, // final failures change nothing
			{op: "F1", left: 2},
			{op: "?", ok: false, left: 2},
		}},
		{"token bucket: fractional refill", bucket(10, 0.5), []step{
			{op: "F1", left: 9},
			{op: "?", ok: true, left: 9},
			{op: "F2", left: 8},
			{op: "?", ok: true, left: 8},
			{op: "S3", left: 8.5},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, left := tt.newB()
			for i, s := range tt.steps {
				if s.op == "?" {
					if got := b.AllowRetry(); got != s.ok {
						t.Fatalf("step %d (%s): AllowRetry = %v, want %v", i, s.op, got, s.ok)
					}
				} else {
					var n int
					o := map[byte]Outcome{'F': RetryableFailure, 'X': FinalFailure, 'S': Success}[s.op[0]]
					fmt.Sscan(s.op[1:], &n)
					b.Record(n, o)
				}
				if got := left(); got != s.left {
					t.Fatalf("step %d (%s): %v left, want %v", i, s.op, got, s.left)
				}
			}
		})
	}
}

// contractBudget wraps a Budget and checks that its caller keeps the
// Budget contract: AllowRetry comes right after Record of a retryable
// failure, at most once per failure, a grant is followed by the next
// attempt's Record, and no attempt after the first runs without a grant.
type contractBudget struct {
	t     *testing.T
	inner Budget
	log   []string

	lastAttempt  int     // attempt of the last Record
	lastOutcome  Outcome // its outcome
	asked        bool    // AllowRetry was asked since the last Record
	granted      bool    // and said yes
	asks, grants int
	violations   int
}

func (b *contractBudget) violate(format string, args ...any) {
	b.t.Helper()
	b.violations++
	if b.violations <= 5 {
		b.t.Errorf(format+"; log: %s", append(args, strings.Join(b.log, " "))...)
	}
}

func (b *contractBudget) Record(attempt int, o Outcome) {
	b.log = append(b.log, fmt.Sprintf("%v@%d", o, attempt))
	switch {
	case attempt == 1 && b.granted:
		b.violate("a granted retry did not run: a new call started instead")
	case attempt > 1 && !b.granted:
		b.violate("attempt %d ran without a granted AllowRetry", attempt)
	case attempt > 1 && attempt != b.lastAttempt+1:
		b.violate("attempt %d followed a grant for attempt %d", attempt, b.lastAttempt+1)
	}
	b.lastAttempt, b.lastOutcome, b.asked, b.granted = attempt, o, false, false
	b.inner.Record(attempt, o)
}

func (b *contractBudget) AllowRetry() bool {
	b.log = append(b.log, "ask")
	switch {
	case b.asked:
		b.violate("AllowRetry asked twice for the failure of attempt %d", b.lastAttempt)
	case b.lastAttempt == 0 || b.lastOutcome != RetryableFailure:
		b.violate("AllowRetry asked after %v@%d, want right after a retryable failure", b.lastOutcome, b.lastAttempt)
	}
	b.asks++
	b.asked = true
	b.granted = b.inner.AllowRetry()
	if b.granted {
		b.grants++
		b.log = append(b.log, "granted")
	}
	return b.granted
}

// end checks that the last call did not end with an unused grant.
func (b *contractBudget) end() {
	if b.granted {
		b.violate("the call ended after a granted retry, without making it")
	}
	b.granted, b.asked, b.lastAttempt = false, false, 0
	b.log = b.log[:0]
}

// TestPolicyKeepsBudgetContract runs many calls with random outcomes under
// policies with random limits through both budgets, and checks that the
// Policy keeps the Budget contract: AllowRetry is asked only when the retry
// really follows (never before a condition, a Pushback veto, the attempt
// limit or the maximum duration stops the call), exactly once per extra
// attempt, and every grant is an attempt that runs.
func TestPolicyKeepsBudgetContract(t *testing.T) {
	budgets := map[string]func(now func() time.Time) Budget{
		"ratio budget": func(now func() time.Time) Budget { return newRatioBudget(10*time.Second, 0, 0.05, false, now) },
		"token bucket": func(func() time.Time) Budget { return NewTokenBucket(20, 0.4) },
	}
	veto := &pushbackError{retry: false}
	later := &pushbackError{delay: 300 * time.Millisecond, retry: true}
	outcomes := []error{nil, nil, errTransient, errTransient, errTransient, errBad, Permanent(errBad), veto, later}
	for name, newBudget := range budgets {
		t.Run(name, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(7, 11))
			fc := newFakeClock()
			cb := &contractBudget{t: t, inner: newBudget(fc.now)}
			attempts, calls := 0, 0
			var ev events
			for range 2000 {
				p := NewFromConfig(Config{
					MaxAttempts: 1 + rnd.IntN(5),
					Backoff:     Constant(time.Duration(rnd.IntN(400)) * time.Millisecond),
					AbortIf:     func(err error) bool { return err == errBad },
					MaxDuration: time.Duration(rnd.IntN(4)) * 250 * time.Millisecond, // 0: no limit
					Budget:      cb,
				})
				ev.set(&p.cfg)
				p.clock = fc
				calls++
				_ = p.Do(context.Background(), func(context.Context) error {
					attempts++
					fc.advance(time.Duration(rnd.IntN(200)) * time.Millisecond)
					return outcomes[rnd.IntN(len(outcomes))]
				})
				cb.end()
			}
			if cb.grants != attempts-calls {
				t.Errorf("%d retries granted, %d extra attempts made; want them equal", cb.grants, attempts-calls)
			}
			// Every way a retry can be stopped must have happened, or the run
			// proves little.
			if cb.grants == 0 || ev.denied == 0 || ev.deadline == 0 || ev.exhausted == 0 {
				t.Errorf("%d grants, %d denials, %d deadline stops, %d exhaustions: the run should see each",
					cb.grants, ev.denied, ev.deadline, ev.exhausted)
			}
		})
	}
}

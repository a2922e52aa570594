package retry

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// manualNow is a time source that moves only when a test says so.
type manualNow struct {
	mu sync.Mutex
	t  time.Time
}

func (m *manualNow) now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.t
}

func (m *manualNow) advance(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.t = m.t.Add(d)
}

func newManualNow() *manualNow { return &manualNow{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

// outage runs calls calls that always fail under p and returns how many
// retries ran.
func outage(t *testing.T, p *Policy, calls int) int {
	t.Helper()
	attempts := 0
	for range calls {
		_ = p.Do(context.Background(), func(context.Context) error {
			attempts++
			return errTransient
		})
	}
	return attempts - calls
}

// TestRatioBudgetOutage simulates a total outage of 1000 calls arriving
// within one TTL: retries are bounded by the floor plus the ratio of calls.
func TestRatioBudgetOutage(t *testing.T) {
	tests := []struct {
		name        string
		ttl         time.Duration
		minPerSec   int
		ratio       float64
		maxAttempts int
		want        int
	}{
		// 10/s * 10s + 0.2 * 1000 calls.
		{"linkerd defaults", 10 * time.Second, 10, 0.2, 3, 100 + 200},
		{"many attempts", 10 * time.Second, 10, 0.2, 100, 100 + 200},
		// 0.3 rounds its cost to 3333 units: floor(1000*1000/3333) = 300.
		{"ratio only", 10 * time.Second, 0, 0.3, 3, 300},
		{"floor only", 5 * time.Second, 4, 0, 3, 20},
		{"nothing", time.Second, 0, 0, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newManualNow()
			b := newRatioBudget(tt.ttl, tt.minPerSec, tt.ratio, false, clock.now)
			var ev events
			p, _ := testPolicy(tt.maxAttempts, 0.5, WithBackoff(Constant(0)), WithBudget(b), ev.hooks())
			if got := outage(t, p, 1000); got != tt.want {
				t.Errorf("outage of 1000 calls retried %d times, want exactly %d", got, tt.want)
			}
			if len(ev.retries) != tt.want || ev.denied+ev.exhausted != 1000 || ev.denied == 0 {
				t.Errorf("events: %d retries, %d denied, %d exhausted; want %d retries and denied+exhausted = 1000 calls",
					len(ev.retries), ev.denied, ev.exhausted, tt.want)
			}
		})
	}
}

// TestRatioBudgetWindow checks that deposits and spent retries expire one
// TTL after they happen, so the floor comes back.
func TestRatioBudgetWindow(t *testing.T) {
	clock := newManualNow()
	b := newRatioBudget(10*time.Second, 1, 0.5, false, clock.now) // floor 10 retries, a retry per 2 calls
	if got := b.Available(); got != 10 {
		t.Fatalf("Available = %d at start, want the floor of 10", got)
	}
	for range 10 {
		if !b.AllowRetry() {
			t.Fatal("retry denied within the floor")
		}
	}
	if b.AllowRetry() {
		t.Fatal("retry granted beyond the floor")
	}
	for range 4 {
		b.Record(1, RetryableFailure)
		b.Record(2, RetryableFailure) // later attempts deposit nothing
	}
	if got := b.Available(); got != 2 {
		t.Fatalf("Available = %d after 4 calls, want 2", got)
	}
	clock.advance(9 * time.Second)
	if got := grants(b, 5); got != 2 {
		t.Fatalf("within the TTL: %d of 5 retries granted, want exactly 2", got)
	}
	clock.advance(999 * time.Millisecond)
	if got := b.Available(); got != 0 {
		t.Fatalf("Available = %d just before the TTL ran out, want 0", got)
	}
	clock.advance(time.Millisecond) // 10s: what happened at 0s expires
	if got := b.Available(); got != 8 {
		t.Fatalf("Available = %d at 10s, want 8: the floor less the 2 retries spent at 9s", got)
	}
	clock.advance(9 * time.Second) // 19s: the retries spent at 9s expire too
	if got := b.Available(); got != 10 {
		t.Fatalf("Available = %d at 19s, want the floor of 10", got)
	}
	clock.advance(-time.Hour) // a clock stepping back is not a panic
	if got := b.Available(); got < 0 {
		t.Fatalf("Available = %d after the clock stepped back", got)
	}
}

// grants asks b for n retries and returns how many it granted.
func grants(b Budget, n int) int {
	granted := 0
	for range n {
		if b.AllowRetry() {
			granted++
		}
	}
	return granted
}

func TestRatioBudgetClamps(t *testing.T) {
	tests := []struct {
		name      string
		ttl       time.Duration
		minPerSec int
		ratio     float64
		deposits  int
		want      int
	}{
		{"zero ttl means 10s", 0, 1, 0, 0, 10},
		{"negative floor means 0", time.Second, -5, 1, 1, 1},
		{"ratio above 1000 clamped", time.Second, 0, 5000, 1, 1000},
		{"NaN ratio means floor only", time.Second, 2, math.NaN(), 100, 2},
		{"tiny ratio means floor only", time.Second, 0, 1e-9, 100, 0},
		{"huge floor saturates", time.Duration(math.MaxInt64), math.MaxInt, 1e-6, 0, int(maxBudgetUnit / 1_000_000_000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newRatioBudget(tt.ttl, tt.minPerSec, tt.ratio, false, newManualNow().now)
			for range tt.deposits {
				b.Record(1, Success)
			}
			if got := b.Available(); got != tt.want {
				t.Errorf("Available = %d, want %d", got, tt.want)
			}
		})
	}
	var zero RatioBudget
	zero.Record(1, Success)
	if zero.AllowRetry() || zero.Available() != 0 {
		t.Error("the zero RatioBudget grants retries")
	}
	if b := NewRatioBudget(time.Second, 3, 0); b.Available() != 3 {
		t.Errorf("NewRatioBudget with the real clock: Available = %d, want 3", b.Available())
	}
}

// TestTokenBucketOutage simulates a total outage of 1000 calls under gRPC's
// retry throttling: every failure takes a token and retries stop once at
// most maxTokens/2 remain.
func TestTokenBucketOutage(t *testing.T) {
	tests := []struct {
		name        string
		maxTokens   float64
		maxAttempts int
		want        int
	}{
		// Tokens after each failure: 9 (retry) 8 (retry) 7 (last attempt)
		// 6 (retry) 5 (denied: not above 5), then denied.
		{"3 attempts", 10, 3, 3},
		// 9, 8, 7, 6 retry; 5 denied.
		{"unlimited attempts", 10, math.MaxInt, 4},
		// gRPC's example: 100 tokens allow 49 retries without a success.
		{"100 tokens", 100, math.MaxInt, 49},
		{"odd capacity", 5, math.MaxInt, 2}, // 4, 3 retry; 2 denied
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewTokenBucket(tt.maxTokens, 0.1)
			p, _ := testPolicy(tt.maxAttempts, 0.5, WithBackoff(Constant(0)), WithBudget(b))
			if got := outage(t, p, 1000); got != tt.want {
				t.Errorf("outage of 1000 calls retried %d times, want exactly %d", got, tt.want)
			}
			if b.Tokens() != 0 || b.AllowRetry() {
				t.Errorf("after the outage: %v tokens, AllowRetry %v; want 0, false", b.Tokens(), b.AllowRetry())
			}
		})
	}
}

func TestTokenBucketAccounting(t *testing.T) {
	b := NewTokenBucket(10, 0.5)
	for range 5 {
		b.Record(1, RetryableFailure)
	}
	if b.Tokens() != 5 || b.AllowRetry() {
		t.Fatalf("after 5 failures: %v tokens, AllowRetry %v; want 5, false", b.Tokens(), b.AllowRetry())
	}
	b.Record(1, FinalFailure)
	if b.Tokens() != 5 {
		t.Fatalf("a final failure changed the tokens to %v", b.Tokens())
	}
	b.Record(1, Success)
	if b.Tokens() != 5.5 || !b.AllowRetry() {
		t.Fatalf("after a success: %v tokens, AllowRetry %v; want 5.5, true", b.Tokens(), b.AllowRetry())
	}
	for range 100 {
		b.Record(1, Success)
	}
	if b.Tokens() != 10 {
		t.Fatalf("tokens = %v after many successes, want the cap of 10", b.Tokens())
	}
	for range 100 {
		b.Record(1, RetryableFailure)
	}
	if b.Tokens() != 0 {
		t.Fatalf("tokens = %v after many failures, want 0", b.Tokens())
	}
}

func TestTokenBucketClamps(t *testing.T) {
	tests := []struct {
		name              string
		maxTokens, ratio  float64
		wantMax, wantGain float64
	}{
		{"maxTokens capped at 1000", 5000, 1, 1000, 1},
		{"NaN maxTokens is 0", math.NaN(), 1, 0, 0},
		{"negative maxTokens is 0", -1, 1, 0, 0},
		{"ratio truncated to 3 decimals", 10, 0.0019, 10, 0.001},
		{"ratio below 0.001 never refills", 10, 0.0009, 10, 0},
		{"NaN ratio is 0", 10, math.NaN(), 10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewTokenBucket(tt.maxTokens, tt.ratio)
			if b.Tokens() != tt.wantMax {
				t.Fatalf("starts with %v tokens, want %v", b.Tokens(), tt.wantMax)
			}
			b.Record(1, RetryableFailure)
			before := b.Tokens()
			b.Record(1, Success)
			if gain := b.Tokens() - before; math.Abs(gain-tt.wantGain) > 1e-9 {
				t.Errorf("a success added %v tokens, want %v", gain, tt.wantGain)
			}
		})
	}
	var zero TokenBucket
	zero.Record(1, Success)
	if zero.AllowRetry() {
		t.Error("the zero TokenBucket grants retries")
	}
}

func TestBudgetSharedBetweenPolicies(t *testing.T) {
	b := NewTokenBucket(4, 1) // retries while more than 2 tokens
	p1, _ := testPolicy(math.MaxInt, 0.5, WithBackoff(Constant(0)), WithBudget(b))
	p2, _ := testPolicy(math.MaxInt, 0.5, WithBackoff(Constant(0)), WithBudget(b))
	if got := outage(t, p1, 1); got != 1 { // 3 retry, 2 denied
		t.Fatalf("first policy retried %d times, want 1", got)
	}
	if got := outage(t, p2, 1); got != 0 {
		t.Errorf("second policy retried %d times on the drained shared budget, want 0", got)
	}
	if got := outage(t, p1.With(WithMaxAttempts(5)), 1); got != 0 {
		t.Errorf("a copy made with With retried %d times, want 0: it shares the budget", got)
	}
}

// recordingBudget records what the engine tells it and grants retries as
// told.
type recordingBudget struct {
	allow   bool
	records []string
	asked   int
}

func (b *recordingBudget) Record(attempt int, o Outcome) {
	b.records = append(b.records, o.String()+"@"+string(rune('0'+attempt)))
}

func (b *recordingBudget) AllowRetry() bool {
	b.asked++
	return b.allow
}

func TestBudgetSeesOutcomes(t *testing.T) {
	veto := &pushbackError{retry: false}
	tests := []struct {
		name      string
		allow     bool
		maxAtt    int
		noTime    bool
		errs      []error
		want      string
		wantAsked int
	}{
		{"retry then success", true, 3, false, []error{errTransient}, "[retryable failure@1 success@2]", 1},
		{"exhausted", true, 2, false, []error{errTransient, errTransient}, "[retryable failure@1 retryable failure@2]", 1},
		{"denied", false, 3, false, []error{errTransient}, "[retryable failure@1]", 1},
		{"permanent", true, 3, false, []error{Permanent(errBad)}, "[final failure@1]", 0},
		{"pushback veto counts as failure", true, 3, false, []error{veto}, "[retryable failure@1]", 0},
		{"not asked when time runs out", true, 3, true, []error{errTransient}, "[retryable failure@1]", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &recordingBudget{allow: tt.allow}
			var ev events
			p, _ := testPolicy(tt.maxAtt, 0.5, WithBackoff(Constant(time.Second)), WithBudget(b), ev.hooks())
			if tt.noTime {
				p = p.With(WithMaxDuration(time.Second)) // the 1s wait cannot fit
			}
			fn, _ := failing(tt.errs...)
			_ = p.Do(context.Background(), fn)
			if got := fmtStrings(b.records); got != tt.want || b.asked != tt.wantAsked {
				t.Errorf("records %s, asked %d times; want %s, %d", got, b.asked, tt.want, tt.wantAsked)
			}
			if !tt.allow && ev.denied != 1 {
				t.Errorf("OnBudgetDenied called %d times, want 1", ev.denied)
			}
		})
	}
}

func fmtStrings(s []string) string {
	out := "["
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out + "]"
}

// TestBudgetsConcurrent hammers both budgets from several goroutines: the
// ratio budget must grant exactly its floor, and the token bucket must stay
// within its bounds. Run it with -race.
func TestBudgetsConcurrent(t *testing.T) {
	const goroutines, tries = 8, 200
	clock := newManualNow()
	ratio := newRatioBudget(10*time.Second, 5, 0, false, clock.now) // exactly 50 retries
	bucket := NewTokenBucket(100, 0.5)
	var granted atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range tries {
				if ratio.AllowRetry() {
					granted.Add(1)
				}
				o := RetryableFailure
				if (g+i)%3 == 0 {
					o = Success
				}
				bucket.Record(1, o)
				_ = bucket.AllowRetry()
				if tk := bucket.Tokens(); tk < 0 || tk > 100 {
					t.Errorf("token bucket holds %v tokens, outside [0, 100]", tk)
				}
			}
		})
	}
	wg.Wait()
	if granted.Load() != 50 {
		t.Errorf("ratio budget granted %d retries concurrently, want exactly its floor of 50", granted.Load())
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{Success: "success", RetryableFailure: "retryable failure", FinalFailure: "final failure", Outcome(9): "unknown outcome"} {
		if o.String() != want {
			t.Errorf("Outcome(%d).String() = %q, want %q", int(o), o.String(), want)
		}
	}
}

// Available says how many retries each budget grants before it denies.
func TestBudgetAvailable(t *testing.T) {
	tb := NewTokenBucket(10, 0.1)
	if got := tb.Available(); got != 4 {
		t.Fatalf("a full bucket of 10 tokens: Available = %d, want 4", got)
	}
	granted := 0
	for tb.Record(1, RetryableFailure); tb.AllowRetry(); tb.Record(1, RetryableFailure) {
		granted++
	}
	if granted != 4 || tb.Available() != 0 {
		t.Fatalf("granted %d retries, then Available = %d; want 4 and 0", granted, tb.Available())
	}
	var zeroTB TokenBucket
	var zeroRB RatioBudget
	if zeroTB.Available() != 0 || zeroRB.Available() != 0 {
		t.Fatal("a zero budget reports retries available")
	}
	clk := &manualNow{t: time.Unix(0, 0)}
	rb := newRatioBudget(10*time.Second, 1, 0.5, false, clk.now)
	if got := rb.Available(); got != 10 {
		t.Fatalf("the floor of 1/s over 10s: Available = %d, want 10", got)
	}
	for range 4 {
		rb.Record(1, Success)
	}
	if got := rb.Available(); got != 12 {
		t.Fatalf("after 4 calls at ratio 0.5: Available = %d, want 12", got)
	}
}

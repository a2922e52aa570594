package redisfleet

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/internal/redistest"
)

func newLimiter(t *testing.T, cfg LimiterConfig) *Limiter {
	t.Helper()
	l, err := NewLimiter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestLimiterConfigValidate(t *testing.T) {
	err := LimiterConfig{
		Prefix:            strings.Repeat("p", MaxPrefixLen+1),
		Timeout:           -1,
		LeaseWindow:       -1,
		MaxLease:          -1,
		MaxKeys:           -1,
		Processes:         -1,
		HeartbeatInterval: -1,
		RetryInterval:     -1,
	}.Validate()
	want := []string{"Client", "Prefix", "Timeout", "LeaseWindow", "MaxLease", "MaxKeys", "Processes", "HeartbeatInterval", "RetryInterval"}
	var got []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *resilience.FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a FieldError", e)
		}
		got = append(got, fe.Field)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("fields %v, want %v", got, want)
	}
	if fes := resilience.FieldErrors((LimiterConfig{Client: newClient(t, redistest.Start(t)), Prefix: "app{1}:"}).Validate()); len(fes) != 1 || fes[0].Field != "Prefix" {
		t.Fatalf("a prefix with braces: %v, want a Prefix field error", fes)
	}
	if _, err := NewLimiter(LimiterConfig{}); err == nil {
		t.Fatal("NewLimiter without a client succeeded")
	}
}

// TestQuotaExact checks the GCRA decisions against Redis: the burst is
// granted at once, the next permit is refused with the exact time until
// it, and granted after that time.
func TestQuotaExact(t *testing.T) {
	srv := redistest.Start(t)
	l := newLimiter(t, LimiterConfig{Client: newClient(t, srv), Timeout: time.Second})
	q := l.Quota("exact", 10, 3) // an interval of 100ms
	ctx := context.Background()
	for i := range 3 {
		if d, err := q.Take(ctx, "alice", 1); err != nil || !d.Allowed {
			t.Fatalf("permit %d of the burst: %+v, %v", i, d, err)
		}
	}
	d, err := q.Take(ctx, "alice", 1)
	if err != nil || d.Allowed {
		t.Fatalf("beyond the burst: %+v, %v", d, err)
	}
	// The three grants moved the TAT 300ms past the first grant; the limit
	// is 300ms, so the next permit comes 100ms after the first grant.
	if d.RetryAfter <= 0 || d.RetryAfter > 100*time.Millisecond {
		t.Fatalf("RetryAfter = %v, want in (0, 100ms]", d.RetryAfter)
	}
	if d.RetryAfter%time.Microsecond != 0 {
		t.Fatalf("RetryAfter = %v, not in whole microseconds", d.RetryAfter)
	}
	// Another key has its own bucket.
	if d, _ := q.Take(ctx, "bob", 3); !d.Allowed {
		t.Fatalf("bob's burst refused: %+v", d)
	}
	// More than the burst: never, without a round trip.
	shared := l.Metrics().Shared
	if d, _ := q.Take(ctx, "carol", 4); d.Allowed || d.RetryAfter != 0 {
		t.Fatalf("4 permits of a burst of 3: %+v, want refused with no RetryAfter", d)
	}
	if l.Metrics().Shared != shared {
		t.Fatal("a request above the burst made a round trip")
	}
	// Waiting RetryAfter grants the permit.
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, _ := q.Take(ctx, "alice", 1)
		if d.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("alice never got another permit")
		}
		time.Sleep(d.RetryAfter) // the time the limiter asked for
	}
	if m := l.Metrics(); m.Local != 0 || m.Errors != 0 || m.Hostile != 0 {
		t.Fatalf("metrics %+v: local decisions or errors against a healthy Redis", m)
	}
}

// TestQuotaRetryAfterExact asks the server for TIME around a refusal and
// checks the RetryAfter against the key's TAT as stored.
func TestQuotaRetryAfterExact(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	l := newLimiter(t, LimiterConfig{Client: c, Timeout: time.Second})
	q := l.Quota("ra", 4, 1) // 250ms interval, burst 1: limit 250ms
	ctx := context.Background()
	if d, _ := q.Take(ctx, "k", 1); !d.Allowed {
		t.Fatal("first permit refused")
	}
	key := q.key("k")
	tat, err := c.Do(ctx, c.B().Get().Key(key).Build()).AsFloat64()
	if err != nil {
		t.Fatal(err)
	}
	before := serverMicros(t, c)
	d, _ := q.Take(ctx, "k", 1)
	after := serverMicros(t, c)
	if d.Allowed {
		t.Fatal("second permit granted")
	}
	// RetryAfter = TAT + interval - limit - now = TAT - now, for some now
	// in [before, after].
	lo := time.Duration(tat-after) * time.Microsecond
	hi := time.Duration(tat-before+1) * time.Microsecond
	if d.RetryAfter < lo || d.RetryAfter > hi {
		t.Fatalf("RetryAfter = %v, want in [%v, %v]", d.RetryAfter, lo, hi)
	}
	// The key expires when its TAT passes.
	pttl, err := c.Do(ctx, c.B().Pttl().Key(key).Build()).AsInt64()
	if err != nil || pttl <= 0 || pttl > 250 {
		t.Fatalf("PTTL = %d, %v; want in (0, 250]", pttl, err)
	}
}

func serverMicros(t *testing.T, c rueidis.Client) float64 {
	t.Helper()
	v, err := c.Do(context.Background(), c.B().Time().Build()).AsStrSlice()
	if err != nil || len(v) != 2 {
		t.Fatalf("TIME: %v %v", v, err)
	}
	var s, us float64
	for i, p := range v {
		var x float64
		for _, ch := range p {
			x = x*10 + float64(ch-'0')
		}
		if i == 0 {
			s = x
		} else {
			us = x
		}
	}
	return s*1e6 + us
}

// TestQuotaExpiry checks that a key's state expires once its TAT passed.
func TestQuotaExpiry(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	l := newLimiter(t, LimiterConfig{Client: c, Timeout: time.Second})
	q := l.Quota("exp", 50, 1) // 20ms interval
	ctx := context.Background()
	if d, _ := q.Take(ctx, "k", 1); !d.Allowed {
		t.Fatal("refused")
	}
	key := q.key("k")
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := c.Do(ctx, c.B().Exists().Key(key).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("key still there 10s after its TAT")
		}
		time.Sleep(5 * time.Millisecond) // polling EXISTS, bounded above
	}
}

// TestQuotaNoScript flushes the script cache between decisions: the next
// decision loads the script again (EVAL after NOSCRIPT) and decides.
func TestQuotaNoScript(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	l := newLimiter(t, LimiterConfig{Client: c, Timeout: time.Second})
	q := l.Quota("ns", 1, 1)
	ctx := context.Background()
	if d, _ := q.Take(ctx, "k", 1); !d.Allowed {
		t.Fatal("refused")
	}
	if err := c.Do(ctx, c.B().ScriptFlush().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	d, _ := q.Take(ctx, "k", 1)
	if d.Allowed || d.RetryAfter <= 0 {
		t.Fatalf("after SCRIPT FLUSH: %+v, want refused with a RetryAfter", d)
	}
	if m := l.Metrics(); m.Shared != 2 || m.Errors != 0 || m.Local != 0 {
		t.Fatalf("metrics %+v, want 2 shared decisions and no errors", m)
	}
}

// TestQuotaHostile puts values the limiter cannot have written under its
// keys: each is treated as absent, counted, and replaced.
func TestQuotaHostile(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	var mu sync.Mutex
	var hooked []error
	l := newLimiter(t, LimiterConfig{Client: c, Timeout: time.Second, OnError: func(_ string, err error) {
		mu.Lock()
		hooked = append(hooked, err)
		mu.Unlock()
	}})
	q := l.Quota("hostile", 10, 2)
	ctx := context.Background()
	cmds := map[string]rueidis.Completed{
		"garbage": c.B().Set().Key(q.key("garbage")).Value("not a number").Build(),
		"huge":    c.B().Set().Key(q.key("huge")).Value("1e300").Build(),
		"inf":     c.B().Set().Key(q.key("inf")).Value("inf").Build(),
		"nan":     c.B().Set().Key(q.key("nan")).Value("nan").Build(),
		"hash":    c.B().Hset().Key(q.key("hash")).FieldValue().FieldValue("a", "b").Build(),
		"list":    c.B().Lpush().Key(q.key("list")).Element("x").Build(),
		"empty":   c.B().Set().Key(q.key("empty")).Value("").Build(),
		"neg":     c.B().Set().Key(q.key("neg")).Value("-5").Build(), // a TAT in the past: valid
	}
	for name, cmd := range cmds {
		if err := c.Do(ctx, cmd).Error(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for name := range cmds {
		d, err := q.Take(ctx, name, 2)
		if err != nil || !d.Allowed {
			t.Fatalf("%s: %+v, %v; want the full burst granted", name, d, err)
		}
		typ, err := c.Do(ctx, c.B().Type().Key(q.key(name)).Build()).ToString()
		if err != nil || typ != "string" {
			t.Fatalf("%s: type %q after the decision, %v", name, typ, err)
		}
	}
	m := l.Metrics()
	if m.Hostile != 7 || m.Errors != 0 || m.Local != 0 {
		t.Fatalf("metrics %+v, want 7 hostile values, no errors", m)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hooked) != 7 || !errors.Is(hooked[0], ErrHostileValue) {
		t.Fatalf("OnError got %v", hooked)
	}
}

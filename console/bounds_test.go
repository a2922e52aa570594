package console

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// clocked returns a console on clock whose samples the test takes with
// the returned function.
func clocked(t *testing.T, cfg Config, clock *fakeClock) (*Console, func() Snapshot) {
	t.Helper()
	tick := make(chan time.Time)
	c := newConsole(cfg, clock.now, tick)
	t.Cleanup(func() { c.Close() })
	return c, func() Snapshot {
		t.Helper()
		f := c.current.Load()
		select {
		case tick <- clock.now():
		case <-time.After(10 * time.Second):
			t.Fatal("the sampler did not take the tick")
		}
		select {
		case <-f.next:
		case <-time.After(10 * time.Second):
			t.Fatal("no snapshot published after the tick")
		}
		return c.Snapshot()
	}
}

// A server's method rows go once their counts stood still for a whole
// history, making room for new methods; the events of the methods past
// the cap show on the "other" row, never dropped.
func TestServerRowsPrunedAndOverflowShown(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	c, sample := clocked(t, Config{MaxRows: 2, History: 3}, clock)
	srv, err := server.New(server.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.AddServer("api", srv))
	p := c.pipesForTest()[0]
	shed := func(method string) {
		p.serverEvent(context.Background(), server.Event{Kind: server.EventShed, FullMethod: method})
	}
	const rowCap = 4 * 2
	for i := range rowCap + 1 {
		shed("/pkg.Svc/M" + strconv.Itoa(i))
	}
	if n := p.nRows.Load(); n != rowCap {
		t.Fatalf("rows counted = %d, want the cap %d", n, rowCap)
	}
	sample()

	// Only the method past the cap sheds now: its row is the other row,
	// first since it is the only one in trouble.
	clock.add(time.Second)
	shed("/pkg.Svc/late")
	s := sample()
	pl := findPipeline(t, s, "server", "api")
	if len(pl.Rows) == 0 || pl.Rows[0].Kind != RowOther || pl.Rows[0].ServerCounts == nil || pl.Rows[0].ServerCounts.ShedPerSec != 1 {
		t.Fatalf("rows = %+v, want the other row first with 1 shed/s", pl.Rows)
	}
	if len(pl.Rows) != 2+1 || pl.Hidden != rowCap-2 {
		t.Errorf("rows shown %d, hidden %d; want MaxRows and the other row, and %d", len(pl.Rows), pl.Hidden, rowCap-2)
	}
	if got := counter(pl, "shed"); got != rowCap+2 {
		t.Errorf("shed counter = %d, want %d", got, rowCap+2)
	}

	// A quiet history later, the method rows are gone and a new method
	// gets a row of its own.
	for range 3 {
		clock.add(time.Second)
		sample()
	}
	if n := p.nRows.Load(); n != 0 {
		t.Fatalf("rows counted after a quiet history = %d, want 0", n)
	}
	shed("/pkg.Svc/new")
	if p.rowCountsOf(keyOf("", "/pkg.Svc/new")) == nil {
		t.Error("a new method went to the overflow after the quiet rows were pruned")
	}
	clock.add(time.Second)
	s = sample()
	var sawNew, sawOther bool
	for _, r := range findPipeline(t, s, "server", "api").Rows {
		sawNew = sawNew || r.Method == "/pkg.Svc/new"
		sawOther = sawOther || r.Kind == RowOther
	}
	if !sawNew || !sawOther {
		t.Errorf("rows = %+v, want the new method and the other row", s.Pipelines)
	}
}

// An early sample, asked for by a breaker transition, shows the
// transition without reading the pipeline's snapshot (its rates stay
// those of the latest regular sample).
func TestEarlySampleAppliesTransitions(t *testing.T) {
	r := newRig(t, rigConfig{manual: true})
	if err := r.call(t); err != nil {
		t.Fatal(err)
	}
	before := findPipeline(t, r.sample(t), "client", "payments")
	f := r.console.current.Load()
	openBreaker(t, r)
	// The transition's early sample comes without a tick.
	deadline := time.After(10 * time.Second)
	for {
		select {
		case <-f.next:
		case <-deadline:
			t.Fatal("no early sample after the transition")
		}
		f = r.console.current.Load()
		pl := findPipeline(t, f.snap, "client", "payments")
		if len(pl.Rows) > 0 && pl.Rows[0].Breaker != nil && pl.Rows[0].Breaker.State == "open" {
			if pl.Trouble != TroubleOpen || pl.Rows[0].Trouble != TroubleOpen {
				t.Errorf("trouble = %d, row %d; want %d", pl.Trouble, pl.Rows[0].Trouble, TroubleOpen)
			}
			if pl.Rows[0].Retry == nil || before.Rows[0].Retry == nil || pl.Rows[0].Retry.RetriesPerSec != before.Rows[0].Retry.RetriesPerSec {
				t.Errorf("the early sample re-read the rates: %+v, before %+v", pl.Rows[0].Retry, before.Rows[0].Retry)
			}
			if len(pl.Counters) != len(before.Counters) {
				t.Errorf("the early sample re-read the counters: %+v, before %+v", pl.Counters, before.Counters)
			}
			return
		}
	}
}

// However often a sample is asked for, early samples come at most one
// per minEarly.
func TestEarlySamplesRateLimited(t *testing.T) {
	c, _ := manual(t, Config{})
	f := c.current.Load()
	start := time.Now()
	frames := 0
	for time.Since(start) < 3*minEarly {
		c.poke()
		select {
		case <-f.next:
			frames++
			f = c.current.Load()
		default:
		}
	}
	// Poked without pause, the sampler takes at most one sample at once
	// and one per minEarly after: at most 3 + 1 in 3 x minEarly.
	if frames > 4 {
		t.Errorf("%d early samples in %v, want at most 4", frames, 3*minEarly)
	}
}

func TestRingGrowsLazily(t *testing.T) {
	r := newRing[int](300)
	if cap(r.items) != 0 {
		t.Fatalf("a new ring holds %d slots", cap(r.items))
	}
	r.add(1)
	if c := cap(r.items); c > 8 {
		t.Errorf("one item takes %d slots", c)
	}
	for i := range 1000 {
		r.add(i)
	}
	if r.len() != 300 || cap(r.items) != 300 {
		t.Errorf("len %d cap %d, want 300 and 300", r.len(), cap(r.items))
	}
	if got := r.newestFirst(); got[0] != 999 || got[299] != 700 {
		t.Errorf("newest first = %d … %d, want 999 … 700", got[0], got[299])
	}
}

// The page draws at most MAX_POINTS samples a row: History cannot ask
// for more.
func TestHistoryCapIsWhatThePageDraws(t *testing.T) {
	js, err := os.ReadFile("assets/console.js")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`var MAX_POINTS = (\d+);`).FindSubmatch(js)
	if m == nil {
		t.Fatal("console.js has no MAX_POINTS")
	}
	if n, _ := strconv.Atoi(string(m[1])); n != maxHistory {
		t.Errorf("MAX_POINTS = %d, maxHistory = %d", n, maxHistory)
	}
	if err := (Config{History: maxHistory + 1}).Validate(); err == nil {
		t.Errorf("History %d was accepted", maxHistory+1)
	}
}

// Every request for the full snapshot of one sample gets the same
// encoding, made once.
func TestFullJSONEncodedOnce(t *testing.T) {
	r := newRig(t, rigConfig{manual: true})
	if err := r.call(t); err != nil {
		t.Fatal(err)
	}
	r.sample(t)
	_, a := get(t, r.url("")+"snapshot.json")
	_, b := get(t, r.url("")+"snapshot.json")
	if string(a) != string(b) {
		t.Error("two requests for one sample got different encodings")
	}
	f := r.console.current.Load()
	if x, y := f.fullJSON(r.console), f.fullJSON(r.console); &x[0] != &y[0] {
		t.Error("the full snapshot is encoded per request")
	}
}

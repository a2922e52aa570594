package bulkhead

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// advance moves the synctest bubble's fake clock forward by d: the calling
// goroutine blocks on a fake timer, and the bubble's clock jumps once every
// other goroutine in it is durably blocked.
func advance(d time.Duration) { <-time.After(d) }

// acquireResult is what a goroutine's Acquire returned.
type acquireResult struct {
	p   Permit
	err error
}

// goAcquire starts an Acquire in a new goroutine and, inside a synctest
// bubble, waits until it has returned or is blocked in the queue, so that
// successive calls queue in call order.
func goAcquire(ctx context.Context, b *Bulkhead) <-chan acquireResult {
	ch := make(chan acquireResult, 1)
	go func() {
		p, err := b.Acquire(ctx)
		ch <- acquireResult{p, err}
	}()
	synctest.Wait()
	return ch
}

// recv returns what ch holds now, failing the test if it holds nothing.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	default:
		t.Fatal("no value ready")
		panic("unreachable")
	}
}

func TestNewRejectsAtOnceWhenFull(t *testing.T) {
	tests := []struct {
		limit   int
		queue   int
		admit   int
		wantLim int
	}{
		{limit: 10, admit: 10, wantLim: 10},
		{limit: 1, admit: 1, wantLim: 1},
		{limit: 0, admit: 0, wantLim: 0},
		{limit: -5, admit: 0, wantLim: 0},
		{limit: 2, queue: -3, admit: 2, wantLim: 2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			var rejections []Rejection
			b := NewFromConfig(Config{
				Limit:    tt.limit,
				Queue:    tt.queue,
				OnReject: func(r Rejection) { rejections = append(rejections, r) },
			})
			ctx := context.Background()
			for i := range tt.admit {
				if _, err := b.Acquire(ctx); err != nil {
					t.Fatalf("Acquire %d: %v", i, err)
				}
			}
			_, err := b.Acquire(ctx)
			if !errors.Is(err, resilience.ErrBulkheadFull) {
				t.Fatalf("Acquire beyond the limit: err = %v, want ErrBulkheadFull", err)
			}
			want := Metrics{Limit: tt.wantLim, InFlight: tt.admit, Admitted: uint64(tt.admit), Rejected: 1}
			if got := b.Metrics(); got != want {
				t.Errorf("Metrics() = %+v, want %+v", got, want)
			}
			wantRej := []Rejection{{Reason: RejectedFull, Limit: tt.wantLim, InFlight: tt.admit}}
			if fmt.Sprint(rejections) != fmt.Sprint(wantRej) {
				t.Errorf("rejections = %+v, want %+v", rejections, wantRej)
			}
		})
	}
}

func TestZeroValueRejects(t *testing.T) {
	var b Bulkhead
	if _, ok := b.TryAcquire(); ok {
		t.Error("TryAcquire on the zero Bulkhead succeeded")
	}
	err := b.Execute(context.Background(), func(context.Context) error {
		t.Error("fn ran")
		return nil
	})
	if !errors.Is(err, resilience.ErrBulkheadFull) {
		t.Errorf("Execute: err = %v, want ErrBulkheadFull", err)
	}
}

func TestReleaseIsIdempotent(t *testing.T) {
	b := New(2)
	p1, _ := b.TryAcquire()
	p1.Release()
	p1.Release()
	p1.ReleaseWith(OutcomeDropped)
	if got := b.Metrics().InFlight; got != 0 {
		t.Fatalf("InFlight after releasing one permit three times = %d, want 0", got)
	}

	// The slot p1 had is reused: a stale release must not free it.
	p2, _ := b.TryAcquire()
	p3, _ := b.TryAcquire()
	p1.Release()
	if got := b.Metrics().InFlight; got != 2 {
		t.Fatalf("InFlight after a stale release = %d, want 2", got)
	}
	if _, ok := b.TryAcquire(); ok {
		t.Fatal("TryAcquire succeeded at the limit after a stale release")
	}
	release := p2.Release // the method value is the release function
	release()
	release()
	p3.Release()
	var zero Permit
	zero.Release()
	if got := b.Metrics().InFlight; got != 0 {
		t.Errorf("InFlight = %d, want 0", got)
	}
}

func TestTryAcquire(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		held  int
		want  bool
	}{
		{"free slot", 2, 1, true},
		{"full", 2, 2, false},
		{"zero limit", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rejected := 0
			b := NewFromConfig(Config{Limit: tt.limit, OnReject: func(Rejection) { rejected++ }})
			for range tt.held {
				b.TryAcquire()
			}
			p, ok := b.TryAcquire()
			if ok != tt.want {
				t.Fatalf("TryAcquire() ok = %v, want %v", ok, tt.want)
			}
			wantHeld, wantRejected := tt.held, 1
			if ok {
				wantHeld, wantRejected = tt.held+1, 0
			} else if p != (Permit{}) {
				t.Errorf("failed TryAcquire returned %+v, want the zero Permit", p)
			}
			m := b.Metrics()
			if m.InFlight != wantHeld || m.Rejected != uint64(wantRejected) || rejected != wantRejected {
				t.Errorf("Metrics() = %+v, listener saw %d rejections; want %d in flight, %d rejected",
					m, rejected, wantHeld, wantRejected)
			}
		})
	}
}

func TestTryAcquireDoesNotOvertakeWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewFromConfig(Config{Limit: 1, Queue: 1})
		holder, _ := b.TryAcquire()
		w := goAcquire(context.Background(), b)
		holder.Release() // the slot goes to the waiter, not to TryAcquire
		if _, ok := b.TryAcquire(); ok {
			t.Fatal("TryAcquire took the slot a waiter was queued for")
		}
		synctest.Wait()
		r := recv(t, w)
		if r.err != nil {
			t.Fatal(r.err)
		}
		r.p.Release()
	})
}

func TestAcquireWithDoneContextFails(t *testing.T) {
	b := New(1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire(done ctx) err = %v, want context.Canceled", err)
	}
	want := Metrics{Limit: 1}
	if got := b.Metrics(); got != want {
		t.Errorf("Metrics() = %+v, want the bulkhead unchanged %+v", got, want)
	}
}

func TestQueueIsFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 6
		b := NewFromConfig(Config{Limit: 1, Queue: n})
		first, _ := b.TryAcquire()
		order := make(chan int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				p, err := b.Acquire(context.Background())
				if err != nil {
					t.Errorf("waiter %d: %v", i, err)
					return
				}
				order <- i
				p.Release() // hands the slot to the next waiter
			})
			synctest.Wait() // waiter i is queued before waiter i+1 starts
		}
		if got := b.Metrics().Waiting; got != n {
			t.Fatalf("Waiting = %d, want %d", got, n)
		}
		first.Release()
		wg.Wait()
		close(order)
		want := 0
		for got := range order {
			if got != want {
				t.Fatalf("waiter %d got the slot, want waiter %d", got, want)
			}
			want++
		}
		if want != n {
			t.Fatalf("%d waiters served, want %d", want, n)
		}
	})
}

func TestQueueFullRejectsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rejections []Rejection
		b := NewFromConfig(Config{Limit: 1, Queue: 1, OnReject: func(r Rejection) { rejections = append(rejections, r) }})
		p, _ := b.TryAcquire()
		ctx := context.Background()
		waiting := goAcquire(ctx, b)
		start := time.Now()
		if _, err := b.Acquire(ctx); !errors.Is(err, resilience.ErrBulkheadFull) {
			t.Fatalf("Acquire with a full queue: err = %v, want ErrBulkheadFull", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("rejection took %v, want no wait", d)
		}
		want := []Rejection{{Reason: RejectedFull, Limit: 1, InFlight: 1, Waiting: 1}}
		if fmt.Sprint(rejections) != fmt.Sprint(want) {
			t.Errorf("rejections = %+v, want %+v", rejections, want)
		}
		p.Release()
		synctest.Wait()
		r := recv(t, waiting)
		if r.err != nil {
			t.Fatalf("queued Acquire: %v", r.err)
		}
		r.p.Release()
	})
}

func TestMaxWaitBoundsTheWait(t *testing.T) {
	const maxWait = 50 * time.Millisecond
	tests := []struct {
		name      string
		releaseAt time.Duration // when the holder releases; 0 for never
		wantErr   error
		wantWait  time.Duration
	}{
		{"slot frees in time", 30 * time.Millisecond, nil, 30 * time.Millisecond},
		{"slot never frees", 0, resilience.ErrBulkheadFull, maxWait},
		{"slot frees too late", 80 * time.Millisecond, resilience.ErrBulkheadFull, maxWait},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var rejections []Rejection
				b := NewFromConfig(Config{Limit: 1, Queue: 1, MaxWait: maxWait,
					OnReject: func(r Rejection) { rejections = append(rejections, r) }})
				holder, _ := b.TryAcquire()
				var wg sync.WaitGroup
				if tt.releaseAt > 0 {
					wg.Go(func() {
						advance(tt.releaseAt)
						holder.Release()
					})
				}
				start := time.Now()
				p, err := b.Acquire(context.Background())
				if waited := time.Since(start); waited != tt.wantWait {
					t.Errorf("Acquire returned after %v, want %v", waited, tt.wantWait)
				}
				if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
					t.Fatalf("Acquire err = %v, want %v", err, tt.wantErr)
				}
				p.Release()
				wg.Wait()
				holder.Release()
				var want []Rejection
				if tt.wantErr != nil {
					want = []Rejection{{Reason: RejectedMaxWait, Limit: 1, InFlight: 1, Waited: maxWait}}
				}
				if fmt.Sprint(rejections) != fmt.Sprint(want) {
					t.Errorf("rejections = %+v, want %+v", rejections, want)
				}
				if m := b.Metrics(); m.InFlight != 0 || m.Waiting != 0 {
					t.Errorf("Metrics() = %+v, want nothing in flight or waiting", m)
				}
			})
		})
	}
}

func TestCancelWhileWaitingLeavesBulkheadUnchanged(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancel", func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), time.Second)
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := NewFromConfig(Config{Limit: 1, Queue: 3})
				holder, _ := b.TryAcquire()
				ctx, cancel := tt.ctx()
				defer cancel()
				a := goAcquire(ctx, b)
				second := goAcquire(context.Background(), b)
				before := b.Metrics()

				if tt.want == context.Canceled {
					cancel()
				} else {
					advance(time.Second)
				}
				synctest.Wait()
				if r := recv(t, a); !errors.Is(r.err, tt.want) {
					t.Fatalf("cancelled waiter: err = %v, want %v", r.err, tt.want)
				}
				after := b.Metrics()
				before.Waiting--
				before.Canceled++
				if after != before {
					t.Fatalf("Metrics() after the cancellation = %+v, want %+v", after, before)
				}

				holder.Release()
				synctest.Wait()
				r := recv(t, second)
				if r.err != nil {
					t.Fatalf("second waiter: %v", r.err)
				}
				r.p.Release()
				if m := b.Metrics(); m.InFlight != 0 || m.Waiting != 0 || m.Admitted != 2 {
					t.Errorf("Metrics() = %+v, want 2 admitted and nothing left", m)
				}
			})
		})
	}
}

// TestCancelRacingGrantHandsSlotOn covers the race x/sync/semaphore
// handles: the slot is handed to a waiter at the moment its ctx is done.
// The waiter must report ctx.Err() and the slot must go to the next waiter.
// Which of the two select branches sees it first is up to the runtime, so
// the case runs repeatedly to cover both.
func TestCancelRacingGrantHandsSlotOn(t *testing.T) {
	for i := range 50 {
		synctest.Test(t, func(t *testing.T) {
			b := NewFromConfig(Config{Limit: 1, Queue: 2})
			holder, _ := b.TryAcquire()
			ctx, cancel := context.WithCancel(context.Background())
			a := goAcquire(ctx, b)
			next := goAcquire(context.Background(), b)

			cancel()         // a is runnable but has not run yet...
			holder.Release() // ...when the slot is handed to it.
			synctest.Wait()

			if r := recv(t, a); !errors.Is(r.err, context.Canceled) {
				t.Fatalf("run %d: waiter cancelled at the grant: err = %v, want context.Canceled", i, r.err)
			}
			r := recv(t, next)
			if r.err != nil {
				t.Fatalf("run %d: next waiter: %v", i, r.err)
			}
			want := Metrics{Limit: 1, InFlight: 1, Admitted: 2, Canceled: 1}
			if got := b.Metrics(); got != want {
				t.Fatalf("run %d: Metrics() = %+v, want %+v", i, got, want)
			}
			r.p.Release()
		})
	}
}

// TestMaxWaitRacingGrant covers a slot freed at the moment the maximum wait
// runs out: either outcome is fine, but the books must match it.
func TestMaxWaitRacingGrant(t *testing.T) {
	for i := range 50 {
		synctest.Test(t, func(t *testing.T) {
			const maxWait = 10 * time.Millisecond
			b := NewFromConfig(Config{Limit: 1, Queue: 1, MaxWait: maxWait})
			holder, _ := b.TryAcquire()
			a := goAcquire(context.Background(), b)
			advance(maxWait) // the timer and this goroutine wake together
			holder.Release()
			synctest.Wait()
			r := recv(t, a)
			m := b.Metrics()
			switch {
			case r.err == nil:
				if m.InFlight != 1 || m.Admitted != 2 || m.Rejected != 0 {
					t.Fatalf("run %d: waiter admitted but Metrics() = %+v", i, m)
				}
			case errors.Is(r.err, resilience.ErrBulkheadFull):
				if m.InFlight != 0 || m.Admitted != 1 || m.Rejected != 1 {
					t.Fatalf("run %d: waiter rejected but Metrics() = %+v", i, m)
				}
			default:
				t.Fatalf("run %d: err = %v", i, r.err)
			}
			if m.Waiting != 0 {
				t.Fatalf("run %d: Waiting = %d, want 0", i, m.Waiting)
			}
			r.p.Release()
		})
	}
}

func TestExecute(t *testing.T) {
	errApp := errors.New("app")
	tests := []struct {
		name    string
		fnErr   error
		wantOut Outcome
	}{
		{"success", nil, OutcomeSuccess},
		{"application error", errApp, OutcomeSuccess},
		{"cancelled", fmt.Errorf("call: %w", context.Canceled), OutcomeIgnored},
		{"deadline", context.DeadlineExceeded, OutcomeDropped},
		{"timeout error", &resilience.TimeoutError{After: time.Second}, OutcomeDropped},
		{"shed downstream", fmt.Errorf("downstream: %w", resilience.ErrBulkheadFull), OutcomeDropped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			b := NewFromConfig(Config{Limit: 1, Strategy: rec})
			type key struct{}
			ctx := context.WithValue(context.Background(), key{}, "v")
			var ran bool
			err := b.Execute(ctx, func(got context.Context) error {
				ran = true
				if got.Value(key{}) != "v" {
					t.Error("fn did not get the caller's ctx")
				}
				if m := b.Metrics(); m.InFlight != 1 {
					t.Errorf("InFlight inside fn = %d, want 1", m.InFlight)
				}
				return tt.fnErr
			})
			if !ran {
				t.Fatal("fn did not run")
			}
			if err != tt.fnErr {
				t.Errorf("Execute err = %v, want fn's error %v", err, tt.fnErr)
			}
			if got := OutcomeOf(tt.fnErr); got != tt.wantOut {
				t.Errorf("OutcomeOf(%v) = %v, want %v", tt.fnErr, got, tt.wantOut)
			}
			var want []Sample
			if tt.wantOut != OutcomeIgnored {
				want = []Sample{{InFlight: 1, Dropped: tt.wantOut == OutcomeDropped}}
			}
			if got := rec.stripped(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("strategy samples = %+v, want %+v", got, want)
			}
			if m := b.Metrics(); m.InFlight != 0 {
				t.Errorf("InFlight after Execute = %d, want 0", m.InFlight)
			}
		})
	}
}

func TestExecuteRejectedDoesNotRunFn(t *testing.T) {
	b := New(1)
	p, _ := b.TryAcquire()
	defer p.Release()
	err := b.Execute(context.Background(), func(context.Context) error {
		t.Error("fn ran while the bulkhead was full")
		return nil
	})
	if !errors.Is(err, resilience.ErrBulkheadFull) {
		t.Errorf("err = %v, want ErrBulkheadFull", err)
	}
}

func TestExecuteReleasesOnPanic(t *testing.T) {
	rec := &recorder{}
	b := NewFromConfig(Config{Limit: 1, Strategy: rec})
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the panic to go on", r)
			}
		}()
		_ = b.Execute(context.Background(), func(context.Context) error { panic("boom") })
	}()
	if m := b.Metrics(); m.InFlight != 0 {
		t.Errorf("InFlight after a panic = %d, want 0", m.InFlight)
	}
	if len(rec.samples) != 0 {
		t.Errorf("a panicking execution fed the strategy %+v, want nothing (ignored)", rec.samples)
	}
}

func TestClassify(t *testing.T) {
	rec := &recorder{}
	b := NewFromConfig(Config{Limit: 1, Strategy: rec, Classify: func(err error) Outcome {
		if err != nil {
			return OutcomeDropped
		}
		return OutcomeIgnored
	}})
	_ = b.Execute(context.Background(), func(context.Context) error { return nil })
	_ = b.Execute(context.Background(), func(context.Context) error { return errors.New("x") })
	want := []Sample{{InFlight: 1, Dropped: true}}
	if got := rec.stripped(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("samples = %+v, want %+v", got, want)
	}
}

func TestAdaptiveSamplesAndOnLimitChange(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	rec := &recorder{limits: []int{5, 1, 3}}
	type change struct{ old, new int }
	var changes []change
	var b *Bulkhead
	b = newWithClock(Config{Limit: 2, Strategy: rec, OnLimitChange: func(o, n int) {
		// Hooks run without the lock: taking it must not block.
		if !b.mu.TryLock() {
			t.Error("OnLimitChange called with the lock held")
		} else {
			b.mu.Unlock()
		}
		changes = append(changes, change{o, n})
	}}, clk.now)
	if rec.initial != 2 {
		t.Errorf("Init got %d, want the Config's limit 2", rec.initial)
	}
	if got := b.Metrics().Limit; got != 7 {
		t.Fatalf("limit after Init = %d, want 7 (what Init returned)", got)
	}
	p1, _ := b.TryAcquire()
	clk.advance(10 * time.Millisecond)
	p2, _ := b.TryAcquire()
	clk.advance(5 * time.Millisecond)
	p1.ReleaseWith(OutcomeDropped) // Update returns 5
	p2.Release()                   // Update returns 1
	p3, _ := b.TryAcquire()
	p3.ReleaseWith(OutcomeIgnored) // no sample
	p4, _ := b.TryAcquire()
	clk.advance(time.Millisecond)
	p4.Release() // Update returns 3; a returned limit is never below 1

	t0 := time.Unix(1000, 0)
	want := []Sample{
		{RTT: 15 * time.Millisecond, InFlight: 1, Dropped: true, Now: t0.Add(15 * time.Millisecond)},
		{RTT: 5 * time.Millisecond, InFlight: 2, Now: t0.Add(15 * time.Millisecond)},
		{RTT: time.Millisecond, InFlight: 1, Now: t0.Add(16 * time.Millisecond)},
	}
	if fmt.Sprint(rec.samples) != fmt.Sprint(want) {
		t.Errorf("samples =\n%+v\nwant\n%+v", rec.samples, want)
	}
	wantChanges := []change{{7, 5}, {5, 1}, {1, 3}}
	if fmt.Sprint(changes) != fmt.Sprint(wantChanges) {
		t.Errorf("limit changes = %v, want %v", changes, wantChanges)
	}
}

func TestAdaptiveLimitClampedToOne(t *testing.T) {
	rec := &recorder{initLimit: -4, limits: []int{0}}
	b := NewFromConfig(Config{Limit: 3, Strategy: rec})
	if got := b.Metrics().Limit; got != 1 {
		t.Fatalf("limit after Init returned -4 = %d, want 1", got)
	}
	p, _ := b.TryAcquire()
	p.Release()
	if got := b.Metrics().Limit; got != 1 {
		t.Fatalf("limit after Update returned 0 = %d, want 1", got)
	}
}

func TestRaisedLimitWakesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{initLimit: 1, limits: []int{3}}
		b := NewFromConfig(Config{Limit: 1, Strategy: rec, Queue: 5})
		holder, _ := b.TryAcquire()
		x := goAcquire(context.Background(), b)
		y := goAcquire(context.Background(), b)
		z := goAcquire(context.Background(), b)
		holder.Release() // the limit becomes 3: the three waiters get in
		synctest.Wait()
		for _, ch := range []<-chan acquireResult{x, y, z} {
			r := recv(t, ch)
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer r.p.Release()
		}
		if m := b.Metrics(); m.InFlight != 3 || m.Waiting != 0 {
			t.Errorf("Metrics() = %+v, want 3 in flight, none waiting", m)
		}
	})
}

func TestStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{OutcomeSuccess.String(), "success"},
		{OutcomeDropped.String(), "dropped"},
		{OutcomeIgnored.String(), "ignored"},
		{Outcome(9).String(), "Outcome(9)"},
		{RejectedFull.String(), "full"},
		{RejectedMaxWait.String(), "max_wait"},
		{RejectReason(7).String(), "RejectReason(7)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// recorder is a Strategy that records its samples and returns scripted
// limits.
type recorder struct {
	initial   int
	initLimit int   // what Init returns; 0 means 7
	limits    []int // what successive Updates return; then the last one
	samples   []Sample
}

func (r *recorder) Init(initial int) int {
	r.initial = initial
	if r.initLimit != 0 {
		return r.initLimit
	}
	return 7
}

func (r *recorder) Update(s Sample) int {
	r.samples = append(r.samples, s)
	if len(r.limits) == 0 {
		return 7
	}
	l := r.limits[0]
	if len(r.limits) > 1 {
		r.limits = r.limits[1:]
	}
	return l
}

// stripped returns the samples without their times, for tests that run on
// the real clock.
func (r *recorder) stripped() []Sample {
	var out []Sample
	for _, s := range r.samples {
		out = append(out, Sample{InFlight: s.InFlight, Dropped: s.Dropped})
	}
	return out
}

// fakeClock is a manual clock for newWithClock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

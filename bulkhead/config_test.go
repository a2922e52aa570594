package bulkhead

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

func TestBulkheadConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // fields reported, in order
	}{
		{"zero config is valid", Config{}, nil},
		{"everything set is valid", Config{Limit: 10, Queue: 5, MaxWait: time.Second, Strategy: NewAIMD(AIMDConfig{}),
			Classify: OutcomeOf, OnReject: func(Rejection) {}, OnLimitChange: func(int, int) {}}, nil},
		{"negative limit", Config{Limit: -1}, []string{"Limit"}},
		{"negative queue", Config{Limit: 1, Queue: -1}, []string{"Queue"}},
		{"negative max wait", Config{Limit: 1, MaxWait: -time.Nanosecond}, []string{"MaxWait"}},
		{"every problem at once", Config{Limit: math.MinInt, Queue: -2, MaxWait: -time.Hour}, []string{"Limit", "Queue", "MaxWait"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			fes := resilience.FieldErrors(err)
			if (err == nil) != (len(tt.want) == 0) || len(fes) != len(tt.want) {
				t.Fatalf("Validate = %v (%d field errors), want fields %v", err, len(fes), tt.want)
			}
			for i, fe := range fes {
				if fe.Field != tt.want[i] || fe.Reason == "" {
					t.Errorf("problem %d: %+v, want field %s with a reason", i, fe, tt.want[i])
				}
			}
			if len(tt.want) > 0 {
				if _, ok := errors.AsType[*resilience.FieldError](err); !ok {
					t.Error("errors.As finds no *resilience.FieldError")
				}
			}
		})
	}
}

// TestNewFromConfigClamps checks the clamping Validate's problems stand
// for: a negative Limit admits nothing, a negative Queue is no queue, and a
// negative MaxWait is no bound but the caller's ctx.
func TestNewFromConfigClamps(t *testing.T) {
	if _, ok := NewFromConfig(Config{Limit: -3}).TryAcquire(); ok {
		t.Error("a negative Limit admitted a call")
	}
	if _, err := NewFromConfig(Config{}).Acquire(context.Background()); !errors.Is(err, resilience.ErrBulkheadFull) {
		t.Errorf("the zero Config: Acquire = %v, want ErrBulkheadFull", err)
	}
	synctest.Test(t, func(t *testing.T) {
		b := NewFromConfig(Config{Limit: 1, Queue: 1, MaxWait: -time.Second})
		holder, _ := b.TryAcquire()
		ch := goAcquire(context.Background(), b)
		time.Sleep(time.Hour) // synctest's clock: a bound would have run out
		synctest.Wait()
		select {
		case r := <-ch:
			t.Fatalf("a negative MaxWait bounded the wait: Acquire = %v", r.err)
		default:
		}
		holder.Release()
		synctest.Wait()
		if r := recv(t, ch); r.err != nil {
			t.Fatalf("Acquire after the release = %v, want a permit", r.err)
		}
	})
}

// TestNewIsShorthand checks that New(limit) is NewFromConfig(Config{Limit:
// limit}): the same limit, no queue, no strategy.
func TestNewIsShorthand(t *testing.T) {
	for _, limit := range []int{-1, 0, 1, 7} {
		a, b := New(limit), NewFromConfig(Config{Limit: limit})
		if a.Metrics() != b.Metrics() || a.maxQueue != 0 || a.maxWait != 0 || a.strategy != nil {
			t.Errorf("New(%d): %+v, queue %d, wait %v; NewFromConfig: %+v", limit, a.Metrics(), a.maxQueue, a.maxWait, b.Metrics())
		}
	}
}

// TestConfigCopied checks that the bulkhead keeps the Config it was built
// with: changing the struct afterwards changes nothing.
func TestConfigCopied(t *testing.T) {
	cfg := Config{Limit: 1}
	b := NewFromConfig(cfg)
	cfg.Limit, cfg.Queue = 5, 5
	cfg.OnReject = func(Rejection) { t.Error("a hook set after NewFromConfig was called") }
	b.TryAcquire()
	if _, ok := b.TryAcquire(); ok || b.Metrics().Limit != 1 {
		t.Errorf("limit %d after changing the Config, want 1", b.Metrics().Limit)
	}
}

// TestOnRejectOutsideLock checks that OnReject runs on the rejected
// caller's goroutine, without the bulkhead's lock, for every kind of
// rejection, so that it may call the bulkhead.
func TestOnRejectOutsideLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b *Bulkhead
		var mu sync.Mutex // hooks run on the callers' goroutines
		var reasons []RejectReason
		b = NewFromConfig(Config{Limit: 1, Queue: 1, MaxWait: time.Second, OnReject: func(r Rejection) {
			if !b.mu.TryLock() {
				t.Error("OnReject called with the lock held")
			} else {
				b.mu.Unlock()
			}
			_ = b.Metrics() // calling back into the bulkhead must not deadlock
			mu.Lock()
			defer mu.Unlock()
			reasons = append(reasons, r.Reason)
		}})
		holder, _ := b.TryAcquire()
		waiter := goAcquire(context.Background(), b) // queued
		if _, ok := b.TryAcquire(); ok {             // RejectedFull by TryAcquire
			t.Fatal("TryAcquire got a taken slot")
		}
		if _, err := b.Acquire(context.Background()); err == nil { // RejectedFull: queue full
			t.Fatal("Acquire got in with the queue full")
		}
		time.Sleep(time.Second) // the waiter's MaxWait runs out
		synctest.Wait()
		if r := recv(t, waiter); !errors.Is(r.err, resilience.ErrBulkheadFull) {
			t.Fatalf("waiter: %v, want ErrBulkheadFull", r.err)
		}
		holder.Release()
		mu.Lock()
		defer mu.Unlock()
		want := []RejectReason{RejectedFull, RejectedFull, RejectedMaxWait}
		if len(reasons) != len(want) || reasons[0] != want[0] || reasons[1] != want[1] || reasons[2] != want[2] {
			t.Errorf("OnReject reasons = %v, want %v", reasons, want)
		}
	})
}

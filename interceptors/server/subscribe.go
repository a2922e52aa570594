package server

import (
	"context"
	"sync"
	"sync/atomic"
)

// hub is the one Observer a Server's stages report to: Config.Observer,
// then the subscribers, in order.
type hub struct {
	cfg  func(context.Context, Event) // Config.Observer.OnEvent; nil: none
	subs atomic.Pointer[[]func(context.Context, Event)]
	mu   sync.Mutex // serialises changes of subs
}

// emit tells every observer about e. It takes no lock.
func (h *hub) emit(ctx context.Context, e Event) {
	if h.cfg != nil {
		h.cfg(ctx, e)
	}
	if p := h.subs.Load(); p != nil {
		for _, f := range *p {
			f(ctx, e)
		}
	}
}

// listening reports whether some observer would hear an event.
func (h *hub) listening() bool { return h.cfg != nil || h.subs.Load() != nil }

// Subscribe adds o to the observers of the server's events, after
// Config.Observer and the observers subscribed before it, until cancel is
// called; cancel is idempotent and safe for concurrent use. Several
// observers may be subscribed at once, for example a console and a test's
// recorder, without changing the server's configuration. An Observer whose
// OnEvent is nil changes nothing.
//
// Events that happen after Subscribe returns reach o, and none after
// cancel returns but those already being delivered. o's hook runs as
// Config.Observer's does: synchronously on the goroutine of the call,
// never under a lock of the Server's. With nobody listening (no
// Config.Observer, no subscriber), an event costs a function call and one
// atomic load, and allocates nothing.
func (s *Server) Subscribe(o Observer) (cancel func()) {
	f := o.OnEvent
	if f == nil {
		return func() {}
	}
	id := new(int) // identifies this subscription: f may be subscribed twice
	s.hub.mu.Lock()
	s.subs = append(s.subs[:len(s.subs):len(s.subs)], subscription{id: id, f: f})
	s.publishLocked()
	s.hub.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.hub.mu.Lock()
			defer s.hub.mu.Unlock()
			kept := make([]subscription, 0, len(s.subs))
			for _, x := range s.subs {
				if x.id != id {
					kept = append(kept, x)
				}
			}
			s.subs = kept
			s.publishLocked()
		})
	}
}

// subscription is one call of Subscribe.
type subscription struct {
	id *int
	f  func(context.Context, Event)
}

// publishLocked makes the hub call the current subscribers. s.hub.mu is
// held.
func (s *Server) publishLocked() {
	if len(s.subs) == 0 {
		s.hub.subs.Store(nil)
		return
	}
	fs := make([]func(context.Context, Event), len(s.subs))
	for i, x := range s.subs {
		fs[i] = x.f
	}
	s.hub.subs.Store(&fs)
}

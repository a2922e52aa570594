package console

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
)

// Console is a live, read-only page of the state of gRPC pipelines: an
// [http.Handler] to mount on an admin port, as net/http/pprof is. Register
// the pipelines with [Console.AddClient] and [Console.AddServer]; a
// goroutine samples them every Config.Interval and keeps a bounded history
// per row, the latest events and the latest retried calls.
//
// Registering a pipeline subscribes to its events; the package
// documentation says exactly what that costs the pipeline's calls.
// Sampling reads the pipelines' snapshots, never their locks for long.
// Memory is bounded by the Config: rows, samples, events and retried calls
// are all capped.
//
// A Console is safe for concurrent use. Close stops its goroutine and ends
// the open event streams.
type Console struct {
	cfg Config
	now func() time.Time

	mu      sync.Mutex
	pipes   []*pipeline // in registration order
	events  *ring[Event]
	retried *ring[RetriedCall]

	// histMu guards the rows' histories: the sampler appends to them and
	// a request for the full snapshot copies them.
	histMu sync.Mutex

	current atomic.Pointer[frame]
	streams atomic.Int64  // event streams being served
	wake    chan struct{} // asks the sampler for an early sample
	done    chan struct{}
	closing sync.Once
	wg      sync.WaitGroup
}

// New returns a Console configured by cfg and starts its sampler. It
// returns cfg.Validate's error when cfg is invalid.
func New(cfg Config) (*Console, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newConsole(cfg, time.Now, nil), nil
}

// newConsole is New with a clock and, when tick is not nil, a channel that
// drives the samples instead of a ticker, for tests.
func newConsole(cfg Config, now func() time.Time, tick <-chan time.Time) *Console {
	cfg = cfg.withDefaults()
	c := &Console{
		cfg:     cfg,
		now:     now,
		events:  newRing[Event](cfg.MaxEvents),
		retried: newRing[RetriedCall](cfg.MaxRetried),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	c.publish(c.sample(false))
	c.wg.Go(func() { c.run(tick) })
	return c
}

// AddClient registers a client pipeline under name and subscribes to its
// events; remove unregisters it and cancels the subscription (calling it
// again does nothing). Names need not be unique; the page shows at most
// MaxNameLen bytes of each. After Close it registers nothing.
func (c *Console) AddClient(name string, client *interceptors.Client) (remove func()) {
	p := newPipeline(c, "client", name)
	p.client = client
	p.cancel = client.Subscribe(p.clientObserver())
	return c.add(p)
}

// AddServer registers a server pipeline under name and subscribes to its
// events; remove unregisters it and cancels the subscription (calling it
// again does nothing). After Close it registers nothing.
func (c *Console) AddServer(name string, srv *server.Server) (remove func()) {
	p := newPipeline(c, "server", name)
	p.server = srv
	p.cancel = srv.Subscribe(p.serverObserver())
	return c.add(p)
}

func (c *Console) add(p *pipeline) (remove func()) {
	c.mu.Lock()
	if c.closed() {
		// Close has cancelled the subscriptions it knew of, or is about
		// to (it reads the list after closing done, under mu).
		c.mu.Unlock()
		p.cancel()
		return func() {}
	}
	c.pipes = append(c.pipes, p)
	c.mu.Unlock()
	c.poke()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.cancel()
			c.mu.Lock()
			c.pipes = slices.DeleteFunc(c.pipes, func(q *pipeline) bool { return q == p })
			c.mu.Unlock()
			c.poke()
		})
	}
}

// Close stops the sampler, ends the event streams being served and
// cancels every subscription. The handler then serves the last snapshot.
// It is idempotent and returns nil.
func (c *Console) Close() error {
	c.closing.Do(func() {
		close(c.done)
		c.wg.Wait()
		c.mu.Lock()
		pipes := slices.Clone(c.pipes)
		c.mu.Unlock()
		for _, p := range pipes {
			p.cancel()
		}
	})
	return nil
}

// closed reports whether Close was called.
func (c *Console) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Snapshot returns the latest sample, with every row's history.
func (c *Console) Snapshot() Snapshot {
	return c.current.Load().withHistory(c)
}

// poke asks the sampler for an early sample, without blocking.
func (c *Console) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// minEarly is the least time between an early sample and the one before:
// a burst of transitions costs one sample, and the page shows a
// transition within minEarly plus the time to send it.
const minEarly = 250 * time.Millisecond

// run samples every Interval, or on each tick when tick is not nil, and
// early when poked, until Close.
func (c *Console) run(tick <-chan time.Time) {
	if tick == nil {
		t := time.NewTicker(c.cfg.Interval)
		defer t.Stop()
		tick = t.C
	}
	var early *time.Timer
	var earlyC <-chan time.Time
	defer func() {
		if early != nil {
			early.Stop()
		}
	}()
	last := c.now()
	for {
		select {
		case <-c.done:
			return
		case <-tick:
			c.publish(c.sample(true))
			last = c.now()
		case <-c.wake:
			if earlyC != nil {
				continue // an early sample is due already
			}
			wait := minEarly - c.now().Sub(last)
			if wait <= 0 {
				c.publish(c.sample(false))
				last = c.now()
				continue
			}
			if early == nil {
				early = time.NewTimer(wait)
			} else {
				early.Reset(wait)
			}
			earlyC = early.C
		case <-earlyC:
			earlyC = nil
			c.publish(c.sample(false))
			last = c.now()
		}
	}
}

// sample reads every pipeline. A regular sample (one per Interval) reads
// each pipeline's snapshot, moves the rates' reference point, adds a point
// to each history and merges the frequent events of the interval into the
// event list. An early one reads only the pipelines registered since the
// last sample; the others keep their latest sample with the breaker
// transitions heard since applied, and the event list is brought up to
// date.
func (c *Console) sample(regular bool) Snapshot {
	now := c.now()
	c.mu.Lock()
	pipes := slices.Clone(c.pipes)
	c.mu.Unlock()

	snap := Snapshot{
		Time:       now,
		Title:      c.cfg.Title,
		IntervalMS: c.cfg.Interval.Milliseconds(),
		Pipelines:  make([]Pipeline, 0, len(pipes)),
	}
	for _, p := range pipes {
		if regular || !p.sampled {
			snap.Pipelines = append(snap.Pipelines, p.sample(now, regular))
		} else {
			snap.Pipelines = append(snap.Pipelines, p.refresh(now))
		}
	}
	slices.SortStableFunc(snap.Pipelines, func(a, b Pipeline) int {
		if a.Trouble != b.Trouble {
			return cmp.Compare(b.Trouble, a.Trouble)
		}
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Kind, b.Kind))
	})
	c.mu.Lock()
	snap.Events = c.events.newestFirst()
	snap.Retried = c.retried.newestFirst()
	c.mu.Unlock()
	return snap
}

// addEvent records e in the event list.
func (c *Console) addEvent(e Event) {
	c.mu.Lock()
	c.events.add(e)
	c.mu.Unlock()
}

// addRetried records r in the list of retried calls.
func (c *Console) addRetried(r RetriedCall) {
	c.mu.Lock()
	c.retried.add(r)
	c.mu.Unlock()
}

// frame is one published snapshot; its JSON forms are made when first
// asked for, once, and shared by every request. next is closed once a
// newer frame replaced it.
type frame struct {
	snap Snapshot
	next chan struct{}

	leanOnce sync.Once
	lean     []byte
	fullOnce sync.Once
	full     []byte
}

func (c *Console) publish(s Snapshot) {
	f := &frame{snap: s, next: make(chan struct{})}
	if old := c.current.Swap(f); old != nil {
		close(old.next)
	}
}

// withHistory returns the frame's snapshot with a copy of each row's
// history attached.
func (f *frame) withHistory(c *Console) Snapshot {
	s := f.snap
	s.Pipelines = slices.Clone(s.Pipelines)
	c.histMu.Lock()
	defer c.histMu.Unlock()
	for i := range s.Pipelines {
		pl := &s.Pipelines[i]
		pl.Rows = slices.Clone(pl.Rows)
		for j := range pl.Rows {
			if h := pl.Rows[j].hist; h != nil {
				pl.Rows[j].History = exportHistory(h)
			}
		}
	}
	return s
}

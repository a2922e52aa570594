package server

import (
	"context"
	"errors"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
)

// Partition says how a server bulkhead splits calls into partitions, each
// with its own limit, and how the rate limit keys calls, each key with its
// own quota ([RateLimitConfig.PartitionBy]). The constants' comments speak
// of the bulkhead; for the rate limit, read "quota" for "bulkhead", and
// [RateLimitConfig.Header] and [RateLimitConfig.KeyFunc] for the
// bulkhead's.
type Partition uint8

const (
	// PartitionNone puts every call into one shared bulkhead: the server's
	// whole capacity. It is the default.
	PartitionNone Partition = iota
	// PartitionByMethod gives each full method name its own bulkhead.
	PartitionByMethod
	// PartitionByHeader gives each value of the request metadata header
	// [BulkheadConfig.Header] (a caller, a tenant) its own bulkhead. Calls
	// without the header share the overflow partition.
	PartitionByHeader
	// PartitionByFunc gives each key returned by [BulkheadConfig.KeyFunc]
	// its own bulkhead. Calls whose key is "" share the overflow partition.
	PartitionByFunc
	// PartitionByPeer gives each peer IP address (without the port: every
	// connection of one host shares it) its own bulkhead. A peer whose
	// address is not an IP address and port, such as a Unix socket, is
	// keyed by its whole address.
	PartitionByPeer
)

var partitionNames = [...]string{"none", "method", "header", "func", "peer"}

// String returns "none", "method", "header", "func" or "peer".
func (p Partition) String() string {
	if int(p) < len(partitionNames) {
		return partitionNames[p]
	}
	return "Partition(" + strconv.Itoa(int(p)) + ")"
}

// DefaultMaxPartitions is the cap on keyed partitions when
// [BulkheadConfig.MaxPartitions] is zero.
const DefaultMaxPartitions = 1024

// DefaultPushbackDelay is the retry delay a shed call suggests when
// [BulkheadConfig.PushbackDelay] is zero.
const DefaultPushbackDelay = 100 * time.Millisecond

// BulkheadConfig configures a server bulkhead. The zero value is a disabled
// bulkhead that admits every call.
type BulkheadConfig struct {
	// Limit is how many calls each partition runs at once; with an
	// adaptive strategy, the initial limit. The default, zero, disables
	// the bulkhead and every other field must then be zero. Must not be
	// negative.
	Limit int
	// PartitionBy says how calls are split into partitions. The default is
	// PartitionNone, one bulkhead for every call.
	PartitionBy Partition
	// Header is the request metadata key whose value is the partition key
	// of PartitionByHeader, such as "x-caller-id". Required for
	// PartitionByHeader and must be empty otherwise. Metadata keys are
	// case-insensitive; it is matched in lower case. Values longer than
	// MaxHeaderKeyLength bytes share the overflow partition, so that
	// neither the number nor the size of kept keys depends on callers.
	Header string
	// KeyFunc returns the partition key of a call for PartitionByFunc. It
	// must be safe for concurrent use and fast; it runs on every call.
	// Required for PartitionByFunc and must be nil otherwise.
	KeyFunc func(ctx context.Context, fullMethod string) string
	// MaxPartitions caps the number of keyed partitions, so that untrusted
	// keys cannot grow memory without bound. A new key beyond the cap takes
	// the place of an idle partition ([EventPartitionEvicted]) or, when
	// every partition is busy, shares one overflow partition
	// ([EventPartitionOverflow]). The default, zero, is
	// DefaultMaxPartitions. Must not be negative.
	MaxPartitions int
	// Queue lets up to this many calls per partition wait for a slot, in
	// FIFO order, instead of being shed at once. The default, zero, sheds
	// at once. Must not be negative.
	Queue int
	// MaxWait bounds how long a queued call waits before it is shed; the
	// call's deadline bounds it as well. The default, zero, is no bound but
	// the deadline. Must not be negative, and needs Queue.
	MaxWait time.Duration
	// Adaptive, when set, is called once per partition to build the
	// strategy that adapts that partition's limit, such as
	//
	//	func() bulkhead.Strategy { return bulkhead.NewAIMD(bulkhead.AIMDConfig{}) }
	//
	// or, to shed on CPU usage (see "CPU-aware shedding" in the package
	// documentation), with Limit the limit while the CPU has headroom:
	//
	//	func() bulkhead.Strategy { return bulkhead.NewCPU(bulkhead.CPUConfig{}) }
	//
	// Each call must return a new strategy. The default, nil, keeps the
	// limit fixed.
	Adaptive func() bulkhead.Strategy
	// Classify turns the error the rest of the chain returned into the
	// outcome reported to the adaptive strategy. The default, nil, is
	// [OutcomeOf]. It must be safe for concurrent use.
	Classify func(ctx context.Context, err error) bulkhead.Outcome
	// PushbackDelay is the delay a shed call asks the client to wait before
	// retrying, sent as a google.rpc.RetryInfo detail and as the
	// grpc-retry-pushback-ms trailer (rounded up to whole milliseconds).
	// The default, zero, is DefaultPushbackDelay. Must not be negative.
	PushbackDelay time.Duration
	// NoPushback sends neither RetryInfo nor the trailer: the client's
	// default policy then does not retry RESOURCE_EXHAUSTED. The default,
	// false, sends both.
	NoPushback bool
	// ShowKeys shows the partition keys as they are wherever they leave
	// the bulkhead: in events ([Event].Key), and so in logs, spans and
	// metrics, and in [Server.Snapshot]. The default, false, shows each
	// key as a keyed hash, because keys taken from a header, a peer
	// address or a KeyFunc may be secrets or identify people; see
	// "Caller keys" in the package documentation. Method names
	// (PartitionByMethod) are always shown as they are.
	ShowKeys bool
}

// Validate reports every field that is out of range or inconsistent with
// another, each as a *[resilience.FieldError] whose Field is the field's
// name ("Limit", "MaxWait"), joined with [errors.Join]. The zero value is
// valid.
func (c BulkheadConfig) Validate() error {
	var p problems
	if c.Limit < 0 {
		p.add("Limit", c.Limit, "must not be negative (0 disables the bulkhead)")
	}
	p.partitioning(c.PartitionBy, c.Header, c.KeyFunc, c.MaxPartitions)
	if c.Queue < 0 {
		p.add("Queue", c.Queue, "must not be negative")
	}
	switch {
	case c.MaxWait < 0:
		p.add("MaxWait", c.MaxWait, "must not be negative")
	case c.MaxWait > 0 && c.Queue <= 0:
		p.add("MaxWait", c.MaxWait, "needs Queue above 0")
	}
	switch {
	case c.PushbackDelay < 0:
		p.add("PushbackDelay", c.PushbackDelay, "must not be negative")
	case c.PushbackDelay > 0 && c.NoPushback:
		p.add("PushbackDelay", c.PushbackDelay, "set but NoPushback is true")
	}
	if c.Limit == 0 {
		const disabled = "set but Limit is 0, which disables the bulkhead"
		if c.PartitionBy != PartitionNone && c.PartitionBy <= PartitionByPeer {
			p.add("PartitionBy", c.PartitionBy, disabled)
		}
		if c.MaxPartitions > 0 {
			p.add("MaxPartitions", c.MaxPartitions, disabled)
		}
		if c.Queue > 0 {
			p.add("Queue", c.Queue, disabled)
		}
		if c.Adaptive != nil {
			p.add("Adaptive", "set", disabled)
		}
		if c.ShowKeys {
			p.add("ShowKeys", c.ShowKeys, disabled)
		}
	}
	return p.err()
}

// OutcomeOf is the default [BulkheadConfig.Classify]: how a call ended, for
// an adaptive limit.
//   - A call whose ctx was cancelled (the client gave up) is
//     [bulkhead.OutcomeIgnored], whatever it returned, and so is a
//     CANCELLED status.
//   - A call whose ctx's deadline passed is [bulkhead.OutcomeDropped], and
//     so is an error whose status is DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED
//     or UNAVAILABLE: the server or a dependency it called was too slow or
//     shed the work, which is what an adaptive limit must back off from.
//   - Success and every other code are [bulkhead.OutcomeSuccess]: the
//     server answered, and its latency is a valid sample.
//
// It is safe for concurrent use.
func OutcomeOf(ctx context.Context, err error) bulkhead.Outcome {
	switch ctx.Err() {
	case context.Canceled:
		return bulkhead.OutcomeIgnored
	case context.DeadlineExceeded:
		return bulkhead.OutcomeDropped
	}
	if err == nil {
		return bulkhead.OutcomeSuccess
	}
	if errors.Is(err, context.Canceled) {
		return bulkhead.OutcomeIgnored
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return bulkhead.OutcomeDropped
	}
	switch status.Code(err) {
	case codes.Canceled:
		return bulkhead.OutcomeIgnored
	case codes.DeadlineExceeded, codes.ResourceExhausted, codes.Unavailable:
		return bulkhead.OutcomeDropped
	}
	return bulkhead.OutcomeSuccess
}

// Bulkhead is the bulkhead stage of a [Server]: it bounds how many calls
// run at once per partition and sheds the rest at once (or after a bounded
// queue, if configured) with RESOURCE_EXHAUSTED, a google.rpc.RetryInfo
// detail and a grpc-retry-pushback-ms trailer carrying the pushback delay.
// On the server, the rejection also matches [resilience.ErrBulkheadFull].
//
// A call holds its slot until the handler returns (for a stream, until the
// stream ends) and then reports its latency and outcome to the adaptive
// strategy, if any.
//
// At most [BulkheadConfig.MaxPartitions] keyed partitions are kept: when a
// new key comes and the cap is reached, an idle partition (nothing in
// flight, nobody waiting, unused for a while) is dropped to make room
// ([EventPartitionEvicted]); when every partition is busy, the new key's
// calls share the overflow partition ([EventPartitionOverflow]) until one
// is free. A partition is never dropped while it holds a call.
//
// A Bulkhead is safe for concurrent use. [Server.Bulkhead] returns the
// one of a Server; the zero value is not usable.
type Bulkhead struct {
	cfg      BulkheadConfig
	hub      *hub
	keys     keyDisplay
	parts    *bulkhead.Partitioned // nil when disabled
	classify func(context.Context, error) bulkhead.Outcome
	reject   error       // immutable, shared by every shed call
	trailer  metadata.MD // immutable; nil without pushback
	delay    time.Duration
}

// newBulkhead returns the Bulkhead of a valid cfg, reporting to h and
// showing keys as keys says.
func newBulkhead(cfg BulkheadConfig, h *hub, keys keyDisplay) *Bulkhead {
	b := &Bulkhead{cfg: cfg, hub: h, keys: keys, classify: cfg.Classify}
	if b.classify == nil {
		b.classify = OutcomeOf
	}
	if cfg.Limit == 0 {
		return b
	}
	pc := bulkhead.PartitionedConfig{
		MaxKeys: cfg.MaxPartitions,
		New: func(string) *bulkhead.Bulkhead {
			bc := bulkhead.Config{Limit: cfg.Limit, Queue: cfg.Queue, MaxWait: cfg.MaxWait}
			if cfg.Adaptive != nil {
				bc.Strategy = cfg.Adaptive()
			}
			return bulkhead.NewFromConfig(bc)
		},
	}
	if pc.MaxKeys == 0 {
		pc.MaxKeys = DefaultMaxPartitions
	}
	if cfg.PartitionBy == PartitionNone {
		pc.MaxKeys = -1 // every call uses the overflow partition
	}
	pc.OnEvict = func(key string) {
		if h.listening() {
			h.emit(context.Background(), Event{Kind: EventPartitionEvicted, Key: keys.show(key)})
		}
	}
	pc.OnOverflow = func(key string) {
		if h.listening() {
			h.emit(context.Background(), Event{Kind: EventPartitionOverflow, Key: keys.show(key)})
		}
	}
	b.parts = bulkhead.NewPartitioned(pc)
	st := status.New(codes.ResourceExhausted, "server: overloaded, call shed")
	if !cfg.NoPushback {
		b.delay = cfg.PushbackDelay
		if b.delay == 0 {
			b.delay = DefaultPushbackDelay
		}
		st, b.trailer = withPushback(st, b.delay)
	}
	b.reject = interceptors.NewStatusError(st, resilience.ErrBulkheadFull)
	return b
}

// withPushback adds a RetryInfo detail with delay to st and returns it with
// the matching grpc-retry-pushback-ms trailer.
func withPushback(st *status.Status, delay time.Duration) (*status.Status, metadata.MD) {
	// WithDetails fails only for a status with code OK.
	if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)}); err == nil {
		st = withInfo
	}
	return st, metadata.Pairs(classify.PushbackTrailer, strconv.FormatInt(pushbackMillis(delay), 10))
}

// pushbackMillis rounds d up to whole milliseconds, so that the client
// never waits less than asked; negative d counts as 0.
func pushbackMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return ms
}

// Partitions returns the bulkhead's partitions, for metrics: with
// PartitionNone, every call uses its Overflow partition. It returns nil
// when the bulkhead is disabled. Their keys are the callers' own: show
// them through [Bulkhead.DisplayKey].
func (b *Bulkhead) Partitions() *bulkhead.Partitioned { return b.parts }

// DisplayKey returns a partition key as the bulkhead shows it in events
// and snapshots: a keyed hash such as "k:3f2a9c0e71b4", or the key itself
// with [BulkheadConfig.ShowKeys] or PartitionByMethod; "" stays "". See
// "Caller keys" in the package documentation. It is safe for concurrent
// use.
func (b *Bulkhead) DisplayKey(key string) string { return b.keys.show(key) }

// MaxHeaderKeyLength is the longest header value a PartitionByHeader
// bulkhead keeps as a partition key, in bytes.
const MaxHeaderKeyLength = 256

// key returns the partition key of a call.
func (b *Bulkhead) key(ctx context.Context, fullMethod string) string {
	return partitionKey(ctx, fullMethod, b.cfg.PartitionBy, b.cfg.Header, b.cfg.KeyFunc)
}

// acquire admits the call or sheds it. On admission it returns the permit
// to release with the call's outcome. On a shed call it sets the pushback
// trailer through setTrailer and returns the rejection. A call whose ctx
// ends while it is queued gets its context's status.
func (b *Bulkhead) acquire(ctx context.Context, fullMethod string, setTrailer func(metadata.MD)) (bulkhead.Permit, error) {
	key := b.key(ctx, fullMethod)
	p, err := b.parts.Get(key).Acquire(ctx)
	if err == nil {
		return p, nil
	}
	if !errors.Is(err, resilience.ErrBulkheadFull) {
		return p, status.FromContextError(err).Err()
	}
	if b.trailer != nil {
		setTrailer(b.trailer)
	}
	if b.hub.listening() {
		b.hub.emit(ctx, Event{Kind: EventShed, FullMethod: fullMethod, Code: codes.ResourceExhausted, Key: b.keys.show(key), Delay: b.delay})
	}
	return p, b.reject
}

// unary runs handler inside the bulkhead.
func (b *Bulkhead) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	p, err := b.acquire(ctx, info.FullMethod, func(md metadata.MD) { _ = grpc.SetTrailer(ctx, md) })
	if err != nil {
		return nil, err
	}
	o := bulkhead.OutcomeIgnored // stays so only if the handler panics
	defer func() { p.ReleaseWith(o) }()
	resp, err = handler(ctx, req)
	o = b.classify(ctx, err)
	return resp, err
}

// stream runs handler inside the bulkhead.
func (b *Bulkhead) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	p, err := b.acquire(ctx, info.FullMethod, ss.SetTrailer)
	if err != nil {
		return err
	}
	o := bulkhead.OutcomeIgnored // stays so only if the handler panics
	defer func() { p.ReleaseWith(o) }()
	err = handler(srv, ss)
	o = b.classify(ctx, err)
	return err
}

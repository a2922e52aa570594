package interceptors

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/bulkhead"
	"github.com/engineeringlabs/grpc-resilience/interceptors/classify"
	"github.com/engineeringlabs/grpc-resilience/retry"
)

// defaultStreamBufferLimit is the replay buffer of a stream when
// RetryPolicy.StreamBufferLimit is zero: 256 KiB, as gRPC's own.
const defaultStreamBufferLimit = 256 << 10

// StreamClientInterceptor returns the pipeline as a stream client
// interceptor, for grpc.WithChainStreamInterceptor. It applies the same
// policies as [Client.UnaryClientInterceptor], resolved per method, service
// or by default, with the differences the package documentation lists
// under "Streams": retries until the stream is committed, replaying the
// messages sent so far; no hedging and no per-attempt timeout; a bulkhead
// slot held for the stream's lifetime.
//
// Every error the returned streams give (from the interceptor itself,
// RecvMsg, SendMsg) is a gRPC status, io.EOF excepted where gRPC uses it.
// The streams are safe for the concurrency gRPC allows: one goroutine
// sending (SendMsg, CloseSend) while another receives (RecvMsg, Header).
func (c *Client) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return c.interceptStream
}

func (c *Client) interceptStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	var target string
	if cc != nil {
		target = cc.Target()
	}
	return c.state(target, method).stream(ctx, desc, cc, method, streamer, opts)
}

// responseType returns the type of fullMethod's response message from
// protoregistry, or nil when it is not registered there.
func responseType(fullMethod string) protoreflect.MessageType {
	service, method, ok := classify.SplitMethod(fullMethod)
	if !ok {
		return nil
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return nil
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return nil
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil
	}
	return mt
}

// stream starts one stream through the pipeline.
func (ms *methodState) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts []grpc.CallOption) (grpc.ClientStream, error) {
	p := &ms.c.p
	ov := readOverrides(opts)
	pattern, idempotent, maxAttempts := ms.pattern, ms.idempotent, ms.maxAttempts
	if ov.idempotent != IdempotencyFromDescriptor {
		idempotent = ov.idempotent == Idempotent
	}
	if pattern == PatternRetry && ov.maxAttempts > 0 {
		maxAttempts = ov.maxAttempts
	}
	// Hedging does not apply to streams: a hedged stream would need its
	// own replay and would deliver the messages of two attempts.
	if pattern != PatternRetry || ov.disable || maxAttempts == 1 {
		pattern, maxAttempts = PatternSingle, 1
	}
	_, hasDeadline := ctx.Deadline()
	defaultTimeout := p.DefaultTimeout > 0 && !hasDeadline
	obs := ms.observer
	if pattern == PatternSingle && obs == nil && ms.breaker == nil && ms.bulkhead == nil && !defaultTimeout {
		return streamer(ctx, desc, cc, method, opts...)
	}

	s := &clientStream{
		ms: ms, desc: desc, cc: cc, method: method, streamer: streamer, opts: opts,
		callerCtx: ctx, idempotent: idempotent,
		committed: pattern == PatternSingle, // nothing to replay for
	}
	if obs != nil {
		s.info = CallInfo{Method: ms.method, Target: ms.target, Pattern: pattern, MaxAttempts: maxAttempts, Idempotent: idempotent,
			ClientStreams: desc.ClientStreams, ServerStreams: desc.ServerStreams}
		ctx = obs.CallStart(ctx, s.info)
	}
	s.callCtx = ctx
	if defaultTimeout {
		ctx, s.cancelDefault = context.WithTimeoutCause(ctx, p.DefaultTimeout, errDefaultTimeout)
	}
	s.ctx = ctx
	if pattern == PatternRetry {
		pol := ms.retry
		if maxAttempts != pol.MaxAttempts() {
			pol = pol.With(retry.WithMaxAttempts(maxAttempts))
		}
		s.rc, s.rcOpen = pol.Start(), true
		s.limit = p.Retry.StreamBufferLimit
		if s.limit == 0 {
			s.limit = defaultStreamBufferLimit
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.openLocked(AttemptInfo{Attempt: 1})
	s.cur = a
	if err != nil {
		if ok, ferr := s.retryLocked(a, err); !ok {
			s.finishLocked(ferr)
			return nil, s.finalErr
		}
	}
	// Once the stream exists, the caller may walk away by cancelling its
	// context instead of reading to the end, as gRPC allows: the
	// breaker's permit, the bulkhead's slot and the call's telemetry are
	// then released when the context ends. AfterFunc starts no goroutine
	// before that, and none at all for a context that cannot end.
	s.stopWatch = context.AfterFunc(ctx, s.onDone)
	return s, nil
}

// clientStream is a stream through the pipeline: it retries failed
// attempts until the stream is committed and replays the messages sent so
// far on each new attempt.
//
// Concurrency. gRPC lets one goroutine send (SendMsg, CloseSend) while
// another receives (RecvMsg, Header). mu guards every field below it; the
// calls into an attempt's stream that may block on the network (SendMsg,
// RecvMsg, Header, CloseSend of the current attempt) run without it, so
// that a sender blocked on flow control never stops the receiver, and the
// other way round. What runs under mu: opening an attempt and replaying
// the buffer into it, fetching the status of an attempt that nobody is
// receiving from (its stream is over, so that returns at once), and every
// decision. A new attempt becomes current only once its replay is done, so
// a sender that finds it current appends after the replayed messages: no
// message is lost, sent twice on one attempt, or reordered.
type clientStream struct {
	ms         *methodState
	desc       *grpc.StreamDesc
	cc         *grpc.ClientConn
	method     string
	streamer   grpc.Streamer
	opts       []grpc.CallOption
	idempotent bool
	limit      int // replay buffer limit in bytes; 0 without retries

	callerCtx     context.Context // as the caller passed it
	callCtx       context.Context // as CallStart returned it
	ctx           context.Context // callCtx under the default timeout
	cancelDefault context.CancelFunc
	stopWatch     func() bool
	info          CallInfo

	mu         sync.Mutex
	rc         retry.Call
	rcOpen     bool // rc is still to be told the stream's outcome
	cur        *streamAttempt
	attempts   int             // attempts that reached the streamer
	slot       bulkhead.Permit // held from the first attempt to the end
	buf        []any           // clones of the messages sent, until commit
	bufBytes   int
	sentLast   bool // CloseSend called, or the one message of a non-client-streaming call sent
	committed  bool
	firstReply time.Time // when the first message or header arrived
	recvActive bool      // a RecvMsg runs on cur without mu
	finished   bool
	finalErr   error         // what RecvMsg returns once finished: io.EOF on success
	changed    chan struct{} // closed when cur, committed, finished or recvActive change; nil until waited on
}

var _ grpc.ClientStream = (*clientStream)(nil)

// streamAttempt is one attempt of a stream.
type streamAttempt struct {
	cs      grpc.ClientStream // nil when the attempt never got a stream
	started bool              // it holds a breaker permit and had AttemptStart
	over    bool              // abandoned or finished: its outcome is recorded
	// sendDead: a send found the attempt over while its status could not
	// be fetched yet; later sends only buffer, RecvMsg finds the status.
	sendDead bool
	// drained: the attempt's status was fetched by draining it; stash holds
	// the messages it had sent, which the application has not seen, and
	// final the error RecvMsg returns after them (io.EOF on success).
	drained bool
	stash   []any
	final   error
	permit  breaker.Permit
	cancel  context.CancelFunc
	obsCtx  context.Context
	info    AttemptInfo
	start   time.Time
}

// openLocked starts an attempt as info says: breaker, on the first
// attempt the bulkhead, the attempt's context, the streamer, then the
// replay of the messages sent so far. It returns the attempt and nil, or
// the attempt (possibly one that never started) and the error it failed
// with. s.mu is held.
func (s *clientStream) openLocked(info AttemptInfo) (*streamAttempt, error) {
	a := &streamAttempt{info: info}
	ms, ctx, obs := s.ms, s.ctx, s.ms.observer
	// Never start an attempt once the call's context is done, its deadline
	// included; the deadline is read from the clock too, since the timer
	// that ends the context may run late on a loaded machine.
	if err := ctx.Err(); err != nil {
		return a, finalError(err)
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return a, finalError(context.DeadlineExceeded)
	}
	if b := ms.breaker; b != nil {
		p, err := b.Allow()
		if err != nil {
			if obs != nil {
				state := breaker.Open
				if oe, ok := errors.AsType[*breaker.OpenError](err); ok {
					state = oe.State()
				}
				obs.Event(ctx, Event{Kind: EventBreakerRejected, Method: ms.method, Target: ms.target, Attempt: info.Attempt, Err: err, BreakerState: state})
			}
			return a, newCodeError(codes.Unavailable, err)
		}
		a.permit = p
		a.info.Breaker, a.info.BreakerState = true, p.State()
	}
	if bh := ms.bulkhead; bh != nil && info.Attempt == 1 {
		var start time.Time
		if obs != nil {
			start = time.Now()
		}
		slot, err := bh.Acquire(ctx)
		if err != nil {
			a.permit.Done(breaker.Ignored) // the server was not asked
			if errors.Is(err, resilience.ErrBulkheadFull) {
				if obs != nil {
					obs.Event(ctx, Event{Kind: EventBulkheadRejected, Method: ms.method, Target: ms.target, Attempt: info.Attempt, Err: err})
				}
				return a, newCodeError(codes.ResourceExhausted, err)
			}
			return a, finalError(err)
		}
		s.slot = slot
		if obs != nil {
			a.info.BulkheadWait = time.Since(start)
		}
	}

	actx := ctx
	if info.Attempt > 1 {
		actx = metadata.AppendToOutgoingContext(actx, PreviousAttemptsHeader, strconv.Itoa(info.Attempt-1))
	}
	if obs != nil {
		a.info.Method, a.info.Target = ms.method, ms.target
		actx = obs.AttemptStart(actx, a.info)
	}
	a.obsCtx = actx
	actx, a.cancel = context.WithCancel(actx)
	a.started = true
	a.start = time.Now()
	s.attempts++

	cs, err := s.streamer(actx, s.desc, s.cc, s.method, s.opts...)
	if err != nil {
		return a, finalError(err)
	}
	a.cs = cs
	// Replay. A new attempt is not current yet, so nobody else uses its
	// stream: the replay and any CloseSend come first, in order.
	for _, m := range s.buf {
		if err := cs.SendMsg(m); err != nil {
			if err == io.EOF {
				// The attempt is already over; its status comes from
				// RecvMsg, like that of any attempt that ends.
				a.sendDead = true
				return a, nil
			}
			return a, err
		}
	}
	if s.sentLast && s.desc.ClientStreams {
		// gRPC's CloseSend always returns nil.
		_ = cs.CloseSend()
	}
	return a, nil
}

// streamResult is how an attempt of a stream failed, as the retry engine
// and the observer see it.
type streamResult struct {
	err       error // the status error, wrapped as a pushbackError with pushback
	code      codes.Code
	retryable bool
	inner     bool // a rejection that never reached the server
	pushback  classify.Pushback
}

// classifyLocked classifies the failure err of attempt a as the unary
// pipeline classifies a failed attempt: same table, same pushback, same
// idempotency. s.mu is held.
func (s *clientStream) classifyLocked(a *streamAttempt, err error) streamResult {
	st := statusOf(err)
	r := streamResult{err: err, code: st.Code(), inner: isRejection(err)}
	if a.cs != nil && !r.inner {
		// The attempt's stream is over (RecvMsg returned err), so its
		// trailer is final.
		r.pushback = classify.PushbackOf(st, a.cs.Trailer())
	}
	if r.pushback.Present {
		r.err = &pushbackError{err: err, st: st, pb: r.pushback}
	}
	r.retryable = !r.inner && s.ms.c.retryTable.Retryable(classify.Attempt{
		Code:       r.code,
		Idempotent: s.idempotent,
		Pushback:   r.pushback,
	})
	return r
}

// endAttemptLocked records the outcome of attempt a, which ended with err
// (nil for success): the breaker's outcome, the observer's AttemptEnd, and
// the cancellation of its context. An attempt's outcome is recorded once.
// s.mu is held.
func (s *clientStream) endAttemptLocked(a *streamAttempt, err error, pb classify.Pushback) {
	if a.over {
		return
	}
	a.over = true
	if !a.started {
		return
	}
	code := status.Code(err)
	outcome := breakerOutcome(s.ms.c.breakerTable.Breaker(code))
	if isRejection(err) || s.callerCancelled() {
		outcome = breaker.Ignored
	}
	// A stream's duration, for slow-call detection, is the time to its
	// first response when it had one, not its whole life.
	end := s.firstReply
	if end.Before(a.start) {
		end = time.Now()
	}
	a.permit.DoneDuration(outcome, end.Sub(a.start))
	a.cancel()
	if obs := s.ms.observer; obs != nil {
		a.info.Pushback = pb
		obs.AttemptEnd(a.obsCtx, a.info, err)
	}
}

// callerCancelled reports whether the caller cancelled the stream's
// context (as opposed to a deadline passing).
func (s *clientStream) callerCancelled() bool {
	return errors.Is(s.callerCtx.Err(), context.Canceled)
}

// retryLocked handles the failure err of attempt a, the current one,
// before the stream is committed: it classifies it, asks the retry engine,
// waits (without s.mu) and opens new attempts until one starts. It reports
// true when a new, replayed attempt is current, or false and the error the
// stream ends with. s.mu is held.
func (s *clientStream) retryLocked(a *streamAttempt, err error) (bool, error) {
	for {
		r := s.classifyLocked(a, err)
		s.endAttemptLocked(a, r.err, r.pushback)
		if !s.rcOpen {
			// A single attempt: its error is final.
			return false, finalError(err)
		}
		engineErr := r.err
		// The table decides; the engine only sees what it may retry. A
		// server's veto stays as it is, as for unary calls.
		if !r.retryable && !(r.pushback.Present && !r.pushback.Retry) {
			engineErr = retry.Permanent(engineErr)
		}
		d := s.rc.Next(s.ctx, engineErr)
		if !d.Retry {
			s.rcOpen = false
			if pe, ok := d.Err.(*retry.PermanentError); ok {
				return false, finalError(pe.Err)
			}
			return false, finalError(d.Err)
		}
		// The current attempt is over: until the next one is current,
		// senders only buffer and receivers wait (see SendMsg, RecvMsg).
		s.broadcastLocked()
		s.mu.Unlock()
		werr := s.rc.Wait(s.ctx, d.Delay)
		s.mu.Lock()
		switch {
		case s.finished:
			// The context ended during the wait and onDone finished
			// the stream.
			return false, s.finalErr
		case werr != nil:
			s.rcOpen = false
			return false, finalError(werr)
		case s.committed:
			// The replay buffer overflowed during the wait: the messages
			// to replay are gone, the last attempt's error stands.
			s.rcOpen = false
			return false, finalError(err)
		}
		next := s.rc.Attempt()
		a, err = s.openLocked(AttemptInfo{Attempt: next.Num, Delay: d.Delay, PushbackHonoured: r.pushback.Present})
		s.cur = a
		if err == nil {
			s.broadcastLocked()
			return true, nil
		}
	}
}

// repliedLocked commits the stream because a message or header arrived.
// s.mu is held.
func (s *clientStream) repliedLocked() {
	if s.firstReply.IsZero() {
		s.firstReply = time.Now()
	}
	s.commitLocked()
}

// commitLocked commits the stream to its current attempt: no more retries,
// the replay buffer is dropped. s.mu is held.
func (s *clientStream) commitLocked() {
	if s.committed {
		return
	}
	s.committed = true
	clear(s.buf)
	s.buf, s.bufBytes = nil, 0
	s.broadcastLocked()
}

// finishLocked ends the stream with err, what RecvMsg returns from now on
// (io.EOF or nil for success): it records the current attempt's outcome,
// releases the bulkhead slot, tells the budget and the observer, and
// cancels the contexts the stream made. Only the first call counts. s.mu is
// held.
func (s *clientStream) finishLocked(err error) {
	if s.finished {
		return
	}
	s.finished = true
	if err == nil {
		err = io.EOF
	}
	callErr := err
	if err == io.EOF {
		callErr = nil
	} else if s.cancelDefault != nil && status.Code(err) == codes.DeadlineExceeded && ownTimeout(s.callCtx, s.ctx, errDefaultTimeout) {
		// The caller had no deadline, so the deadline that passed is the
		// pipeline's default timeout.
		if _, wrapped := errors.AsType[*resilience.TimeoutError](err); !wrapped {
			err = &StatusError{st: statusOf(err), cause: &resilience.TimeoutError{After: s.ms.c.p.DefaultTimeout}}
		}
		callErr = err
	}
	s.finalErr = err
	if a := s.cur; a != nil {
		s.endAttemptLocked(a, callErr, classify.Pushback{})
	}
	switch code := status.Code(callErr); {
	case s.callerCancelled() || code == codes.Canceled:
		s.slot.ReleaseWith(bulkhead.OutcomeIgnored)
	case code == codes.DeadlineExceeded:
		s.slot.ReleaseWith(bulkhead.OutcomeDropped)
	default:
		s.slot.Release()
	}
	if s.rcOpen {
		s.rcOpen = false
		if callErr == nil {
			s.rc.Next(s.ctx, nil)
		} else {
			s.rc.Next(s.ctx, retry.Permanent(callErr))
		}
	}
	if s.stopWatch != nil {
		s.stopWatch()
	}
	if s.cancelDefault != nil {
		s.cancelDefault()
	}
	if obs := s.ms.observer; obs != nil {
		s.info.Attempts = s.attempts
		obs.CallEnd(s.callCtx, s.info, callErr)
	}
	s.broadcastLocked()
}

// onDone finishes the stream when its context ends before the application
// read it to the end.
func (s *clientStream) onDone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finishLocked(finalError(s.ctx.Err()))
}

// broadcastLocked wakes every goroutine waiting for a change. s.mu is held.
func (s *clientStream) broadcastLocked() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// waitLocked releases s.mu until the next change, then takes it again.
func (s *clientStream) waitLocked() {
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	ch := s.changed
	s.mu.Unlock()
	<-ch
	s.mu.Lock()
}

// bufferLocked keeps a clone of m for replay, or commits the stream when
// m cannot be replayed or the buffer would exceed its limit. s.mu is held.
func (s *clientStream) bufferLocked(m any) {
	pm, ok := m.(proto.Message)
	if !ok {
		// A message that is not a proto message can be neither sized nor
		// cloned, so it cannot be replayed safely.
		s.commitLocked()
		return
	}
	size := proto.Size(pm)
	if size > s.limit-s.bufBytes {
		s.commitLocked()
		return
	}
	s.buf = append(s.buf, proto.Clone(pm))
	s.bufBytes += size
}

// SendMsg sends m on the current attempt. Before the stream is committed it
// keeps a clone of m for replay (committing the stream when the buffer
// would exceed its limit); when the attempt turns out to be over, it fetches
// the attempt's status and retries as RecvMsg does, or leaves that to the
// goroutine receiving. It returns io.EOF once the stream is over, as gRPC
// does, and RecvMsg then returns the stream's status.
func (s *clientStream) SendMsg(m any) error {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return io.EOF
	}
	if s.committed {
		a := s.cur
		dead := a.over || a.cs == nil
		s.mu.Unlock()
		return s.sendCommitted(a, dead, m)
	}
	if s.sentLast {
		s.mu.Unlock()
		return status.Error(codes.Internal, "SendMsg called after CloseSend")
	}
	if !s.desc.ClientStreams {
		s.sentLast = true // gRPC sends the one message with END_STREAM
	}
	// m joins the buffer before it is sent: a retry that starts from now
	// on, on any goroutine, replays it in its place.
	s.bufferLocked(m)
	a := s.cur
	switch {
	case s.committed:
		dead := a.over || a.cs == nil
		s.mu.Unlock()
		return s.sendCommitted(a, dead, m)
	case a.drained:
		// The attempt's outcome is decided; RecvMsg tells it.
		s.mu.Unlock()
		return io.EOF
	case a.over || a.sendDead:
		// Between attempts, or the attempt is known to be over: m waits in
		// the buffer for the next attempt.
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	err := a.cs.SendMsg(m)
	if err == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case a != s.cur:
		// Another goroutine retried meanwhile and replayed m on the new
		// attempt.
		return nil
	case s.committed || s.finished:
		return err
	case err != io.EOF:
		// gRPC made this error itself (encoding, size) and aborted the
		// attempt; every attempt would fail alike.
		s.finishLocked(err)
		return err
	}
	return s.attemptOverLocked(a)
}

// sendCommitted sends m on a, the attempt the stream is committed to. An
// error gRPC made itself (not io.EOF) has ended the stream: it is finished
// here, since the application need not call RecvMsg after it. dead reports
// that a is over, as read under s.mu.
func (s *clientStream) sendCommitted(a *streamAttempt, dead bool, m any) error {
	if dead {
		// Committed between two attempts: there is no attempt to send on.
		return io.EOF
	}
	err := a.cs.SendMsg(m)
	if err != nil && err != io.EOF {
		s.mu.Lock()
		s.finishLocked(err)
		s.mu.Unlock()
	}
	return err
}

// attemptOverLocked deals with attempt a, found over by a send or a Header
// call, before commit. When a goroutine is receiving from it, that
// goroutine retries; otherwise attemptOverLocked fetches the attempt's
// status by draining it and retries itself. It returns nil when a new
// attempt is current (the buffer replayed into it), or io.EOF when the
// stream's outcome is decided and RecvMsg will tell it. s.mu is held.
func (s *clientStream) attemptOverLocked(a *streamAttempt) error {
	for {
		switch {
		case a != s.cur:
			if c := s.cur; !c.sendDead || s.finished || s.committed {
				return nil
			}
			a = s.cur // its replay found it over already
			continue
		case s.committed || s.finished || a.drained:
			return io.EOF
		case s.recvActive || a.over:
			// The receiving goroutine sees the attempt end and retries,
			// or a retry is on its way: wait for it.
			s.waitLocked()
			continue
		case s.ms.respType == nil:
			// Without the response type there is nothing to drain into:
			// the next RecvMsg fetches the status.
			a.sendDead = true
			return nil
		}
		// Nobody receives from a, which is over: its status and the
		// messages before it are there at once. Holding s.mu keeps any
		// RecvMsg away from a meanwhile.
		err := s.drainLocked(a)
		if err == io.EOF {
			a.drained, a.final = true, io.EOF
			return io.EOF
		}
		ok, ferr := s.retryLocked(a, err)
		if ok {
			continue // the new attempt's replay may have found it over too
		}
		if s.cur == a && len(a.stash) > 0 && !s.finished && s.ctx.Err() == nil {
			// a's failure is final: the application gets its messages,
			// which commits the stream, then its status as it is.
			a.drained, a.final = true, err
		} else {
			// No messages, or a later attempt (which failed to open)
			// decided the outcome.
			s.finishLocked(ferr)
		}
		return io.EOF
	}
}

// drainLocked receives what attempt a, which is over, still holds: its
// messages into a.stash and its final error (io.EOF on success). s.mu is
// held.
func (s *clientStream) drainLocked(a *streamAttempt) error {
	for {
		m := s.ms.respType.New().Interface()
		if err := a.cs.RecvMsg(m); err != nil {
			return err
		}
		a.stash = append(a.stash, m)
		if !s.desc.ServerStreams {
			return io.EOF // gRPC has checked that the stream ended there
		}
	}
}

// RecvMsg receives the next message into m. Before the stream is committed,
// a failed attempt is retried as the policy says, with the messages sent so
// far replayed, and the application does not see it; the first message
// received commits the stream. After that, its error is the attempt's
// status as it is; io.EOF ends a successful stream.
func (s *clientStream) RecvMsg(m any) error {
	s.mu.Lock()
	for {
		if s.finished {
			err := s.finalErr
			s.mu.Unlock()
			return err
		}
		a := s.cur
		if len(a.stash) > 0 {
			next := a.stash[0]
			a.stash[0] = nil
			a.stash = a.stash[1:]
			s.repliedLocked()
			err := copyMessage(m, next)
			if err != nil {
				s.finishLocked(err)
			} else if !s.desc.ServerStreams {
				s.finishLocked(io.EOF)
			}
			s.mu.Unlock()
			return err
		}
		if a.drained {
			s.finishLocked(a.final)
			err := s.finalErr
			s.mu.Unlock()
			return err
		}
		if a.over || a.cs == nil {
			// Another goroutine is switching attempts.
			s.waitLocked()
			continue
		}
		s.recvActive = true
		s.mu.Unlock()
		err := a.cs.RecvMsg(m)
		s.mu.Lock()
		s.recvActive = false
		s.broadcastLocked()
		switch {
		case s.finished:
			err = s.finalErr
			s.mu.Unlock()
			return err
		case a != s.cur:
			continue
		case err == nil:
			s.repliedLocked()
			if !s.desc.ServerStreams {
				s.finishLocked(io.EOF)
			}
			s.mu.Unlock()
			return nil
		case s.committed || err == io.EOF:
			s.finishLocked(err)
			err = s.finalErr
			s.mu.Unlock()
			return err
		}
		ok, ferr := s.retryLocked(a, err)
		if !ok {
			s.finishLocked(ferr)
			err = s.finalErr
			s.mu.Unlock()
			return err
		}
	}
}

// copyMessage makes dst, the application's message, a copy of src, a
// drained message of the method's response type.
func copyMessage(dst, src any) error {
	d, ok := dst.(proto.Message)
	s := src.(proto.Message)
	if !ok || d.ProtoReflect().Descriptor() != s.ProtoReflect().Descriptor() {
		return status.Errorf(codes.Internal, "interceptors: RecvMsg: want a %s, got a %T", s.ProtoReflect().Descriptor().FullName(), dst)
	}
	proto.Reset(d)
	proto.Merge(d, s)
	return nil
}

// Header returns the current attempt's header metadata, waiting for it.
// Headers that arrive commit the stream, as in gRPC. Before commit, an
// attempt that ends without headers is retried as RecvMsg retries it, and
// Header asks the next one; when the stream is over without headers it
// returns nil, nil and RecvMsg returns the stream's status.
func (s *clientStream) Header() (metadata.MD, error) {
	s.mu.Lock()
	for {
		a := s.cur
		if s.committed || s.finished {
			s.mu.Unlock()
			if a.cs == nil {
				return nil, nil
			}
			return a.cs.Header()
		}
		if a.drained {
			// The outcome is decided; the drained attempt's header, if
			// any, is there already.
			s.mu.Unlock()
			return a.cs.Header()
		}
		if a.over || a.cs == nil {
			s.waitLocked()
			continue
		}
		s.mu.Unlock()
		md, err := a.cs.Header()
		s.mu.Lock()
		if a != s.cur {
			continue
		}
		if err == nil && md != nil {
			s.repliedLocked()
			s.mu.Unlock()
			return md, nil
		}
		if s.attemptOverLocked(a) == nil && s.cur != a {
			continue
		}
		s.mu.Unlock()
		return nil, nil
	}
}

// Trailer returns the trailer metadata of the attempt the stream ended
// with; call it after RecvMsg returned an error, io.EOF included.
func (s *clientStream) Trailer() metadata.MD {
	s.mu.Lock()
	a := s.cur
	s.mu.Unlock()
	if a.cs == nil {
		return nil
	}
	return a.cs.Trailer()
}

// CloseSend closes the sending side of the current attempt; a retry
// closes the sending side of its new attempt after the replay. It returns
// nil, as gRPC's does.
func (s *clientStream) CloseSend() error {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return nil
	}
	s.sentLast = true
	a := s.cur
	if a.cs == nil || (!s.committed && (a.over || a.sendDead || a.drained)) {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	return a.cs.CloseSend()
}

// Context returns the context of the current attempt's stream.
func (s *clientStream) Context() context.Context {
	s.mu.Lock()
	a := s.cur
	s.mu.Unlock()
	if a.cs == nil {
		return s.ctx
	}
	return a.cs.Context()
}

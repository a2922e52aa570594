package interceptors

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
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
	"github.com/engineeringlabs/grpc-resilience/throttle"
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
	if ov.idempotent != FromDescriptor {
		idempotent = ov.idempotent == AlwaysIdempotent
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
	obs := ms.obs.Load()
	if pattern == PatternSingle && obs == nil && !defaultTimeout && !ms.guarded() {
		return streamer(ctx, desc, cc, method, opts...)
	}

	s := &clientStream{
		ms: ms, obs: obs, desc: desc, cc: cc, method: method, streamer: streamer, opts: opts,
		callerCtx: ctx, idempotent: idempotent,
		committed: pattern == PatternSingle, // nothing to replay for
	}
	if obs != nil {
		s.info = CallInfo{Method: ms.method, Target: ms.target, Pattern: pattern, MaxAttempts: maxAttempts, Idempotent: idempotent,
			ClientStreams: desc.ClientStreams, ServerStreams: desc.ServerStreams}
		ctx = obs.callStart(ctx, s.info)
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
		s.replay = s.replayBuf[:0]
	}

	// Nobody else knows s yet: the first attempt opens without s.mu as
	// every attempt does (see open), and is installed under it.
	a := &s.first
	a.info.Attempt = 1 // field by field: s is new, its attempt zero
	slot, err := s.open(a, true, nil)
	var n notes
	s.mu.Lock()
	s.installLocked(a, slot, true)
	if err == nil {
		s.live.Store(a)
		if !a.timed() {
			s.replied.Store(true) // no breaker: no duration to measure
		}
		s.fastLocked()
	} else if retried, ferr := s.retryLocked(a, err, &n); !retried {
		s.finishLocked(ferr, &n)
		s.unlockAndDeliver(&n)
		return nil, s.finalErr // set once, by this goroutine
	}
	// Once the stream exists, the caller may walk away by cancelling its
	// context instead of reading to the end, as gRPC allows: the
	// breaker's permit, the bulkhead's slot and the call's telemetry are
	// then released when the context ends. AfterFunc starts no goroutine
	// before that, and none at all for a context that cannot end.
	s.stopWatch = context.AfterFunc(ctx, s.onDone)
	s.unlockAndDeliver(&n)
	return s, nil
}

// clientStream is a stream through the pipeline: it retries failed
// attempts until the stream is committed and replays the operations
// recorded so far (the messages sent, CloseSend) on each new attempt.
//
// Every method runs its operation through one loop, withRetry: the
// operation runs on the current attempt; before commit, when it finds the
// attempt over, the loop learns the attempt's status, asks the retry
// engine, opens the next attempt with the replay and runs the operation
// again there; after commit the operation runs on the committed attempt
// and its result is the application's.
//
// Concurrency. gRPC lets one goroutine send (SendMsg, CloseSend) while
// another receives (RecvMsg, Header). mu guards every field below it. An
// operation runs on its attempt without mu, so that a sender blocked on
// flow control never stops the receiver, and the other way round. What
// runs under mu: the decisions, and reading the status of an attempt that
// is over while no operation runs on it (its stream is over, so that
// returns at once). Nothing that may block or call back into the library
// runs under mu: the observer's hooks, the retry engine (its hooks, its
// wait), the breaker's permit and outcome (its hooks), the bulkhead slot
// and the rate limit (their waits), the streamer (wait-for-ready) and the
// replay (flow control). The hooks an update under mu implies are noted
// in a notes value on the goroutine's stack and delivered once it
// releases mu (see unlockAndDeliver), in the order the update made them.
//
// Once the stream is committed and until it finishes, nothing is left to
// decide for a message: RecvMsg and SendMsg find the committed attempt in
// fast, an atomic pointer, and run on it without taking mu, so a message
// costs no lock, no allocation and no clock reading beyond gRPC's own. The
// one exception is the first reply of a stream with a breaker that was
// committed before any reply (from its start, or by the replay buffer's
// limit): its time is noted under mu, once. The replay buffer is dropped
// at the commit. The first message that finds the attempt over (an error,
// io.EOF) takes mu to end the stream.
//
// Between two attempts the old one stays current, marked over, and
// operations wait for the new one. The goroutine that found the attempt
// over alone moves the stream on (see retryLocked): without mu, it reports
// the attempt's outcome, asks the retry engine, waits, and opens the next
// attempt with its replay; then it takes mu again and makes that attempt
// current. So nothing commits the stream meanwhile, the attempt the
// engine (and its budget) allowed is always made unless the stream's
// context ends, and the replay runs, in order, on an attempt nobody else
// uses. An operation that finds its attempt replaced runs again on the new
// one: no message is lost, sent twice on one attempt, or reordered.
type clientStream struct {
	ms         *methodState
	obs        *Observer // what the stream's call hears; nil: nobody
	desc       *grpc.StreamDesc
	cc         *grpc.ClientConn
	method     string
	streamer   grpc.Streamer
	opts       []grpc.CallOption
	idempotent bool
	limit      int // replay buffer limit in bytes; 0 without retries

	callerCtx     context.Context // as the caller passed it
	callCtx       context.Context // as OnCallStart returned it
	ctx           context.Context // callCtx under the default timeout
	cancelDefault context.CancelFunc
	stopWatch     func() bool
	info          CallInfo

	// live is the latest attempt that opened with its replay, for the
	// values of the stream's context (see Context).
	live atomic.Pointer[streamAttempt]
	// fast is the attempt the stream is committed to, from the commit (or
	// the first attempt's opening, for a stream without retries) until
	// the stream finishes; nil otherwise. Set and cleared under mu, read
	// without it: while it is set, RecvMsg and SendMsg run their message
	// on it with no lock at all, since nothing about the stream changes
	// for them before it finishes (see fastLocked).
	fast atomic.Pointer[streamAttempt]
	// sentLast: CloseSend was called, or the one message of a
	// non-client-streaming call was sent. Only the goroutine sending
	// changes it, as gRPC lets one goroutine at a time send; it is atomic
	// so that SendMsg's fast path reads it without mu.
	sentLast atomic.Bool
	// replied: firstReply is set for the committed attempt, or needs no
	// setting (the stream has no breaker); read without mu by RecvMsg and
	// Header, so that the first reply of a stream committed before it
	// (from the start, or by the replay buffer's limit) still sets
	// firstReply, with mu, once.
	replied atomic.Bool
	// ctxMu guards the stream's context, made on the first Context call;
	// it is apart from mu so that Context never waits for an attempt to
	// open. finishLocked takes it under mu.
	ctxMu      sync.Mutex
	userCtx    context.Context
	cancelUser context.CancelFunc // nil until Context; then called when the stream ends
	ctxEnded   bool               // the stream ended: a context made now starts cancelled

	mu     sync.Mutex
	rc     retry.Call
	rcOpen bool // rc is still to be told the stream's outcome
	// rcBusy: the goroutine between attempts uses rc without mu, so
	// finishLocked leaves telling rc the stream's outcome to it.
	rcBusy bool
	// unsettled counts the goroutines that deliver notes without mu, or
	// move the stream between attempts: RecvMsg reports the stream's end
	// only once it is zero, so that the end's outcomes (breaker, bulkhead,
	// budget, OnCallEnd) are recorded when the application learns it.
	unsettled   int32
	cur         *streamAttempt
	attempts    int             // attempts that reached the streamer
	slot        bulkhead.Permit // held from the first admitted attempt to the end
	replay      []replayOp      // the operations to repeat on a new attempt, until commit
	replayBytes int             // proto.Size of the messages in replay
	committed   bool
	finished    bool
	firstReply  time.Time     // when the replying attempt's first message or header arrived; read only for a timed attempt
	finalErr    error         // what RecvMsg returns once finished: io.EOF on success
	callErr     error         // the stream's outcome as the observer sees it (nil: success); set when finished
	changed     chan struct{} // closed when cur, committed, finished, unsettled or an attempt's state change; nil until waited on

	// first is the first attempt and replayBuf the first entries of
	// replay: a stream's own storage for what most streams need, so that
	// opening one allocates as little as it can.
	first     streamAttempt
	replayBuf [2]replayOp
}

var _ grpc.ClientStream = (*clientStream)(nil)

// replayOp is an operation recorded for replay: sending msg, a clone of
// what the application sent, or CloseSend when msg is nil.
type replayOp struct {
	msg proto.Message
}

// streamAttempt is one attempt of a stream. Its fields other than cs and
// the attempt's own bookkeeping set by openLocked are guarded by the
// stream's mu.
type streamAttempt struct {
	cs      grpc.ClientStream // nil when the attempt never got a stream
	over    bool              // its outcome is recorded: abandoned, or the stream ended
	running int               // operations running on cs without the stream's mu
	ended   bool              // an operation found it over; its status is still to be read
	// stash and final are set when its status was read by draining it
	// (see drainLocked) and the stream is committed to it: the messages
	// it had sent, which the application has not seen, then the error
	// RecvMsg returns after them (io.EOF on success).
	stash   []any
	final   error
	permit  breaker.Permit
	tpermit throttle.Permit
	cancel  context.CancelFunc // nil when it never started
	obsCtx  context.Context
	info    AttemptInfo
	start   time.Time
}

// timed reports whether a's duration is wanted: its breaker's slow-call
// detection is the only reader, so without a breaker the clock is not
// read for it.
func (a *streamAttempt) timed() bool { return a.permit != (breaker.Permit{}) }

// opResult is what an operation on an attempt found out, which decides
// what withRetry does before the stream is committed.
type opResult uint8

const (
	// opOK: the operation succeeded; the attempt goes on.
	opOK opResult = iota
	// opEnded: the attempt is over and the operation's error is its
	// status, io.EOF for OK (RecvMsg).
	opEnded
	// opEndedUnread: the attempt is over and its status is still to be
	// read from it (io.EOF from SendMsg, no headers from Header).
	opEndedUnread
	// opFailed: gRPC refused the operation itself (a message it cannot
	// encode or that is too large) and aborted the attempt; every
	// attempt would fail alike, so the error ends the stream.
	opFailed
)

var (
	// errFinished is what withRetry returns once the stream is over; the
	// methods turn it into what gRPC returns then.
	errFinished = errors.New("interceptors: stream finished")
	// errUnread is what withRetry returns when an attempt's status cannot
	// be read outside RecvMsg (the response type is unknown): RecvMsg
	// reads it, and retries, later.
	errUnread = errors.New("interceptors: status left to RecvMsg")
)

// withRetry runs op on the current attempt and returns its error, with
// s.mu held on entry and released on return. Before commit, an operation
// that succeeds calls onSuccess under s.mu (to record it for replay, or to
// commit the stream); one that finds its attempt over gets the attempt's
// status, from the operation itself or by reading it from the attempt, and
// then the retry engine decides: the next attempt opens with the replay
// and op runs again on it, or the stream ends (errFinished), or, when the
// attempt had sent messages the application has yet to see, the stream is
// committed to it. After commit, op's error is returned as it is. An
// operation that finds the attempt replaced by another goroutine's retry
// runs again on the new attempt; one that finds the stream between
// attempts waits for the next one. What the loop notes under s.mu (an
// attempt's outcome, the stream's end) is delivered, without s.mu, before
// it goes round again: every return and wait below runs with n empty.
func (s *clientStream) withRetry(op func(a *streamAttempt) (opResult, error), onSuccess func()) error {
	var n notes
	for {
		s.flushLocked(&n)
		if s.finished {
			s.mu.Unlock()
			return errFinished
		}
		a := s.cur
		if s.committed {
			s.mu.Unlock()
			_, err := op(a)
			return err
		}
		if a.over {
			// Between attempts: retryLocked, on another goroutine, opens
			// the next one.
			s.waitLocked()
			continue
		}
		res, err := opEndedUnread, error(nil)
		if !a.ended {
			a.running++
			s.mu.Unlock()
			res, err = op(a)
			s.mu.Lock()
			if a.running--; a.running == 0 {
				s.broadcastLocked()
			}
			switch {
			case s.finished || a != s.cur || a.over && !s.committed:
				continue // run op again where the stream now is
			case s.committed:
				s.mu.Unlock()
				return err
			}
		}
		switch res {
		case opOK:
			onSuccess()
			s.mu.Unlock()
			return nil
		case opFailed:
			s.mu.Unlock()
			return err
		case opEndedUnread:
			if s.ms.respType == nil {
				// Without the response type there is nothing to read the
				// status into.
				s.mu.Unlock()
				return errUnread
			}
			a.ended = true
			if a.running > 0 {
				// An operation still runs on a, which is over: it returns
				// at once, and a RecvMsg among them gets the status and
				// retries.
				s.waitLocked()
				continue
			}
			err = s.drainLocked(a)
		}
		// a is over and err is its status (io.EOF: OK); a.stash holds the
		// messages it sent that the application has not seen.
		if err == io.EOF {
			s.settleLocked(a, io.EOF, io.EOF, &n)
			continue
		}
		if retried, ferr := s.retryLocked(a, err, &n); !retried {
			s.settleLocked(a, err, ferr, &n)
		}
	}
}

// settleLocked ends the stream with ferr after attempt a, the last one,
// ended with err; unless a has messages the application has yet to see:
// then the stream is committed to a, and RecvMsg returns them before err.
// s.mu is held; n collects what is to be delivered.
func (s *clientStream) settleLocked(a *streamAttempt, err, ferr error, n *notes) {
	if len(a.stash) > 0 && s.cur == a && !s.finished && s.ctx.Err() == nil {
		a.final = err
		s.commitLocked()
		return
	}
	s.finishLocked(ferr, n)
}

// drainLocked reads what attempt a, which is over and on which no
// operation runs, still holds: its messages into a.stash, and its status
// (io.EOF for OK), which it returns. s.mu is held, which keeps every
// operation off a meanwhile.
func (s *clientStream) drainLocked(a *streamAttempt) error {
	for {
		m := s.ms.respType.New().Interface()
		if err := a.cs.RecvMsg(m); err != nil {
			return err
		}
		if len(a.stash) == 0 && a.timed() && s.firstReply.Before(a.start) {
			s.firstReply = time.Now()
		}
		a.stash = append(a.stash, m)
		if !s.desc.ServerStreams {
			return io.EOF // gRPC has checked that the stream ended there
		}
	}
}

// open starts attempt a, new and holding only its info: breaker and, when
// takeSlot (the stream holds no bulkhead slot yet), bulkhead (see admit),
// the attempt's context and OnAttemptStart, the streamer, then the replay
// of ops, the operations recorded so far. It returns the slot it took, and
// nil or the error it failed with; a may be left an attempt that never
// started (a.cancel nil).
//
// open runs without s.mu, since admit may wait (rate limit, bulkhead) and
// report rejections, the streamer may wait (wait-for-ready), and the
// replay's SendMsg may wait for flow control: that is, on the goroutine
// between attempts, with the old attempt current (see clientStream), or
// in stream before anybody else knows s. The new attempt is not current
// yet, so nobody else uses its stream, and ops cannot change meanwhile:
// only an operation that succeeds on the current attempt, or the commit
// this goroutine would make, changes s.replay. A replay blocked on flow
// control ends when the server reads, the attempt ends, or the stream's
// context ends; the application's operations wait for the new attempt
// meanwhile, as they would wait for its messages.
func (s *clientStream) open(a *streamAttempt, takeSlot bool, ops []replayOp) (bulkhead.Permit, error) {
	info := a.info
	ms, obs := s.ms, s.obs
	var bh *bulkhead.Bulkhead
	if takeSlot {
		bh = ms.bulkheadFor()
	}
	adm, err := ms.admit(s.ctx, obs, &a.info, bh)
	if err != nil {
		return bulkhead.Permit{}, err
	}
	a.permit, a.tpermit = adm.permit, adm.tpermit

	actx := s.ctx
	if info.Attempt > 1 {
		actx = metadata.AppendToOutgoingContext(actx, PreviousAttemptsHeader, strconv.Itoa(info.Attempt-1))
	}
	if obs != nil {
		a.info.Method, a.info.Target = ms.method, ms.target
		actx = obs.attemptStart(actx, a.info)
	}
	a.obsCtx = actx
	actx, a.cancel = context.WithCancel(actx)
	if a.timed() {
		a.start = time.Now()
	}

	cs, err := s.streamer(actx, s.desc, s.cc, s.method, s.opts...)
	if err != nil {
		return adm.slot, finalError(err)
	}
	a.cs = cs
	for _, op := range ops {
		var err error
		if op.msg == nil {
			err = cs.CloseSend()
		} else {
			err = cs.SendMsg(op.msg)
		}
		if err == io.EOF {
			// The attempt is over already; the first operation on it
			// finds out how.
			break
		}
		if err != nil {
			return adm.slot, err
		}
	}
	return adm.slot, nil
}

// installLocked makes a, just opened with slot (see open), the current
// attempt. s.mu is held.
func (s *clientStream) installLocked(a *streamAttempt, slot bulkhead.Permit, tookSlot bool) {
	if a.cancel != nil {
		s.attempts++
	}
	if tookSlot {
		s.slot = slot
	}
	s.cur = a
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
		// The attempt's stream is over (its status was read), so its
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
// (nil for success): it marks a over, cancels its context, and notes in n
// the breaker's outcome and the observer's OnAttemptEnd. An attempt's
// outcome is recorded once. s.mu is held.
func (s *clientStream) endAttemptLocked(a *streamAttempt, err error, pb classify.Pushback, n *notes) {
	if a.over {
		return
	}
	a.over = true
	s.broadcastLocked()
	if a.cancel == nil {
		return // rejected before it started: admit settled its permit
	}
	code := status.Code(err)
	outcome := breakerOutcome(s.ms.c.breakerTable.Breaker(code))
	gone := isRejection(err) || s.callerCancelled()
	if gone {
		outcome = breaker.Ignored
	}
	// A stream's duration, for slow-call detection, is the time to its
	// first response when it had one, not its whole life.
	var took time.Duration
	if a.timed() {
		end := s.firstReply
		if end.Before(a.start) {
			end = time.Now()
		}
		took = end.Sub(a.start)
	}
	a.cancel()
	a.info.Pushback = pb
	n.endAttempt(attemptEnd{a: a, err: err, outcome: outcome, toutcome: s.ms.c.throttleOutcome(code, gone), took: took})
}

// callerCancelled reports whether the caller cancelled the stream's
// context (as opposed to a deadline passing).
func (s *clientStream) callerCancelled() bool {
	return errors.Is(s.callerCtx.Err(), context.Canceled)
}

// retryLocked handles the failure err of attempt a, the current one,
// before the stream is committed: it classifies it, ends it, asks the
// retry engine, waits and opens new attempts until one starts. It reports
// true when a new, replayed attempt is current, or false and the error the
// stream ends with. s.mu is held on entry and on return, but released for
// everything that may block or call back: the delivery of a's outcome,
// the engine's decision (its hooks) and wait, and open. Meanwhile a stays
// current, over, and every operation waits (see clientStream); rcBusy
// keeps finishLocked off rc, and unsettled has RecvMsg wait for this
// goroutine before it reports the stream's end. n collects what is left
// to deliver when it returns false.
func (s *clientStream) retryLocked(a *streamAttempt, err error, n *notes) (bool, error) {
	for {
		r := s.classifyLocked(a, err)
		s.endAttemptLocked(a, r.err, r.pushback, n)
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
		if !n.counted {
			n.counted = true
			s.unsettled++
		}
		s.rcBusy = true
		s.mu.Unlock()
		s.deliver(n)
		// Once the engine (and its budget) allows a retry, the attempt is
		// made unless the stream's context ends first: nothing else moves
		// the stream meanwhile.
		d := s.rc.Next(s.ctx, engineErr)
		var werr error
		if d.Retry {
			werr = s.rc.Wait(s.ctx, d.Delay)
		}
		s.mu.Lock()
		s.rcBusy = false
		switch {
		case !d.Retry:
			s.rcOpen = false
			if pe, ok := d.Err.(*retry.PermanentError); ok {
				return false, finalError(pe.Err)
			}
			return false, finalError(d.Err)
		case s.finished:
			// The context ended meanwhile and onDone finished the
			// stream, leaving rc to this goroutine.
			s.tellLocked(n)
			return false, s.finalErr
		case werr != nil:
			s.rcOpen = false
			return false, finalError(werr)
		}
		info := AttemptInfo{Attempt: s.rc.Attempt().Num, Delay: d.Delay, PushbackHonoured: r.pushback.Present}
		takeSlot, ops := s.slot == (bulkhead.Permit{}), s.replay
		s.mu.Unlock()
		next := &streamAttempt{info: info}
		slot, err2 := s.open(next, takeSlot, ops)
		s.mu.Lock()
		if s.finished {
			// The stream ended while next opened (its context ended):
			// next ends as the stream's last attempt did.
			if next.cancel != nil {
				s.attempts++
			}
			s.endAttemptLocked(next, s.callErr, classify.Pushback{}, n)
			n.release(slot, s.slotOutcome(s.callErr))
			s.tellLocked(n)
			return false, s.finalErr
		}
		s.installLocked(next, slot, takeSlot)
		if err2 == nil {
			s.live.Store(next)
			s.broadcastLocked()
			s.settledLocked(n)
			return true, nil
		}
		a, err = next, err2
	}
}

// repliedLocked commits the stream because a message or header arrived.
// s.mu is held.
func (s *clientStream) repliedLocked() {
	s.noteReplyLocked()
	s.commitLocked()
}

// noteReplyLocked sets firstReply, unless it is set for the current
// attempt already or not wanted: a message or header of the current
// attempt arrived. s.mu is held.
func (s *clientStream) noteReplyLocked() {
	if a := s.cur; a.timed() && s.firstReply.Before(a.start) {
		s.firstReply = time.Now()
	}
	s.replied.Store(true)
}

// noteReply is noteReplyLocked for a caller without s.mu, on a committed
// stream: a stream committed before its first reply (from the start, or
// by the replay buffer's limit) learns of it here, once.
func (s *clientStream) noteReply() {
	s.mu.Lock()
	s.noteReplyLocked()
	s.mu.Unlock()
}

// commitLocked commits the stream to its current attempt: no more retries,
// the replay buffer is dropped. s.mu is held.
func (s *clientStream) commitLocked() {
	if s.committed {
		return
	}
	s.committed = true
	clear(s.replay)
	clear(s.replayBuf[:]) // when replay outgrew it, it still holds the first entries
	s.replay, s.replayBytes = nil, 0
	s.fastLocked()
	s.broadcastLocked()
}

// fastLocked opens the fast path (see clientStream.fast) on the current
// attempt once the stream is committed to it, unless the stream is
// finished. s.mu is held.
func (s *clientStream) fastLocked() {
	if s.committed && !s.finished && s.cur != nil && s.cur.cs != nil {
		s.fast.Store(s.cur)
	}
}

// recordLocked keeps a clone of m, a message just sent, for replay, or
// commits the stream when m cannot be replayed or the buffer would exceed
// its limit. s.mu is held.
func (s *clientStream) recordLocked(m any) {
	if s.committed {
		return
	}
	pm, ok := m.(proto.Message)
	if !ok {
		// A message that is not a proto message can be neither sized nor
		// cloned, so it cannot be replayed safely.
		s.commitLocked()
		return
	}
	size := proto.Size(pm)
	if size > s.limit-s.replayBytes {
		s.commitLocked()
		return
	}
	s.replay = append(s.replay, replayOp{msg: proto.Clone(pm)})
	s.replayBytes += size
}

// finishLocked ends the stream with err, what RecvMsg returns from now on
// (io.EOF or nil for success): it records the current attempt's outcome,
// cancels the contexts the stream made, its own (see Context) included,
// and notes in n the release of the bulkhead slot, the budget's outcome
// and OnCallEnd. Only the first call counts. s.mu is held.
func (s *clientStream) finishLocked(err error, n *notes) {
	if s.finished {
		return
	}
	s.finished = true
	s.fast.Store(nil)
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
	s.finalErr, s.callErr = err, callErr
	if a := s.cur; a != nil {
		s.endAttemptLocked(a, callErr, classify.Pushback{}, n)
	}
	n.release(s.slot, s.slotOutcome(callErr))
	if !s.rcBusy {
		s.tellLocked(n)
	}
	if s.stopWatch != nil {
		s.stopWatch()
	}
	if s.cancelDefault != nil {
		s.cancelDefault()
	}
	s.ctxMu.Lock()
	s.ctxEnded = true
	if s.cancelUser != nil {
		s.cancelUser()
	}
	s.ctxMu.Unlock()
	if s.obs != nil {
		s.info.Attempts = s.attempts
		n.callEnd = true
	}
	s.broadcastLocked()
}

// slotOutcome is how the stream's bulkhead slot is released when the
// stream ends with callErr.
func (s *clientStream) slotOutcome(callErr error) bulkhead.Outcome {
	switch code := status.Code(callErr); {
	case s.callerCancelled() || code == codes.Canceled:
		return bulkhead.OutcomeIgnored
	case code == codes.DeadlineExceeded:
		return bulkhead.OutcomeDropped
	}
	return bulkhead.OutcomeSuccess
}

// tellLocked notes in n that rc is to be told the stream's outcome, once
// the stream is finished, unless it was told already. s.mu is held.
func (s *clientStream) tellLocked(n *notes) {
	if !s.rcOpen {
		return
	}
	s.rcOpen = false
	n.tell = true
}

// finish is finishLocked for a caller without s.mu; it returns what
// RecvMsg returns from now on, once what the stream's end implies has been
// delivered, by this goroutine or another.
func (s *clientStream) finish(err error) error {
	var n notes
	s.mu.Lock()
	s.finishLocked(err, &n)
	s.flushLocked(&n)
	for s.unsettled > 0 {
		s.waitLocked()
	}
	err = s.finalErr
	s.mu.Unlock()
	return err
}

// onDone finishes the stream when its context ends before the application
// read it to the end.
func (s *clientStream) onDone() {
	var n notes
	s.mu.Lock()
	s.finishLocked(finalError(s.ctx.Err()), &n)
	s.unlockAndDeliver(&n)
}

// notes is what a goroutine has to deliver once it releases s.mu, in this
// order: the outcome of the attempts that ended (breaker, OnAttemptEnd),
// the release of the bulkhead slot, the retry engine's last word, and
// OnCallEnd. It lives on the goroutine's stack: the success path delivers
// without allocating.
type notes struct {
	ends    [1]attemptEnd
	more    []attemptEnd // beyond ends; each update so far ends one attempt at most
	nEnds   int
	slot    bulkhead.Permit
	slotOut bulkhead.Outcome
	tell    bool // tell rc the stream's outcome, s.callErr
	callEnd bool // call OnCallEnd with s.info and s.callErr
	// counted: the goroutine is counted in s.unsettled, until it has
	// delivered these notes.
	counted bool
}

// attemptEnd is the outcome of attempt a, which ended with err: outcome
// for its breaker permit, after took; err and a.info for OnAttemptEnd.
type attemptEnd struct {
	a        *streamAttempt
	err      error
	outcome  breaker.Outcome
	toutcome throttle.Outcome
	took     time.Duration
}

func (n *notes) endAttempt(e attemptEnd) {
	if n.nEnds < len(n.ends) {
		n.ends[n.nEnds] = e
		n.nEnds++
		return
	}
	n.more = append(n.more, e)
}

// release notes the release of slot with o; a zero slot is a no-op.
func (n *notes) release(slot bulkhead.Permit, o bulkhead.Outcome) {
	if slot != (bulkhead.Permit{}) {
		n.slot, n.slotOut = slot, o
	}
}

// pending reports whether n has something to deliver.
func (n *notes) pending() bool {
	return n.nEnds > 0 || n.slot != (bulkhead.Permit{}) || n.tell || n.callEnd
}

// held reports whether n has something to deliver or to settle.
func (n *notes) held() bool { return n.counted || n.pending() }

// unlockAndDeliver releases s.mu and delivers n (see flushLocked). s.mu is
// held on entry and released on return.
func (s *clientStream) unlockAndDeliver(n *notes) {
	s.flushLocked(n)
	s.mu.Unlock()
}

// flushLocked delivers n, if it holds anything, without s.mu: it releases
// s.mu meanwhile, counted in s.unsettled, and takes it again. It leaves n
// empty. s.mu is held on entry and on return.
func (s *clientStream) flushLocked(n *notes) {
	if !n.held() {
		return
	}
	if !n.counted {
		n.counted = true
		s.unsettled++
	}
	s.mu.Unlock()
	s.deliver(n)
	s.mu.Lock()
	s.settledLocked(n)
}

// settledLocked ends the count of n's goroutine in s.unsettled, if it was
// counted. s.mu is held.
func (s *clientStream) settledLocked(n *notes) {
	if !n.counted {
		return
	}
	n.counted = false
	if s.unsettled--; s.unsettled == 0 {
		s.broadcastLocked()
	}
}

// deliver delivers n without s.mu and empties it but for its count. What
// it reads of s was set under s.mu before and no longer changes: a.info
// and a.obsCtx of an attempt that is over, s.info and s.callErr of a
// finished stream, and s.rc, which nobody else uses once the stream is
// finished or while rcBusy.
func (s *clientStream) deliver(n *notes) {
	for i := range n.nEnds {
		s.deliverEnd(&n.ends[i])
	}
	for i := range n.more {
		s.deliverEnd(&n.more[i])
	}
	n.slot.ReleaseWith(n.slotOut)
	if n.tell {
		if s.callErr == nil {
			s.rc.Next(s.ctx, nil)
		} else {
			s.rc.Next(s.ctx, retry.Permanent(s.callErr))
		}
	}
	if n.callEnd {
		s.obs.callEnd(s.callCtx, s.info, s.callErr)
	}
	*n = notes{counted: n.counted}
}

// guarded reports whether some pattern of the state admits attempts:
// a breaker, a throttle, a rate limit or a bulkhead.
func (ms *methodState) guarded() bool {
	return ms.breaker != nil || ms.breakers != nil || ms.throttle != nil || ms.throttles != nil ||
		ms.limiter != nil || ms.bulkhead != nil || ms.bulkheads != nil
}

// deliverEnd tells the breaker, the throttle and the observer how an
// attempt ended.
func (s *clientStream) deliverEnd(e *attemptEnd) {
	e.a.permit.DoneDuration(e.outcome, e.took)
	e.a.tpermit.Done(e.toutcome)
	if obs := s.obs; obs != nil {
		obs.attemptEnd(e.a.obsCtx, e.a.info, e.err)
	}
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

// SendMsg sends m. Before the stream is committed it keeps a clone of m for
// replay once it is sent (committing the stream when the buffer would
// exceed its limit); when the attempt turns out to be over, it reads the
// attempt's status and retries as RecvMsg does, or leaves that to the
// goroutine receiving, and sends m on the next attempt. Once the stream is
// over it returns io.EOF, as gRPC does, and RecvMsg then returns the
// stream's status; but nil for the one message of a non-client-streaming
// call, as gRPC does too, since the generated code returns SendMsg's error
// as the call's and would hand the application a bare io.EOF. An error of
// gRPC's own (a message it cannot encode) ends the stream.
//
// Once the stream is committed, a message of a client-streaming call is
// sent without the stream's lock (see clientStream.fast).
func (s *clientStream) SendMsg(m any) error {
	if a := s.fast.Load(); a != nil && s.desc.ClientStreams && !s.sentLast.Load() {
		_, err := s.sendOn(a, m)
		return s.sent(err)
	}
	s.mu.Lock()
	switch {
	case s.finished && s.desc.ClientStreams:
		s.mu.Unlock()
		return io.EOF
	case s.sentLast.Load():
		s.mu.Unlock()
		return status.Error(codes.Internal, "SendMsg called after CloseSend")
	case s.finished:
		s.sentLast.Store(true)
		s.mu.Unlock()
		return nil // RecvMsg returns the status
	}
	if !s.desc.ClientStreams {
		s.sentLast.Store(true) // gRPC sends the one message with END_STREAM
	}
	return s.sent(s.withRetry(func(a *streamAttempt) (opResult, error) {
		return s.sendOn(a, m)
	}, func() { s.recordLocked(m) }))
}

// sendOn sends m on attempt a, which the caller alone uses to send.
func (s *clientStream) sendOn(a *streamAttempt, m any) (opResult, error) {
	if a.final != nil {
		return opEnded, io.EOF // the stream's outcome is decided
	}
	err := a.cs.SendMsg(m)
	switch {
	case err == nil:
		return opOK, nil
	case err != io.EOF:
		return opFailed, err
	case s.ms.respType == nil:
		// The attempt is over, but its status can only be read by
		// RecvMsg: m waits for the next attempt in the replay, and
		// RecvMsg retries.
		return opOK, io.EOF
	}
	return opEndedUnread, io.EOF
}

// sent turns err, what sending a message found, into SendMsg's result.
func (s *clientStream) sent(err error) error {
	switch err {
	case nil:
		return nil
	case io.EOF, errFinished:
		if !s.desc.ClientStreams {
			return nil // see SendMsg: RecvMsg returns the status
		}
		return io.EOF
	}
	s.finish(err)
	return err
}

// RecvMsg receives the next message into m. Before the stream is committed,
// a failed attempt is retried as the policy says, with the operations
// recorded so far replayed, and the application does not see it; the first
// message received commits the stream. After that, its error is the
// attempt's status as it is; io.EOF ends a successful stream. It returns
// the stream's end once what the end implies has been recorded, on
// whichever goroutine ended it: the breaker's outcome, the bulkhead slot,
// the budget and OnCallEnd; so a hook of the stream's own end must not
// call its RecvMsg.
//
// Once the stream is committed, a message is received without the
// stream's lock (see clientStream.fast).
func (s *clientStream) RecvMsg(m any) error {
	var err error
	if a := s.fast.Load(); a != nil {
		err = a.recv(m)
	} else {
		s.mu.Lock()
		err = s.withRetry(func(a *streamAttempt) (opResult, error) {
			if err := a.recv(m); err != nil {
				return opEnded, err
			}
			return opOK, nil
		}, s.repliedLocked)
	}
	if err == nil && !s.replied.Load() {
		s.noteReply() // the stream was committed before its first reply
	}
	return s.received(err)
}

// received turns err, what receiving a message found, into RecvMsg's
// result.
func (s *clientStream) received(err error) error {
	switch {
	case err == nil && s.desc.ServerStreams:
		return nil
	case err == nil:
		// gRPC has checked that the stream ended after its one message.
		s.finish(io.EOF)
		return nil
	}
	return s.finish(err)
}

// recv receives the next message of a into m: from the stash when a was
// drained, then a's final error, or from its stream.
func (a *streamAttempt) recv(m any) error {
	if len(a.stash) > 0 {
		next := a.stash[0]
		a.stash[0] = nil
		a.stash = a.stash[1:]
		return copyMessage(m, next)
	}
	if a.final != nil {
		return a.final
	}
	return a.cs.RecvMsg(m)
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
	var md metadata.MD
	s.mu.Lock()
	err := s.withRetry(func(a *streamAttempt) (opResult, error) {
		var err error
		md, err = a.cs.Header()
		if err == nil && md != nil {
			return opOK, nil
		}
		return opEndedUnread, err
	}, s.repliedLocked)
	if err == nil && md != nil && !s.replied.Load() {
		s.noteReply() // the stream was committed before its headers came
	}
	switch err {
	case errFinished:
		s.mu.Lock()
		a := s.cur
		s.mu.Unlock()
		if a.cs == nil {
			return nil, nil
		}
		return a.cs.Header()
	case errUnread:
		return nil, nil
	}
	return md, err
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

// CloseSend closes the sending side of the stream; before commit it is
// recorded, so that each new attempt has its sending side closed after the
// replay of the messages. Later calls do nothing. It returns nil, as
// gRPC's does.
func (s *clientStream) CloseSend() error {
	s.mu.Lock()
	if s.finished || s.sentLast.Load() {
		s.mu.Unlock()
		return nil
	}
	s.sentLast.Store(true)
	_ = s.withRetry(func(a *streamAttempt) (opResult, error) {
		if a.final != nil {
			return opOK, nil // the stream's outcome is decided
		}
		// gRPC's CloseSend always returns nil, even on an attempt that is
		// over: the next attempt replays it.
		return opOK, a.cs.CloseSend()
	}, func() {
		if !s.committed {
			s.replay = append(s.replay, replayOp{})
		}
	})
	return nil
}

// Context returns the stream's context. It is not the context of an
// attempt, which a retry abandons: it stays alive as long as the stream
// does, across retries, and ends (context.Canceled, or the error of the
// caller's context) when the stream ends: RecvMsg returned an error or
// io.EOF, SendMsg failed with an error of gRPC's own, or the caller's
// context ended. Calling it does not commit the stream: retries go on. Its
// deadline is the stream's (the caller's, or the default timeout), its
// values those of the caller's context and, for keys that one lacks, of
// the stream's latest attempt, so that peer.FromContext reports the server
// of the attempt in use.
func (s *clientStream) Context() context.Context {
	s.ctxMu.Lock()
	defer s.ctxMu.Unlock()
	if s.userCtx == nil {
		ctx, cancel := context.WithCancel(s.ctx)
		s.userCtx, s.cancelUser = &streamContext{Context: ctx, s: s}, cancel
		if s.ctxEnded {
			cancel()
		}
	}
	return s.userCtx
}

// streamContext is the context of a stream (see clientStream.Context):
// done when the stream ends; values from the stream's context, then from
// its latest attempt's.
type streamContext struct {
	context.Context
	s *clientStream
}

// Value returns the value of key in the stream's context or, when it has
// none, in the latest attempt's.
func (c *streamContext) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	if a := c.s.live.Load(); a != nil {
		return a.cs.Context().Value(key)
	}
	return nil
}

package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/codes"

	"github.com/engineeringlabs/grpc-resilience/breaker"
	"github.com/engineeringlabs/grpc-resilience/interceptors"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/internal/keycache"
)

// ScopeName is the instrumentation scope of the tracer and the meter that
// New takes from the providers.
const ScopeName = "github.com/engineeringlabs/grpc-resilience/interceptors/telemetry"

// Config says where the telemetry goes. Every field is optional; the zero
// Config sends everything to the OpenTelemetry globals and slog.Default(),
// as they are when New is called (a global provider set later is still
// used, through the globals' delegation). New copies it.
type Config struct {
	// TracerProvider makes the spans. Nil: otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the instruments. Nil: otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Logger receives the log records of resilience events. Nil:
	// slog.Default().
	Logger *slog.Logger
	// Propagator injects each attempt's trace context into the attempt's
	// outgoing metadata. Nil: otel.GetTextMapPropagator() once the
	// application has set one, and until then W3C Trace Context and
	// Baggage (propagation.TraceContext{} and propagation.Baggage{}), so
	// that a server sees its caller's trace without further set-up. To
	// inject nothing, set an empty propagation.NewCompositeTextMapPropagator().
	Propagator propagation.TextMapPropagator
}

// Telemetry turns the events of the client pipeline (package interceptors)
// and of the server interceptors (package server) into spans, metrics and
// log records, as the package documentation describes.
//
// A Telemetry is safe for concurrent use, and one may serve any number of
// clients and servers: its instruments are created once, in New. Create it
// with New; the zero Telemetry is not usable.
type Telemetry struct {
	// tracer is the tracer of Config.TracerProvider; nil when it is a
	// no-op provider, or when the global one is to be used.
	tracer trace.Tracer
	// global: the tracer comes from the global provider, looked up per
	// call (see currentTracer).
	global bool
	// noop: Config.TracerProvider and Config.MeterProvider are no-op
	// providers, so the client hooks skip spans and measurements, which
	// would record nothing, and only log.
	noop bool
	// globalTracer caches the tracer of the last global provider seen.
	globalTracer atomic.Pointer[providerTracer]
	// prop is Config.Propagator; nil: see propagator.
	prop propagation.TextMapPropagator
	log  *slog.Logger
	// clientObs and serverObs are the observers of ClientObserver and
	// ServerObserver, built once.
	clientObs interceptors.Observer
	serverObs server.Observer
	// caches holds the measurement options of each cache name.
	caches sync.Map // cache name -> *measurementOpts
	// overflowLogs limits the overflow warnings, per cache.
	overflowLogs sync.Map // cache name -> *logLimiter
	// now is the clock of the overflow log limit.
	now func() time.Time

	attempts        metric.Int64Counter
	retries         metric.Int64Counter
	hedges          metric.Int64Counter
	rejections      metric.Int64Counter
	transitions     metric.Int64Counter
	activeAttempts  metric.Int64UpDownCounter
	callDuration    metric.Float64Histogram
	attemptDuration metric.Float64Histogram
	bulkheadWait    metric.Float64Histogram
	serverRejects   metric.Int64Counter
	serverFaults    metric.Int64Counter
	serverDefaults  metric.Int64Counter
	evictions       metric.Int64Counter
	overflows       metric.Int64Counter
	clientLimited   metric.Int64Counter
	clientThrottled metric.Int64Counter
	serverLimited   metric.Int64Counter
	storeFailures   metric.Int64Counter

	// methods holds the attribute sets of each full method name, at most
	// maxMethods of them.
	methods *keycache.Cache[string, *methodAttrs]

	mu            sync.Mutex
	breakerStates map[string]breaker.State // guarded by mu
	bulkheads     []*watchedBulkheads      // guarded by mu
	rateLimits    []*watchedRateLimit      // guarded by mu
}

// New returns a Telemetry that writes to the providers of cfg, creating
// its instruments (see the package documentation for their names). It
// returns an error when the meter refuses an instrument.
func New(cfg Config) (*Telemetry, error) {
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	t := &Telemetry{
		global:        cfg.TracerProvider == nil,
		prop:          cfg.Propagator,
		log:           log,
		now:           time.Now,
		breakerStates: make(map[string]breaker.State),
	}
	t.methods = keycache.New(keycache.Config[string, *methodAttrs]{
		Max: maxMethods,
		OnEvict: func(string, *methodAttrs) {
			t.evictions.Add(context.Background(), 1, t.cacheOpts(CacheMethods).add...)
		},
	})
	co := clientObserver{t: t}
	t.clientObs = interceptors.Observer{
		OnCallStart:    co.callStart,
		OnCallEnd:      co.callEnd,
		OnAttemptStart: co.attemptStart,
		OnAttemptEnd:   co.attemptEnd,
		OnEvent:        co.event,
	}
	t.serverObs = server.Observer{OnEvent: serverObserver{t: t}.event}
	if tp := cfg.TracerProvider; tp != nil {
		if _, noop := tp.(tracenoop.TracerProvider); !noop {
			t.tracer = tp.Tracer(ScopeName)
		}
	}
	if _, noop := mp.(metricnoop.MeterProvider); noop {
		t.noop = t.tracer == nil && !t.global
	}
	m := mp.Meter(ScopeName)
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	seconds := func(name, desc string, bounds []float64) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(bounds...))
		errs = append(errs, err)
		return h
	}
	t.attempts = counter(MetricAttempts, "{attempt}", "Attempts of client calls that reached the invoker, by method and status code.")
	t.retries = counter(MetricRetries, "{retry}", "Retries decided by the client pipeline, by method and the status code that caused them.")
	t.hedges = counter(MetricHedges, "{hedge}", "Hedged attempts started by the client pipeline, by method.")
	t.rejections = counter(MetricRejections, "{rejection}", "Attempts or retries the client pipeline refused, by method and reason.")
	t.transitions = counter(MetricBreakerTransitions, "{transition}", "Circuit breaker state changes, by breaker, from and to.")
	t.serverRejects = counter(MetricServerRejections, "{call}", "Calls the server interceptors rejected, by method and reason.")
	t.serverFaults = counter(MetricServerFaults, "{fault}", "Faults the chaos interceptor injected, by method and kind.")
	t.serverDefaults = counter(MetricServerDefaultDeadlines, "{call}", "Calls that arrived without a deadline and got the server's default one, by method.")
	t.evictions = counter(MetricCacheEvictions, "{entry}", "Idle entries a bounded cache dropped to make room for a new key, by cache.")
	t.overflows = counter(MetricCacheOverflows, "{key}", "New keys a full bounded cache sent to its shared overflow entry, by cache.")
	t.clientLimited = counter(MetricClientRateLimited, "{attempt}", "Attempts the client's rate limit refused, by method.")
	t.clientThrottled = counter(MetricClientThrottled, "{attempt}", "Attempts the client's adaptive throttle rejected without sending them, by method.")
	t.serverLimited = counter(MetricServerRateLimited, "{call}", "Calls the server's rate limit rejected, by method and quota class.")
	t.storeFailures = counter(MetricRateLimitStoreFailures, "{call}", "Calls admitted because the rate limit's shared store could not decide, by method and quota class.")
	var err error
	t.activeAttempts, err = m.Int64UpDownCounter(MetricActiveAttempts, metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts of client calls in flight (between AttemptStart and AttemptEnd), by method."))
	errs = append(errs, err)
	t.callDuration = seconds(MetricCallDuration, "Duration of logical client calls, every attempt and wait included.", durationBounds)
	t.attemptDuration = seconds(MetricAttemptDuration, "Duration of single attempts of client calls.", durationBounds)
	t.bulkheadWait = seconds(MetricBulkheadWait, "Time client attempts waited for a bulkhead slot.", waitBounds)
	_, err = m.Int64ObservableGauge(MetricBreakerState, metric.WithUnit("{state}"),
		metric.WithDescription("State of each circuit breaker that changed state at least once: 0 closed, 1 open, 2 half-open."),
		metric.WithInt64Callback(t.observeBreakers))
	errs = append(errs, err)
	errs = append(errs, t.bulkheadGauges(m))
	errs = append(errs, t.rateLimitInstruments(m))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// durationBounds are the buckets of the call and attempt durations, in
// seconds: 1ms to 30s.
var durationBounds = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// waitBounds are the buckets of the bulkhead queue wait, in seconds: 10µs
// to 5s.
var waitBounds = []float64{0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5}

// ClientObserver returns the observer of the client pipeline, for
// interceptors.Config.Observer, with every hook set. It is safe for
// concurrent use; every call returns the same hooks, sharing t's
// instruments.
func (t *Telemetry) ClientObserver() interceptors.Observer { return t.clientObs }

// ServerObserver returns the observer of a server pipeline, for
// server.Config.Observer. It is safe for concurrent use; every call
// returns the same hook, sharing t's instruments.
func (t *Telemetry) ServerObserver() server.Observer { return t.serverObs }

// unsetGlobalPropagator is the global TextMapPropagator before any
// otel.SetTextMapPropagator: it delegates to the propagator set later, and
// until then injects nothing.
var unsetGlobalPropagator = otel.GetTextMapPropagator()

// defaultPropagator is what attempts are injected with while neither
// Config.Propagator nor the global propagator is set: W3C Trace Context
// and Baggage, what otelgrpc and most servers extract.
var defaultPropagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// propagator returns the propagator to inject an attempt's trace context
// with: Config.Propagator, else the global one once the application has
// set one, else defaultPropagator. Comparing with the unset global, a
// pointer, never panics: interface values of different dynamic types are
// unequal without comparing the values.
func (t *Telemetry) propagator() propagation.TextMapPropagator {
	if t.prop != nil {
		return t.prop
	}
	if p := otel.GetTextMapPropagator(); p != unsetGlobalPropagator {
		return p
	}
	return defaultPropagator
}

// unsetGlobalTracerProvider is the global TracerProvider before any
// otel.SetTracerProvider: it delegates to the provider set later, and until
// then makes non-recording spans that only carry their parent's context.
var unsetGlobalTracerProvider = otel.GetTracerProvider()

// providerTracer is a provider and its tracer.
type providerTracer struct {
	tp     trace.TracerProvider
	tracer trace.Tracer
}

// currentTracer returns the tracer to start spans with, or nil when spans
// would be no-ops: Config.TracerProvider is a no-op provider, or it is
// nil and no global provider has been set yet. Skipping the no-op spans
// is what makes telemetry on unset globals cost next to nothing; it loses
// nothing, since such spans record nothing and the parent's context stays
// in the call's context.
func (t *Telemetry) currentTracer() trace.Tracer {
	if !t.global {
		return t.tracer
	}
	tp := otel.GetTracerProvider()
	if tp == unsetGlobalTracerProvider {
		return nil
	}
	// Providers are pointers in practice; a provider of a type that ==
	// cannot compare is asked for its tracer on every call.
	if !reflect.TypeOf(tp).Comparable() {
		return tp.Tracer(ScopeName)
	}
	if c := t.globalTracer.Load(); c != nil && c.tp == tp {
		return c.tracer
	}
	c := &providerTracer{tp: tp, tracer: tp.Tracer(ScopeName)}
	t.globalTracer.Store(c)
	return c.tracer
}

// observeBreakers reports the last known state of each breaker.
func (t *Telemetry) observeBreakers(_ context.Context, o metric.Int64Observer) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, s := range t.breakerStates {
		o.Observe(int64(s), metric.WithAttributes(attribute.String(AttrBreakerName, name)))
	}
	return nil
}

// methodAttrs holds the attribute sets of one method, built once and then
// reused so that recording a measurement allocates nothing.
type methodAttrs struct {
	service, method string
	// callName and attemptName are the names of the call's and the
	// attempts' spans: "Sent.pkg.Service.Method" and
	// "Attempt.pkg.Service.Method".
	callName, attemptName string
	base                  attribute.Set // rpc.system, rpc.service, rpc.method
	baseOpt               measurementOpts
	codes                 [numCodes]lazyOpts             // base + rpc.grpc.status_code
	outcomes              [numCodes][numOutcome]lazyOpts // codes + resilience.outcome
	reasons               [numReasons]lazyOpts           // base + resilience.reason
	faults                [numFaults]lazyOpts            // base + resilience.fault.kind
	// limited is base + resilience.rate_limit.partition for the last
	// quota class seen: a method has one class per server.
	limited atomic.Pointer[classOpts]
}

// classOpts is the measurement options of one quota class.
type classOpts struct {
	class string
	opts  *measurementOpts
}

// rateLimited returns the options of base + resilience.rate_limit.partition
// = class.
func (a *methodAttrs) rateLimited(class string) *measurementOpts {
	if c := a.limited.Load(); c != nil && c.class == class {
		return c.opts
	}
	c := &classOpts{class: class, opts: newMeasurementOpts(attribute.NewSet(append(a.baseKV(), attribute.String(AttrRateLimitPartition, class))...))}
	a.limited.Store(c)
	return c.opts
}

const numCodes = int(codes.Unauthenticated) + 1

// measurementOpts is one attribute set ready to pass to Add and Record.
type measurementOpts struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

func newMeasurementOpts(set attribute.Set) *measurementOpts {
	o := metric.WithAttributeSet(set)
	return &measurementOpts{add: []metric.AddOption{o}, rec: []metric.RecordOption{o}}
}

// lazyOpts builds its measurementOpts on first use.
type lazyOpts struct {
	p atomic.Pointer[measurementOpts]
}

func (l *lazyOpts) get(build func() []attribute.KeyValue) *measurementOpts {
	if o := l.p.Load(); o != nil {
		return o
	}
	o := newMeasurementOpts(attribute.NewSet(build()...))
	l.p.CompareAndSwap(nil, o)
	return l.p.Load()
}

// maxMethods bounds the methods whose attribute sets a Telemetry keeps.
// Beyond it, the sets of a method not used recently are dropped, to be
// built again if it comes back: a server observer hears method names
// that callers chose.
const maxMethods = 1024

// attrsOf returns the attribute sets of fullMethod. The lookup of a known
// method takes no lock and allocates nothing.
func (t *Telemetry) attrsOf(fullMethod string) *methodAttrs {
	if a, ok := t.methods.Get(fullMethod); ok {
		return a
	}
	a, _ := t.methods.GetOrCreate(fullMethod, func() *methodAttrs { return newMethodAttrs(fullMethod) })
	return a // never refused: the cache has no Evictable, so it always makes room
}

// newMethodAttrs builds the attribute sets of fullMethod.
func newMethodAttrs(fullMethod string) *methodAttrs {
	service, method := splitMethod(fullMethod)
	name := spanName(fullMethod)
	a := &methodAttrs{service: service, method: method, callName: "Sent." + name, attemptName: "Attempt." + name}
	a.base = attribute.NewSet(rpcSystem, attribute.String(AttrRPCService, service), attribute.String(AttrRPCMethod, method))
	a.baseOpt = *newMeasurementOpts(a.base)
	return a
}

func (a *methodAttrs) baseKV() []attribute.KeyValue { return a.base.ToSlice() }

func (a *methodAttrs) code(c codes.Code) *measurementOpts {
	i := int(c)
	if i < 0 || i >= numCodes {
		i = int(codes.Unknown)
	}
	return a.codes[i].get(func() []attribute.KeyValue {
		return append(a.baseKV(), attribute.Int(AttrRPCStatusCode, i))
	})
}

func (a *methodAttrs) outcome(c codes.Code, o outcome) *measurementOpts {
	i := int(c)
	if i < 0 || i >= numCodes {
		i = int(codes.Unknown)
	}
	return a.outcomes[i][o].get(func() []attribute.KeyValue {
		return append(a.baseKV(), attribute.Int(AttrRPCStatusCode, i), attribute.String(AttrOutcome, outcomeNames[o]))
	})
}

func (a *methodAttrs) reason(r reason) *measurementOpts {
	return a.reasons[r].get(func() []attribute.KeyValue {
		return append(a.baseKV(), attribute.String(AttrReason, reasonNames[r]))
	})
}

// splitMethod splits "/pkg.Service/Method" into "pkg.Service" and
// "Method". A name of another form is the service, with an empty method.
func splitMethod(fullMethod string) (service, method string) {
	name := strings.TrimPrefix(fullMethod, "/")
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return name, ""
}

// spanName is the part of a span name that names the method:
// "pkg.Service.Method", the full method name with its slashes replaced by
// dots, as gRFC A72 names the call span "Sent.pkg.Service.Method" and the
// attempt span "Attempt.pkg.Service.Method". It tells them from the spans
// of otelgrpc, named "pkg.Service/Method" after the RPC semantic
// conventions.
func spanName(fullMethod string) string {
	if name := strings.ReplaceAll(strings.TrimPrefix(fullMethod, "/"), "/", "."); name != "" {
		return name
	}
	return "grpc"
}

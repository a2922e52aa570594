package console

import (
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// Defaults of the Config fields.
const (
	DefaultInterval   = time.Second
	DefaultHistory    = 300
	DefaultMaxRows    = 500
	DefaultMaxEvents  = 100
	DefaultMaxRetried = 30
	DefaultTitle      = "grpc-resilience"
)

// Upper bounds of the Config fields; see Config for the memory they
// bound. maxHistory is what the page draws (MAX_POINTS in console.js).
const (
	maxHistory = 300
	maxRows    = 1000
	maxEvents  = 1000
	maxRetried = 200
)

// TraceIDPlaceholder is what Config.TraceURL replaces with a trace id.
const TraceIDPlaceholder = "{trace_id}"

// Config configures a [Console]. The zero Config is valid: a sample every
// second, five minutes of history per row, 500 rows per pipeline, the
// latest 100 events and 30 retried calls, no trace links, and answers only
// to requests addressed to an IP address or localhost.
//
// # Memory
//
// The fields bound what a console keeps, whatever the traffic. Per
// registered pipeline, at most:
//
//   - MaxRows histories (only rows shown keep one) of History samples of
//     24 bytes each, grown as samples come: 3.6 MB with the defaults;
//   - the counters and sampling state of 4 x MaxRows rows, about 1.2 KB
//     each with names at their MaxNameLen cap: 2.4 MB with the defaults;
//   - the failed attempts of 256 calls still running: about 0.3 MB;
//   - the latest sample of its rows, about 1.2 KB a row: 0.6 MB.
//
// That is at most about 7 MB per pipeline with the defaults and 14 MB at
// the maximums (History 300, MaxRows 1000); a server pipeline filled to
// its caps with 200-byte method names and full histories holds 7.0 MB and
// 9.7 MB. Per console: MaxEvents events and MaxRetried retried calls,
// about 1 KB and 2 KB each (0.2 MB with the defaults, 1.4 MB at the
// maximums). While a page loads or a script asks for histories, the
// console also holds one encoding of the snapshot with histories, made
// once per sample and shared by every request: about 6.5 KB per row shown
// with the default History, up to 20 KB when every value has many digits
// (3 to 10 MB for a pipeline of 500 rows); the event stream's later
// messages, without histories, take under 1 KB per row.
type Config struct {
	// Interval is the time between two samples of the pipelines, and the
	// step of the histories and of the rates. Zero means
	// DefaultInterval (1s); it must be between 100ms and 1m. A breaker
	// transition is shown without waiting for the next sample.
	Interval time.Duration
	// History is how many samples each row keeps for its sparklines. Zero
	// means DefaultHistory (300, five minutes at 1s); at most 300, what
	// the page draws.
	History int
	// MaxRows is the most rows a pipeline shows; the page and the JSON
	// say how many more there were. Zero means DefaultMaxRows (500); at
	// most 1000.
	MaxRows int
	// MaxEvents is how many of the latest events are kept. Zero means
	// DefaultMaxEvents (100); at most 1000.
	MaxEvents int
	// MaxRetried is how many of the latest retried calls are kept. Zero
	// means DefaultMaxRetried (30); at most 200.
	MaxRetried int
	// TraceURL, when set, links each retried call that carried a trace to
	// this URL with TraceIDPlaceholder replaced by the trace id in hex,
	// for example "http://localhost:16686/trace/{trace_id}" for Jaeger. It
	// must be an absolute http or https URL containing the placeholder.
	// The default, empty, shows trace ids without links.
	TraceURL string
	// Title is the page's title. Zero means DefaultTitle.
	Title string
	// AllowedHosts are the host names, besides IP addresses and
	// localhost, that requests may be addressed to (their Host header,
	// without the port; compared without regard to case). The console
	// answers other requests with 403 Forbidden, so that a web page
	// cannot read it through a name of its own that resolves to the
	// console's address (DNS rebinding). Empty, the default, allows IP
	// addresses and "localhost" only; list
	// the names the console is reached by, such as "admin.internal", or
	// "*" to allow any host (behind a proxy that checks the host itself).
	// Each entry must be "*" or a host name without port, scheme or path.
	AllowedHosts []string
}

// Validate reports every invalid field at once, each as a
// *[resilience.FieldError], joined with [errors.Join]. The zero Config is
// valid.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, field string, value any, reason string) {
		if !ok {
			errs = append(errs, &resilience.FieldError{Field: field, Value: value, Reason: reason})
		}
	}
	check(c.Interval == 0 || (c.Interval >= 100*time.Millisecond && c.Interval <= time.Minute),
		"Interval", c.Interval, "must be 0 (1s) or between 100ms and 1m")
	check(c.History >= 0 && c.History <= maxHistory, "History", c.History, "must be between 0 (300) and 300, the samples the page draws")
	check(c.MaxRows >= 0 && c.MaxRows <= maxRows, "MaxRows", c.MaxRows, "must be between 0 (500) and 1000")
	check(c.MaxEvents >= 0 && c.MaxEvents <= maxEvents, "MaxEvents", c.MaxEvents, "must be between 0 (100) and 1000")
	check(c.MaxRetried >= 0 && c.MaxRetried <= maxRetried, "MaxRetried", c.MaxRetried, "must be between 0 (30) and 200")
	if c.TraceURL != "" {
		u, err := url.Parse(strings.ReplaceAll(c.TraceURL, TraceIDPlaceholder, "0"))
		check(err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "",
			"TraceURL", c.TraceURL, "must be an absolute http or https URL")
		check(strings.Contains(c.TraceURL, TraceIDPlaceholder), "TraceURL", c.TraceURL, "must contain "+TraceIDPlaceholder)
	}
	check(len(c.Title) <= MaxNameLen, "Title", c.Title, "must be at most 200 bytes")
	for i, h := range c.AllowedHosts {
		check(validHostName(h), "AllowedHosts["+strconv.Itoa(i)+"]", h,
			`must be "*" or a host name without port, scheme or path`)
	}
	return errors.Join(errs...)
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.History == 0 {
		c.History = DefaultHistory
	}
	if c.MaxRows == 0 {
		c.MaxRows = DefaultMaxRows
	}
	if c.MaxEvents == 0 {
		c.MaxEvents = DefaultMaxEvents
	}
	if c.MaxRetried == 0 {
		c.MaxRetried = DefaultMaxRetried
	}
	if c.Title == "" {
		c.Title = DefaultTitle
	}
	c.AllowedHosts = slices.Clone(c.AllowedHosts)
	return c
}

// traceURL returns the link to trace id, or "" without a template.
func (c Config) traceURL(id string) string {
	if c.TraceURL == "" || id == "" {
		return ""
	}
	return strings.ReplaceAll(c.TraceURL, TraceIDPlaceholder, id)
}

// validHostName reports whether h is "*" or looks like a host name: 1 to
// 253 bytes of letters, digits, '-', '_' and '.', not starting with '.'.
func validHostName(h string) bool {
	if h == "*" {
		return true
	}
	if h == "" || len(h) > 253 || h[0] == '.' {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

package console

import (
	"embed"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// contentSecurityPolicy allows the page its own script, style and event
// stream and nothing else: no inline script, no remote origin, no frames.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// maxStreams bounds the event streams served at once; past it a client
// gets 503 and the page polls instead.
const maxStreams = 64

// keepAlive is how often an idle event stream gets a comment, so that
// proxies keep it open.
const keepAlive = 15 * time.Second

// writeTimeout bounds each write to an event stream, so that a client
// that stopped reading does not hold its goroutine.
const writeTimeout = 30 * time.Second

// ServeHTTP serves the console under whatever path it is mounted on, with
// relative links, so mount it on a pattern that ends with a slash:
//
//	http.Handle("/resilience/", c)
//
// It answers GET and HEAD only (other methods get 405):
//
//   - …/ — the page (HTML; its script and style come from the same folder);
//   - …/snapshot.json — the latest Snapshot as JSON, with each row's
//     history unless the query has history=0;
//   - …/events — the snapshots as a stream of server-sent events named
//     "snapshot", one per sample, the first with histories.
//
// Every response forbids inline script and remote origins with a
// Content-Security-Policy, and content sniffing. A request addressed to a
// host name that is not localhost and not in Config.AllowedHosts gets 403
// Forbidden, whatever its path: a web page that makes its own name resolve
// to the console's address (DNS rebinding) cannot read the console.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	if !c.hostAllowed(r.Host) {
		http.Error(w, "forbidden: the console answers requests addressed to an IP address, localhost or a name in console.Config.AllowedHosts", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: the console is read-only", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if strings.HasSuffix(p, "/") || p == "" {
		c.serveAsset(w, r, "index.html", "text/html; charset=utf-8")
		return
	}
	switch path.Base(p) {
	case "snapshot.json":
		c.serveSnapshot(w, r)
	case "events":
		c.serveEvents(w, r)
	case "console.js":
		c.serveAsset(w, r, "console.js", "text/javascript; charset=utf-8")
	case "console.css":
		c.serveAsset(w, r, "console.css", "text/css; charset=utf-8")
	default:
		http.NotFound(w, r)
	}
}

func (c *Console) serveAsset(w http.ResponseWriter, r *http.Request, name, contentType string) {
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-cache")
	if r.Method == http.MethodHead {
		return
	}
	w.Write(b)
}

func (c *Console) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	f := c.current.Load()
	var b []byte
	if r.URL.Query().Get("history") == "0" {
		b = f.leanJSON()
	} else {
		b = f.fullJSON(c)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return
	}
	w.Write(b)
}

// leanJSON returns the frame's snapshot as JSON without histories, made
// once.
func (f *frame) leanJSON() []byte {
	f.leanOnce.Do(func() { f.lean = mustJSON(f.snap) })
	return f.lean
}

// fullJSON returns the frame's snapshot as JSON with every row's history,
// made once: however many requests come, a frame costs one encoding.
func (f *frame) fullJSON(c *Console) []byte {
	f.fullOnce.Do(func() { f.full = mustJSON(f.withHistory(c)) })
	return f.full
}

// mustJSON encodes v, which holds only finite numbers, strings and
// times, and so always encodes.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"error":"encoding the snapshot failed"}`)
	}
	return b
}

func (c *Console) serveEvents(w http.ResponseWriter, r *http.Request) {
	if n := c.streams.Add(1); n > maxStreams {
		c.streams.Add(-1)
		w.Header().Set("Retry-After", "10")
		http.Error(w, "too many event streams; poll snapshot.json", http.StatusServiceUnavailable)
		return
	}
	defer c.streams.Add(-1)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	send := func(b []byte) bool {
		if err := rc.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	f := c.current.Load()
	if !send(event(f.fullJSON(c), "retry: 3000\n")) {
		return
	}
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.done:
			return
		case <-ping.C:
			if !send([]byte(": keep-alive\n\n")) {
				return
			}
		case <-f.next:
			f = c.current.Load()
			if !send(event(f.leanJSON(), "")) {
				return
			}
		}
	}
}

// event frames data as one server-sent event named "snapshot"; data holds
// no newline (JSON from encoding/json never does).
func event(data []byte, prefix string) []byte {
	b := make([]byte, 0, len(prefix)+len(data)+32)
	b = append(b, prefix...)
	b = append(b, "event: snapshot\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// hostAllowed reports whether a request addressed to host (its Host
// header, with or without a port) may be answered: an IP address,
// localhost, or a name of Config.AllowedHosts.
func (c *Console) hostAllowed(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		// HTTP/1.0 without a Host header: no name to rebind.
		return true
	}
	if _, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); err == nil {
		return true
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	for _, a := range c.cfg.AllowedHosts {
		if a == "*" || strings.EqualFold(a, host) {
			return true
		}
	}
	return false
}

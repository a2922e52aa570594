package console

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resilience "github.com/engineeringlabs/grpc-resilience"
	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
)

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// openBreaker fails calls until the client's breaker opened.
func openBreaker(t *testing.T, r *rig) {
	t.Helper()
	r.fail.Store(true)
	// The breaker's hook runs in the call that opens it: each failed call
	// either opened it or did not, no waiting needed.
	for range 100 {
		r.call(t)
		if r.opened.Load() != 0 {
			return
		}
	}
	t.Fatal("the breaker did not open after 100 failed calls")
}

func findPipeline(t *testing.T, s Snapshot, kind, name string) Pipeline {
	t.Helper()
	for _, p := range s.Pipelines {
		if p.Kind == kind && p.Name == name {
			return p
		}
	}
	t.Fatalf("no %s %q in %+v", kind, name, s.Pipelines)
	return Pipeline{}
}

func counter(p Pipeline, kind string) uint64 {
	for _, c := range p.Counters {
		if c.Kind == kind {
			return c.Total
		}
	}
	return 0
}

func TestSnapshotJSON(t *testing.T) {
	r := newRig(t, rigConfig{manual: true, server: server.Config{
		Bulkhead: server.BulkheadConfig{Limit: 4, PartitionBy: server.PartitionByHeader, Header: "x-caller"},
		Deadline: server.DeadlineConfig{Default: time.Second},
	}})
	for range 5 {
		if err := r.call(t, "x-caller", "alice"); err != nil {
			t.Fatal(err)
		}
	}
	r.sample(t)
	openBreaker(t, r)
	r.sample(t)

	resp, body := get(t, r.url("")+"snapshot.json")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("snapshot.json: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	var s Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("decode: %v\n%s", err, body)
	}
	if len(s.Pipelines) != 2 {
		t.Fatalf("pipelines = %d, want 2", len(s.Pipelines))
	}
	// Trouble first: the client with its open breaker.
	if p := s.Pipelines[0]; p.Kind != "client" || p.Name != "payments" || p.Trouble != TroubleOpen {
		t.Errorf("first pipeline = %s %q trouble %d, want the client with an open breaker", p.Kind, p.Name, p.Trouble)
	}
	cl := findPipeline(t, s, "client", "payments")
	if len(cl.Rows) == 0 || cl.Rows[0].Breaker == nil || cl.Rows[0].Breaker.State != "open" {
		t.Fatalf("client rows = %+v, want the open breaker first", cl.Rows)
	}
	row := cl.Rows[0]
	if row.Method != "/grpcresilience.testing.v1.TestService/Query" || row.Target == "" || row.Retry == nil || row.Retry.MaxAttempts != 2 {
		t.Errorf("row = %+v", row)
	}
	if row.History == nil || len(row.History.TimeMS) == 0 {
		t.Errorf("snapshot.json row has no history: %+v", row.History)
	}
	if counter(cl, "retry") == 0 || counter(cl, "breaker-state-change") == 0 {
		t.Errorf("client counters = %+v, want retries and a transition", cl.Counters)
	}
	var sawOpen bool
	for _, e := range s.Events {
		if e.Kind == "breaker-state-change" && strings.Contains(e.Text, "→ open") {
			sawOpen = true
		}
	}
	if !sawOpen {
		t.Errorf("events = %+v, want the opening", s.Events)
	}
	if len(s.Retried) == 0 || s.Retried[0].Attempts != 2 || s.Retried[0].Code != codes.Unavailable.String() {
		t.Errorf("retried = %+v, want calls of 2 attempts that failed", s.Retried)
	}
	sv := findPipeline(t, s, "server", "api")
	if sv.Server == nil || !strings.Contains(sv.Server.Bulkhead, "limit 4") || !strings.Contains(sv.Server.Deadline, "gives 1s") {
		t.Errorf("server settings = %+v", sv.Server)
	}
	var partitions int
	for _, row := range sv.Rows {
		if row.Kind == RowPartition && row.Key != "" {
			partitions++
			if row.Key == "alice" {
				t.Errorf("the caller key shows raw: %+v", row)
			}
		}
	}
	if partitions != 1 {
		t.Errorf("server rows = %+v, want one keyed partition", sv.Rows)
	}

	// history=0 leaves the histories out.
	_, lean := get(t, r.url("")+"snapshot.json?history=0")
	if strings.Contains(string(lean), `"history"`) {
		t.Errorf("history=0 still has histories")
	}
}

func TestReadOnlyAndHeaders(t *testing.T) {
	r := newRig(t, rigConfig{manual: true})
	paths := []string{"", "snapshot.json", "events", "console.js", "console.css", "nothing-here"}
	for _, p := range paths {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			req, _ := http.NewRequest(m, r.url("")+p, strings.NewReader("x"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s /%s = %s (Allow %q), want 405", m, p, resp.Status, resp.Header.Get("Allow"))
			}
		}
	}
	for _, p := range []string{"", "snapshot.json", "console.js", "console.css"} {
		resp, _ := get(t, r.url("")+p)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /%s = %s", p, resp.Status)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET /%s: CSP %q lacks %q", p, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") || strings.Contains(csp, "http") || strings.Contains(csp, "*") {
			t.Errorf("GET /%s: CSP %q allows inline code or a remote origin", p, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET /%s: no nosniff", p)
		}
	}
	if resp, _ := get(t, r.url("")+"nothing-here"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing-here = %s, want 404", resp.Status)
	}
	// The page has no inline script or style, and links its assets
	// relatively.
	_, page := get(t, r.url(""))
	html := string(page)
	if strings.Contains(html, "<script>") || strings.Contains(html, "style=") || strings.Contains(html, "<style") ||
		strings.Contains(html, `src="/`) || strings.Contains(html, `href="/`) || strings.Contains(html, "://") {
		t.Errorf("page has inline code or absolute links:\n%s", html)
	}
}

func TestPrefixMount(t *testing.T) {
	const mount = "/admin/resilience/"
	r := newRig(t, rigConfig{manual: true, mount: mount})
	for p, ctype := range map[string]string{
		"":              "text/html; charset=utf-8",
		"console.js":    "text/javascript; charset=utf-8",
		"console.css":   "text/css; charset=utf-8",
		"snapshot.json": "application/json",
	} {
		resp, _ := get(t, r.url(mount)+p)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ctype {
			t.Errorf("GET %s%s = %s %q, want 200 %q", mount, p, resp.Status, resp.Header.Get("Content-Type"), ctype)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev := openEvents(t, ctx, r.url(mount)+"events")
	if _, err := ev.next(); err != nil {
		t.Fatalf("first event under the prefix: %v", err)
	}
	if resp, _ := get(t, r.http.URL+"/snapshot.json"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("outside the mount: %s", resp.Status)
	}
}

// eventReader reads the snapshots of an event stream.
type eventReader struct {
	resp *http.Response
	br   *bufio.Reader
}

func openEvents(t *testing.T, ctx context.Context, url string) *eventReader {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	return &eventReader{resp: resp, br: bufio.NewReader(resp.Body)}
}

// next returns the data of the next "snapshot" event.
func (e *eventReader) next() (string, error) {
	var name, data string
	for {
		line, err := e.br.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if name == "snapshot" && data != "" {
				return data, nil
			}
			name, data = "", ""
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
}

func TestEventStream(t *testing.T) {
	r := newRig(t, rigConfig{manual: true})
	if err := r.call(t); err != nil {
		t.Fatal(err)
	}
	r.sample(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ev := openEvents(t, ctx, r.url("")+"events")
	first, err := ev.next()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(first, `"history"`) {
		t.Errorf("the first event has no histories: %s", first)
	}
	// Each sample sends a snapshot, without histories.
	for i := range 3 {
		r.sample(t)
		data, err := ev.next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		var s Snapshot
		if err := json.Unmarshal([]byte(data), &s); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if len(s.Pipelines) != 2 || strings.Contains(data, `"history"`) {
			t.Errorf("event %d: %d pipelines, histories %v", i, len(s.Pipelines), strings.Contains(data, `"history"`))
		}
	}
	// A transition is sent at once, without waiting for a tick.
	openBreaker(t, r)
	for {
		data, err := ev.next()
		if err != nil {
			t.Fatalf("waiting for the open breaker: %v", err)
		}
		if strings.Contains(data, `"state":"open"`) {
			break
		}
	}
}

func TestCloseEndsStreams(t *testing.T) {
	r := newRig(t, rigConfig{manual: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ev := openEvents(t, ctx, r.url("")+"events")
	if _, err := ev.next(); err != nil {
		t.Fatal(err)
	}
	if err := r.console.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.console.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ev.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after Close: %v, want EOF", err)
	}
	// The handler still serves the last snapshot.
	if resp, _ := get(t, r.url("")+"snapshot.json"); resp.StatusCode != http.StatusOK {
		t.Errorf("snapshot.json after Close: %s", resp.Status)
	}
}

func TestRemove(t *testing.T) {
	c, sample := manual(t, Config{})
	r := newRig(t, rigConfig{manual: true})
	remove := c.AddClient("again", r.client)
	if n := len(sample().Pipelines); n != 1 {
		t.Fatalf("%d pipelines after AddClient, want 1", n)
	}
	remove()
	remove()
	if n := len(sample().Pipelines); n != 0 {
		t.Fatalf("%d pipelines after remove, want 0", n)
	}
	c.Close()
	c.AddServer("late", r.pipeline)()
	if n := len(c.pipesForTest()); n != 0 {
		t.Errorf("%d pipelines registered after Close", n)
	}
}

func TestBounded(t *testing.T) {
	r := newRig(t, rigConfig{manual: true, console: Config{MaxRows: 3, MaxEvents: 4, MaxRetried: 2, History: 5}})
	// Many methods: a row each, and an event each (UNIMPLEMENTED is not
	// retried, but each call of an unknown method makes a client state).
	for i := range 20 {
		err := r.conn.Invoke(context.Background(), "/pkg.Svc/M"+strings.Repeat("x", i), &emptyMsg{}, &emptyMsg{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	openBreaker(t, r)
	var s Snapshot
	for range 8 {
		s = r.sample(t)
	}
	cl := findPipeline(t, s, "client", "payments")
	if len(cl.Rows) != 3 || cl.Hidden != 18 {
		t.Errorf("rows = %d, hidden = %d; want 3 and 18", len(cl.Rows), cl.Hidden)
	}
	for _, row := range cl.Rows {
		if row.History == nil || len(row.History.TimeMS) > 5 {
			t.Errorf("row %s history = %+v, want at most 5 samples", row.ID, row.History)
		}
	}
	if len(s.Events) > 4 || len(s.Retried) > 2 || len(s.Retried) == 0 {
		t.Errorf("events = %d, retried = %d; want at most 4 and 1 or 2", len(s.Events), len(s.Retried))
	}
	for _, p := range r.console.pipesForTest() {
		if n := len(p.states); n > 4*3+1 {
			t.Errorf("%s row states = %d, want at most 13", p.kind, n)
		}
		var hists int
		for _, st := range p.states {
			if st.hist != nil {
				hists++
			}
		}
		if hists > 3 {
			t.Errorf("%s: %d rows keep a history, want at most the 3 shown", p.kind, hists)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	bad := Config{
		Interval:     time.Millisecond,
		History:      -1,
		MaxRows:      maxRows + 1,
		MaxEvents:    -1,
		MaxRetried:   -1,
		TraceURL:     "javascript:alert(1)",
		Title:        strings.Repeat("t", 201),
		AllowedHosts: []string{"http://admin"},
	}
	err := bad.Validate()
	fields := map[string]bool{}
	for _, fe := range resilience.FieldErrors(err) {
		fields[fe.Field] = true
	}
	for _, f := range []string{"Interval", "History", "MaxRows", "MaxEvents", "MaxRetried", "TraceURL", "Title", "AllowedHosts[0]"} {
		if !fields[f] {
			t.Errorf("Validate did not report %s: %v", f, err)
		}
	}
	if _, err := New(bad); err == nil {
		t.Error("New accepted an invalid Config")
	}
	if err := (Config{TraceURL: "http://localhost:16686/trace/{trace_id}"}).Validate(); err != nil {
		t.Errorf("Jaeger URL: %v", err)
	}
	if err := (Config{TraceURL: "http://localhost:16686/trace/"}).Validate(); err == nil {
		t.Error("a TraceURL without the placeholder was accepted")
	}
}

func TestClip(t *testing.T) {
	if got := clip("short"); got != "short" {
		t.Errorf("clip(short) = %q", got)
	}
	long := strings.Repeat("é", 150) // 300 bytes
	got := clip(long)
	if len(got) > MaxNameLen || !strings.HasSuffix(got, ellipsis) || !strings.HasPrefix(long, strings.TrimSuffix(got, ellipsis)) {
		t.Errorf("clip(long) = %q (%d bytes)", got, len(got))
	}
}

func TestRing(t *testing.T) {
	r := newRing[int](3)
	for i := range 10 {
		r.add(i)
	}
	if got := r.newestFirst(); len(got) != 3 || got[0] != 9 || got[2] != 7 {
		t.Errorf("newestFirst = %v, want [9 8 7]", got)
	}
}

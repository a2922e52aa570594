package console

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/engineeringlabs/grpc-resilience/interceptors/server"
	"github.com/engineeringlabs/grpc-resilience/internal/browsertest"
)

// open loads the page in a new tab and waits until it rendered a
// snapshot.
func open(t *testing.T, b *browsertest.Browser, url string) *browsertest.Page {
	t.Helper()
	p := b.NewPage(t)
	ctx, cancel := context.WithTimeout(p.Context(), 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	waitFor(t, p, `Number(document.body.getAttribute("data-updates")) > 0`, 30*time.Second)
	return p
}

// waitFor polls expr in the page until it is true, for at most d, and
// returns how long that took.
func waitFor(t *testing.T, p *browsertest.Page, expr string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(p.Context(), d+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(d))); err != nil {
		t.Fatalf("waiting %v for %s: %v\nconsole: %q", d, expr, err, p.Messages())
	}
	return time.Since(start)
}

// shownAt waits, for at most d, until cond is true in the page and
// returns when the page first found it true, by the page's clock (the
// machine's): the time the page showed it, not the time the test noticed.
func shownAt(t *testing.T, p *browsertest.Page, cond string, d time.Duration) time.Time {
	t.Helper()
	// The page checks cond every 20ms and notes the first time it holds.
	expr := `(function () { if (window.__shownAt) { return true; } if (` + cond + `) { window.__shownAt = Date.now(); return true; } return false; }())`
	eval[bool](t, p, `(function () { window.__shownAt = 0; return true; }())`)
	waitFor(t, p, expr, d)
	return time.UnixMilli(int64(eval[float64](t, p, `window.__shownAt`)))
}

// eval returns the value of expr in the page.
func eval[T any](t *testing.T, p *browsertest.Page, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.Context(), 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func TestBrowser(t *testing.T) {
	b := browsertest.Start(t)

	t.Run("breaker opens and closes live", func(t *testing.T) {
		r := newRig(t, rigConfig{console: Config{Interval: 500 * time.Millisecond}})
		if err := r.call(t); err != nil {
			t.Fatal(err)
		}
		p := open(t, b, r.url(""))
		waitFor(t, p, `document.querySelectorAll('[data-breaker-state="closed"]').length > 0`, 10*time.Second)

		openBreaker(t, r)
		openedAt := time.Unix(0, r.opened.Load())
		// Generous on the wait, strict on what was measured: from the
		// transition to the page showing it.
		shown := shownAt(t, p, `document.querySelectorAll('[data-breaker-state="open"]').length > 0`, 10*time.Second)
		if d := shown.Sub(openedAt); d > 2*time.Second {
			t.Errorf("the page showed the open breaker %v after it opened, want at most 2s", d)
		}
		if got := eval[string](t, p, `document.querySelector('[data-pipeline="client:payments"]').getAttribute("data-trouble")`); got != "4" {
			t.Errorf("client pipeline trouble = %q, want 4", got)
		}

		// Recovery: the probes succeed and the breaker closes.
		r.fail.Store(false)
		if !until(20*time.Second, func() bool {
			r.call(t)
			return r.closed.Load() > r.opened.Load()
		}) {
			t.Fatal("the breaker did not close")
		}
		closedAt := time.Unix(0, r.closed.Load())
		shown = shownAt(t, p, `document.querySelectorAll('[data-breaker-state="open"]').length === 0 && document.querySelectorAll('[data-breaker-state="closed"]').length > 0`, 10*time.Second)
		if d := shown.Sub(closedAt); d > 2*time.Second {
			t.Errorf("the page showed the closed breaker %v after it closed, want at most 2s", d)
		}
		// The events list shows both transitions.
		waitFor(t, p, `Array.from(document.querySelectorAll('#events tr[data-kind="breaker-state-change"]')).some(function (tr) { return tr.textContent.indexOf("→ open") >= 0; })`, 10*time.Second)
		p.CheckClean(t)
	})

	t.Run("hostile names are shown as text", func(t *testing.T) {
		r := newRig(t, rigConfig{console: Config{Interval: 200 * time.Millisecond}, server: server.Config{
			Bulkhead: server.BulkheadConfig{Limit: 8, PartitionBy: server.PartitionByHeader, Header: "x-caller", ShowKeys: true},
		}})
		hostileKey := `<script>window.__pwned=1</script>"'&<img src=x onerror="window.__pwned=2;alert(2)">`
		if err := r.call(t, "x-caller", hostileKey); err != nil {
			t.Fatal(err)
		}
		methods := []string{
			"/pkg.Svc/<script>window.__pwned=3;alert(3)</script>",
			`/pkg.Svc/"><img src=x onerror="window.__pwned=4;alert(4)">`,
			"/pkg.Svc/" + strings.Repeat("A", 10<<10),
		}
		for _, m := range methods {
			if err := r.conn.Invoke(context.Background(), m, &emptyMsg{}, &emptyMsg{}); status.Code(err) != codes.Unimplemented {
				t.Fatalf("call %.40q: %v", m, err)
			}
		}
		p := open(t, b, r.url(""))
		waitFor(t, p, `document.body.textContent.indexOf("<script>window.__pwned=3;alert(3)</script>") >= 0`, 10*time.Second)
		waitFor(t, p, `document.body.textContent.indexOf("<script>window.__pwned=1</script>") >= 0`, 10*time.Second)
		waitFor(t, p, `document.body.textContent.indexOf('"><img src=x onerror="window.__pwned=4;alert(4)">') >= 0`, 10*time.Second)
		if v := eval[bool](t, p, `window.__pwned === undefined`); !v {
			t.Error("a script in a name ran")
		}
		if n := eval[int](t, p, `document.querySelectorAll("main img, main script, main iframe").length`); n != 0 {
			t.Errorf("names became %d elements", n)
		}
		// The 10 KB method name is cut to MaxNameLen bytes with an
		// ellipsis.
		longest := eval[int](t, p, `Math.max.apply(null, Array.from(document.querySelectorAll("td.name b")).map(function (e) { return new TextEncoder().encode(e.textContent).length; }))`)
		if longest > MaxNameLen {
			t.Errorf("a name of %d bytes is shown, want at most %d", longest, MaxNameLen)
		}
		if !eval[bool](t, p, `Array.from(document.querySelectorAll("td.name b")).some(function (e) { return /^\/pkg\.Svc\/A+…$/.test(e.textContent); })`) {
			t.Error("the long name is not shown cut with an ellipsis")
		}
		if d := p.Dialogs(); len(d) > 0 {
			t.Errorf("dialogs opened: %q", d)
		}
		p.CheckClean(t)
	})

	t.Run("methods past the cap show as other methods", func(t *testing.T) {
		r := newRig(t, rigConfig{console: Config{Interval: 200 * time.Millisecond, MaxRows: 2}})
		var srv *pipeline
		for _, p := range r.console.pipesForTest() {
			if p.server != nil {
				srv = p
			}
		}
		// More methods than the console counts rows for (4 x MaxRows).
		for i := range 4*2 + 3 {
			srv.serverEvent(context.Background(), server.Event{Kind: server.EventDeadlineRejected, FullMethod: "/pkg.Svc/M" + strings.Repeat("x", i)})
		}
		p := open(t, b, r.url(""))
		waitFor(t, p, `(function () { var tr = document.querySelector('[data-pipeline="server:api"] tr[data-row="other"]'); return tr !== null && tr.textContent.indexOf("other methods") >= 0; }())`, 10*time.Second)
		p.CheckClean(t)
	})

	t.Run("secret caller keys never show", func(t *testing.T) {
		const secret = "sk-live-0123456789abcdef-SECRET"
		r := newRig(t, rigConfig{console: Config{Interval: 200 * time.Millisecond}, server: server.Config{
			Bulkhead:  server.BulkheadConfig{Limit: 8, PartitionBy: server.PartitionByHeader, Header: "x-api-key"},
			RateLimit: server.RateLimitConfig{Rate: 1000, PartitionBy: server.PartitionByHeader, Header: "x-api-key"},
		}})
		for range 3 {
			if err := r.call(t, "x-api-key", secret); err != nil {
				t.Fatal(err)
			}
		}
		p := open(t, b, r.url(""))
		hashed := regexp.MustCompile(`k:[0-9a-f]{12}`)
		waitFor(t, p, `/k:[0-9a-f]{12}/.test(document.body.textContent)`, 10*time.Second)
		text := eval[string](t, p, `document.documentElement.outerHTML`)
		if strings.Contains(text, secret) || strings.Contains(text, "SECRET") {
			t.Errorf("the page shows the secret key")
		}
		if !hashed.MatchString(text) {
			t.Errorf("the page shows no hashed key")
		}
		resp, err := http.Get(r.url("") + "snapshot.json")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), "SECRET") {
			t.Errorf("snapshot.json shows the secret key")
		}
		if !hashed.Match(body) {
			t.Errorf("snapshot.json shows no hashed key")
		}
		p.CheckClean(t)
	})
}

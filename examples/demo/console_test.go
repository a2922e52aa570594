package main

import (
	"context"
	"flag"
	"os"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/engineeringlabs/grpc-resilience/internal/browsertest"
)

var screenshot = flag.String("screenshot", "", "write a PNG of the console during the outage of a full demo run to this path (for docs/console.png)")

// syncBuffer collects what the demo prints while the test reads it.
type syncBuffer struct {
	mu      sync.Mutex
	buf     []byte
	written chan struct{} // closed by the next Write
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if b.written != nil {
		close(b.written)
		b.written = nil
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// next returns what was written so far and a channel closed by the next
// Write.
func (b *syncBuffer) next() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.written == nil {
		b.written = make(chan struct{})
	}
	return string(b.buf), b.written
}

// startDemo runs the demo with cfg in the background and returns the
// console's URL, once printed, and a func that waits for the run's end.
func startDemo(t *testing.T, cfg config) (url string, wait func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, out) }()
	var finished bool
	wait = func() string {
		if !finished {
			finished = true
			if err := <-done; err != nil {
				t.Errorf("run: %v\n%s", err, out.String())
			}
			cancel()
		}
		return out.String()
	}
	t.Cleanup(func() { wait() })
	re := regexp.MustCompile(`Live console: (http://127\.0\.0\.1:\d+/)`)
	deadline := time.After(time.Minute)
	for {
		text, written := out.next()
		if m := re.FindStringSubmatch(text); m != nil {
			return m[1], wait
		}
		select {
		case <-written:
		case <-deadline:
			t.Fatalf("the demo printed no console URL within a minute:\n%s", out.String())
		}
	}
}

// poll evaluates expr in the page until it is true, for at most d.
func poll(t *testing.T, p *browsertest.Page, expr string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.Context(), d+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(d))); err != nil {
		t.Fatalf("waiting %v for %s: %v", d, expr, err)
	}
}

func evalPage[T any](t *testing.T, p *browsertest.Page, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.Context(), 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// fallbackTotal reads the total of the resilient client's fallback
// counter on the page; 0 before the first fallback.
const fallbackTotal = `(function () {
  var c = document.querySelector('[data-pipeline="client:resilient client"] [data-counter="fallback"]');
  if (!c) { return 0; }
  var m = /, (\d+) in all/.exec(c.textContent);
  return m ? Number(m[1]) : 0;
}())`

// The demo's console, in a real browser: the breaker goes red during the
// outage while the fallback counter climbs, the server shows its chaos, and
// the breaker is green again after the recovery, without a JavaScript
// error.
func TestConsoleInBrowser(t *testing.T) {
	b := browsertest.Start(t)
	cfg := shortConfig(t)
	cfg.Profile = "outage-only"
	cfg.Duration = 9 * time.Second // outage from 2.4s to 6s, recovery after
	cfg.Rate = 50
	url, wait := startDemo(t, cfg)

	p := b.NewPage(t)
	ctx, cancel := context.WithTimeout(p.Context(), 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	poll(t, p, `document.querySelectorAll('[data-pipeline="client:resilient client"] [data-breaker-state]').length > 0`, 30*time.Second)
	poll(t, p, `document.querySelectorAll('[data-breaker-state="open"]').length > 0`, 30*time.Second)
	poll(t, p, `document.querySelector('[data-pipeline="server:server"] [data-chaos="on"]') !== null`, 10*time.Second)
	poll(t, p, fallbackTotal+` > 0`, 10*time.Second)
	first := evalPage[int](t, p, fallbackTotal)
	poll(t, p, fallbackTotal+` > `+strconv.Itoa(first), 10*time.Second)
	// Recovery: every breaker is closed again.
	poll(t, p, `document.querySelectorAll('[data-breaker-state="open"], [data-breaker-state="half-open"]').length === 0 && document.querySelectorAll('[data-breaker-state="closed"]').length > 0`, 30*time.Second)
	p.CheckClean(t)
	wait()
}

// TestConsoleScreenshot writes docs/console.png when run with
// -screenshot: a full default run, photographed during the outage.
func TestConsoleScreenshot(t *testing.T) {
	if *screenshot == "" {
		t.Skip("run with -screenshot path.png to write a picture of the console")
	}
	b := browsertest.Start(t)
	cfg := defaultConfig()
	cfg.SVG = ""
	cfg.ConsoleAddr = "127.0.0.1:0"
	url, wait := startDemo(t, cfg)
	p := b.NewPage(t)
	ctx, cancel := context.WithTimeout(p.Context(), 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	// The outage runs from 11s to 16s of the default schedule: the
	// picture is taken in its middle, once the page shows the breaker open
	// and the fallback has answered for a while.
	poll(t, p, `document.querySelectorAll('[data-breaker-state="open"]').length > 0`, time.Minute)
	poll(t, p, fallbackTotal+` >= 100`, 30*time.Second)
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(*screenshot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", *screenshot, len(png))
	p.CheckClean(t)
	wait()
}

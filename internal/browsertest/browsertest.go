// Package browsertest starts Debian's headless Chromium for tests and drives
// it over the DevTools protocol with github.com/chromedp/chromedp.
//
// [Start] launches one browser per call, with a fresh profile in the test's
// temporary directory, and stops it, with every process it started, when the
// test ends. [Browser.NewPage] opens a tab that records what a page must
// never produce: uncaught exceptions, console errors (including the
// browser's own, such as a Content-Security-Policy violation or a failed
// load) and JavaScript dialogs, which it dismisses so that the page goes on.
//
// When /usr/bin/chromium (or the binary named by the environment variable
// CHROMIUM) is missing, Start skips the test with one line saying how to
// install it; when the environment variable CI is "true", it fails the test
// instead. Values of the package are safe for concurrent use.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// DefaultPath is where Debian's chromium package installs the browser.
const DefaultPath = "/usr/bin/chromium"

// missing is the one line a test without Chromium skips with.
const missing = "chromium not found: install Debian's chromium package (apt-get install -y chromium) to run the browser tests"

// Path returns the Chromium binary the tests use: the environment variable
// CHROMIUM when set, else DefaultPath. ok is false when that file is not an
// executable.
func Path() (path string, ok bool) {
	path = os.Getenv("CHROMIUM")
	if path == "" {
		path = DefaultPath
	}
	if _, err := exec.LookPath(path); err != nil {
		return path, false
	}
	return path, true
}

// Browser is one headless Chromium process.
type Browser struct {
	ctx    context.Context // the browser's first tab; pages are new tabs
	cancel context.CancelFunc
}

// Start launches a headless Chromium for t and stops it in t.Cleanup. It
// skips t (fails it when CI=true) when Chromium is missing, and fails t
// when the browser does not start.
func Start(t testing.TB) *Browser {
	t.Helper()
	path, ok := Path()
	if !ok {
		if os.Getenv("CI") == "true" {
			t.Fatal(missing)
		}
		t.Skip(missing)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	b := &Browser{ctx: ctx, cancel: func() {
		// Cancel closes the browser and waits for its goroutines; the
		// allocator's cancel then waits for the process and its children.
		cancel()
		allocCancel()
	}}
	t.Cleanup(b.cancel)
	// An empty run starts the browser now, so that a failure to start is
	// reported here rather than by the first page.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return b
}

// Page is one tab of a Browser. Its Context runs chromedp actions in the
// tab; it ends when the test ends or Close is called.
type Page struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	problems []string      // exceptions and console or log errors, in order
	dialogs  []string      // the messages of the dialogs the page opened
	messages []string      // every console message, for failure reports
	recorded chan struct{} // closed by the next recorded problem; nil until asked for
}

// NewPage opens a new tab and starts recording its console, exceptions and
// dialogs. The tab is closed in t.Cleanup, or by Close.
func (b *Browser) NewPage(t testing.TB) *Page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	p := &Page{ctx: ctx, cancel: cancel}
	t.Cleanup(p.Close)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	console := chromedp.Console(ctx)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	p.wg.Go(func() {
		for m, err := range console {
			if err != nil {
				return
			}
			p.record(m)
		}
	})
	p.wg.Go(func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			p.mu.Lock()
			p.dialogs = append(p.dialogs, fmt.Sprintf("%s: %s", ev.Type, ev.Message))
			p.mu.Unlock()
			// A dialog blocks the page until it is closed.
			if _, err := chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false}); err != nil {
				return
			}
		}
	})
	return p
}

func (p *Page) record(m chromedp.ConsoleMessage) {
	line := m.String()
	if m.URL != "" {
		line += fmt.Sprintf(" (%s:%d)", m.URL, m.Line+1)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.messages) < 1000 {
		p.messages = append(p.messages, line)
	}
	if (m.IsException() || m.Type == chromedp.ConsoleError) && len(p.problems) < 1000 {
		p.problems = append(p.problems, line)
		if p.recorded != nil {
			close(p.recorded)
			p.recorded = nil
		}
	}
}

// WaitProblem waits until an exception or console error containing
// substr is recorded, and returns nil; it returns ctx's error once ctx is
// done first.
func (p *Page) WaitProblem(ctx context.Context, substr string) error {
	for {
		p.mu.Lock()
		found := slices.ContainsFunc(p.problems, func(s string) bool { return strings.Contains(s, substr) })
		if p.recorded == nil {
			p.recorded = make(chan struct{})
		}
		recorded := p.recorded
		p.mu.Unlock()
		if found {
			return nil
		}
		select {
		case <-recorded:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Context returns the tab's context, for chromedp.Do and chromedp.Run.
// Bound each action with a timeout of its own.
func (p *Page) Context() context.Context { return p.ctx }

// Problems returns the uncaught exceptions and console errors recorded so
// far, in order.
func (p *Page) Problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.problems)
}

// Dialogs returns the type and message of each dialog (alert, confirm,
// prompt) the page opened.
func (p *Page) Dialogs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.dialogs)
}

// Messages returns every console message recorded so far (at most 1000).
func (p *Page) Messages() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.messages)
}

// CheckClean fails t for each recorded exception, console error and
// dialog.
func (p *Page) CheckClean(t testing.TB) {
	t.Helper()
	for _, s := range p.Problems() {
		t.Errorf("browser console: %s", s)
	}
	for _, s := range p.Dialogs() {
		t.Errorf("the page opened a dialog: %s", s)
	}
}

// Close closes the tab and waits for its recorders. It is idempotent.
func (p *Page) Close() {
	p.cancel()
	p.wg.Wait()
}

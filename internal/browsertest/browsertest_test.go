package browsertest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/engineeringlabs/grpc-resilience/internal/browsertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// pages serves a clean page, one that throws, one that logs an error and
// one that opens an alert.
func pages() http.Handler {
	mux := http.NewServeMux()
	html := func(script string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte(`<!doctype html><html><head><link rel="icon" href="data:,"><title>t</title></head><body><p id="p">page</p><script>` + script + `</script></body></html>`))
		}
	}
	mux.Handle("/clean", html(`document.getElementById("p").textContent = "ready";`))
	mux.Handle("/throws", html(`document.getElementById("p").textContent = "ready"; setTimeout(function () { throw new Error("boom-exception"); }, 0);`))
	mux.Handle("/logs", html(`document.getElementById("p").textContent = "ready"; console.error("boom-console");`))
	mux.Handle("/alerts", html(`alert("boom-alert"); document.getElementById("p").textContent = "ready";`))
	return mux
}

// waitReady waits, bounded, until the page's paragraph says ready.
func waitReady(t *testing.T, p *browsertest.Page, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.Context(), 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate %s: %v", url, err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("p").textContent === "ready"`)); err != nil {
		t.Fatalf("page %s not ready: %v", url, err)
	}
}

// waitProblem waits, for at most 10 s, until the page recorded a problem
// containing substr.
func waitProblem(t *testing.T, p *browsertest.Page, substr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitProblem(ctx, substr); err != nil {
		t.Fatalf("%q: not recorded within 10s (%v); problems: %q", substr, err, p.Problems())
	}
}

func contains(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestPageRecordsProblems(t *testing.T) {
	srv := httptest.NewServer(pages())
	defer srv.Close()
	b := browsertest.Start(t)

	t.Run("clean", func(t *testing.T) {
		p := b.NewPage(t)
		waitReady(t, p, srv.URL+"/clean")
		p.CheckClean(t)
		// Waiting for a problem a clean page never has ends with the
		// context.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := p.WaitProblem(ctx, "boom"); err != context.Canceled {
			t.Errorf("WaitProblem on a clean page = %v, want context.Canceled", err)
		}
	})
	t.Run("exception", func(t *testing.T) {
		p := b.NewPage(t)
		waitReady(t, p, srv.URL+"/throws")
		waitProblem(t, p, "boom-exception")
	})
	t.Run("console error", func(t *testing.T) {
		p := b.NewPage(t)
		waitReady(t, p, srv.URL+"/logs")
		waitProblem(t, p, "boom-console")
	})
	t.Run("dialog", func(t *testing.T) {
		p := b.NewPage(t)
		// The page is ready only once the dialog was dismissed.
		waitReady(t, p, srv.URL+"/alerts")
		if d := p.Dialogs(); !contains(d, "boom-alert") {
			t.Fatalf("dialogs = %q, want the alert", d)
		}
	})
}

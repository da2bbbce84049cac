package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The browser tests drive Debian's Chromium headless through chromedp, as a
// patient would: keyboard only, with axe-core (from the npm lockfile in
// testdata/browser) run on every page. CI installs both (.ci/run); a missing
// one fails the test rather than skipping it.
//
// CLINICRELAY_DOCS_IMG=1 also writes the screenshots docs/patients.md shows
// into docs/img/. A failing test leaves a screenshot of its last page in
// CLINICRELAY_FAILURE_DIR (default: the OS temp dir) and logs its path.

// chromiumPath is the browser: $CHROMIUM, else Debian's.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "chromium"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("no Chromium: install Debian's chromium package (.ci/run does) or set $CHROMIUM")
	return ""
}

// axeSource is axe-core's script, installed by `npm ci` in testdata/browser.
func axeSource(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "browser", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		t.Fatalf("axe-core is missing: run `npm ci --prefix integration/testdata/browser` (.ci/run does): %v", err)
	}
	return string(b)
}

// Browser is one headless Chromium tab.
type Browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	axe  string
}

// NewBrowser starts Chromium for the test, with base as the site's root.
func NewBrowser(t *testing.T, base string) *Browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.WindowSize(1000, 900),
		// This machine's network is closed: no call home at start.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("lang", "en-US"),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	b := &Browser{t: t, ctx: ctx, base: base, axe: axeSource(t)}
	// The first action starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(b.shootFailure) // runs before the browser is cancelled
	return b
}

// Do runs actions with a 15s limit.
func (b *Browser) Do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser at %s: %v", b.Path(), err)
	}
}

// Eval evaluates a JavaScript expression to a string.
func (b *Browser) Eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %q: %v", expr, err)
	}
	return v
}

// Path is the current page's path and query.
func (b *Browser) Path() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	v, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname + location.search`))
	return v
}

// Open navigates to path and waits for the page's main landmark.
func (b *Browser) Open(path string) {
	b.t.Helper()
	b.Do(chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.CSS("main")))
}

// AwaitJS waits until the JavaScript predicate is true, across page loads.
func (b *Browser) AwaitJS(pred string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithDeadline(b.ctx, deadline)
		var ok bool
		ok, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`Boolean(`+pred+`)`))
		cancel()
		if err == nil && ok {
			return
		}
		time.Sleep(50 * time.Millisecond) // a navigation in progress fails the evaluation: try again
	}
	b.t.Fatalf("not within %s at %s: %s (%v)", timeout, b.Path(), pred, err)
}

// TabTo presses Tab until the focused element el satisfies the JavaScript
// predicate (over el), as a keyboard user moves through the page.
func (b *Browser) TabTo(pred string) {
	b.t.Helper()
	check := fmt.Sprintf(`(() => { const el = document.activeElement; return !!el && el !== document.body && (%s); })()`, pred)
	for range 80 {
		if b.Eval(`String(`+check+`)`) == "true" {
			return
		}
		b.Do(chromedp.KeyEvent(kb.Tab))
	}
	b.t.Fatalf("at %s, Tab never reached an element with %s", b.Path(), pred)
}

// Fill tabs to the field with the id and types text into it.
func (b *Browser) Fill(id, text string) {
	b.t.Helper()
	b.TabTo(`el.id === "` + id + `"`)
	b.Type(text)
}

// Type types text into the focused element.
func (b *Browser) Type(text string) {
	b.t.Helper()
	b.Do(chromedp.KeyEvent(text))
}

// Press presses Enter on the focused element and waits for the next page to
// satisfy the JavaScript predicate.
func (b *Browser) Press(key, next string) {
	b.t.Helper()
	b.Do(chromedp.KeyEvent(key))
	b.AwaitJS(next+` && document.readyState === "complete"`, 10*time.Second)
}

type axeViolation struct {
	ID, Impact, Help string
	Nodes            []string
}

// Axe runs axe-core's WCAG 2.1 A and AA rules on the page and fails the test
// on any violation.
func (b *Browser) Axe(page string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](b.axe)); err != nil {
		b.t.Fatalf("inject axe-core: %v", err)
	}
	const run = `axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})
		.then(r => JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
			nodes: v.nodes.map(n => n.target.join(" ") + ": " + n.failureSummary)}))))`
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](run, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("run axe-core on %s: %v", page, err)
	}
	var vs []axeViolation
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		b.t.Fatalf("axe-core answer: %v", err)
	}
	for _, v := range vs {
		b.t.Errorf("axe on %s (%s): %s [%s, %s]\n\t%s", page, b.Path(), v.Help, v.ID, v.Impact, strings.Join(v.Nodes, "\n\t"))
	}
}

// Shot writes a screenshot of the whole page to docs/img/<name>.png when
// CLINICRELAY_DOCS_IMG is set.
func (b *Browser) Shot(name string) {
	b.t.Helper()
	if os.Getenv("CLINICRELAY_DOCS_IMG") == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join("..", "docs", "img", name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *Browser) shootFailure() {
	if !b.t.Failed() {
		return
	}
	dir := os.Getenv("CLINICRELAY_FAILURE_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("no failure screenshot: %v", err)
		return
	}
	name := filepath.Join(dir, strings.ReplaceAll(b.t.Name(), "/", "_")+".png")
	if err := os.WriteFile(name, png, 0o644); err == nil {
		b.t.Logf("screenshot of the failing page (%s): %s", b.Path(), name)
	}
}

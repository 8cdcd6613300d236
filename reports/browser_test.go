package reports

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// layoutProblems runs in the page and lists what a reader could not see:
// the page wider than the window, a table whose columns cannot be reached
// (wider than its box, and the box does not scroll, or the box itself off
// screen), an SVG text outside its chart, or two texts of a chart on top
// of each other.
const layoutProblems = `(() => {
  const out = [];
  const de = document.documentElement;
  const vw = de.clientWidth;
  if (de.scrollWidth > vw + 1) out.push("the page is " + de.scrollWidth + " px wide in a " + vw + " px window");
  for (const t of document.querySelectorAll("table")) {
    const box = t.parentElement;
    const scrolls = ["auto", "scroll"].includes(getComputedStyle(box).overflowX);
    const name = (t.rows[0] && t.rows[0].innerText || "").replace(/\s+/g, " ").slice(0, 40);
    if (t.getBoundingClientRect().width > box.clientWidth + 1 && !scrolls) out.push("table '" + name + "' is wider than its box, which does not scroll");
    const r = box.getBoundingClientRect();
    if (r.left < -1 || r.right > vw + 1) out.push("table '" + name + "' box runs off screen: " + r.left + ".." + r.right);
  }
  const inside = (a, b) => a.left >= b.left - 0.5 && a.right <= b.right + 0.5 && a.top >= b.top - 0.5 && a.bottom <= b.bottom + 0.5;
  const meet = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  for (const svg of document.querySelectorAll("svg")) {
    const sr = svg.getBoundingClientRect();
    if (sr.right > vw + 1) out.push("chart '" + svg.getAttribute("aria-label") + "' runs off screen");
    const texts = [...svg.querySelectorAll("text")].filter(t => t.textContent.trim() !== "");
    const rects = texts.map(t => t.getBoundingClientRect());
    texts.forEach((t, i) => {
      if (!inside(rects[i], sr)) out.push("text '" + t.textContent + "' outside chart '" + svg.getAttribute("aria-label") + "'");
      for (let j = i + 1; j < texts.length; j++) {
        if (meet(rects[i], rects[j])) out.push("texts '" + t.textContent + "' and '" + texts[j].textContent + "' overlap");
      }
    });
  }
  return out;
})()`

// chromiumPath finds Debian's chromium. Under CI=true its absence fails
// the test (.ci/run installs it); elsewhere the test is skipped, saying
// what to install.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found: .ci/run installs it (apt-get install -y chromium)")
	}
	t.Skip("browser test skipped: install Debian's chromium (apt-get install -y chromium)")
	return ""
}

// The HTML report as a browser lays it out, on a phone (390 px) and a
// laptop (1280 px): nothing overflows the page, every table's columns
// can be reached, no chart text is cut or overlaps.
func TestHTMLInABrowser(t *testing.T) {
	chromium := chromiumPath(t)
	f := newFixture(t)
	var st strings.Builder
	st.WriteString("refid,txnid,amount,status,refunded,operatorid,dateadded\n")
	for _, l := range strings.Split(strings.TrimSpace(readFile(t, filepath.Join(testdataDir, "statement.csv"))), "\n")[1:] {
		st.WriteString(l + "\n")
	}
	for i := range 25 { // more of one category than a list shows
		st.WriteString("GHOST-WITH-A-LONG-REFERENCE-" + itoa(int64(i)) + ",TG,123456.78,1,0,,2025-03-01 10:07:00\n")
	}
	_, _, dir := reconciled(t, f, st.String(), f.options(false))
	page := "file://" + filepath.Join(dir, FileHTML)

	opts := append(chromedp.DefaultExecAllocatorOptions[:0:0],
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("no-default-browser-check", true), chromedp.Flag("hide-scrollbars", false))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("start chromium: %v", err)
		}
		t.Skipf("browser test skipped: chromium would not start: %v", err)
	}
	for _, width := range []int64{390, 1280} {
		err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 900), chromedp.Navigate(page), chromedp.WaitReady("body"))
		if err != nil {
			t.Fatalf("%d px: %v", width, err)
		}
		tables, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("table").length`))
		if err != nil {
			t.Fatalf("%d px: %v", width, err)
		}
		problems, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](layoutProblems))
		if err != nil {
			t.Fatalf("%d px: %v", width, err)
		}
		if tables < 10 {
			t.Errorf("%d px: %d tables: the page did not render", width, tables)
		}
		for _, p := range problems {
			t.Errorf("%d px: %s", width, p)
		}
	}
}

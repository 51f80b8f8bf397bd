// Package web tests the gateway's web page in a real browser (headless Chromium, driven
// through the DevTools protocol by chromedp) against the real stack: a task submitted
// through the form, its progress bar fed by the event stream, its result, a refused
// payload, the task list across a reload, and the overview.
package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

const poolSize = 2

func TestMain(m *testing.M) {
	stacktest.Main(m, stacktest.Options{
		Apps:   []string{"storekeeper", "worker", "gateway"}, // the page needs no analytics
		AppEnv: map[string]map[string]string{"worker": {"POOL_SIZE": fmt.Sprint(poolSize)}},
	})
}

// ScreenshotPath is where the test leaves a screenshot of the page, below the repository
// root (.run is not tracked).
const ScreenshotPath = ".run/web/screenshot.png"

// chromiumPath finds Debian's chromium. Without it the test fails in CI and is skipped
// elsewhere, like a stack that cannot start.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "chromium is not installed: deploy/scripts/install-services.sh installs it (apt-get install chromium), as make test does"
	if stacktest.InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser starts a headless Chromium with its own profile that reaches nothing but
// loopback, and returns a context of one tab in it.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1100),
		// No name resolves, so nothing but the loopback addresses the page uses is reached.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser and binds it to ctx (no timeout on it).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// do runs the browser actions of one step, bounded by timeout.
func do(t *testing.T, ctx context.Context, timeout time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page, bounded by timeout.
func eval[T any](t *testing.T, ctx context.Context, timeout time.Duration, expr string) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS waits until the JavaScript expression is truthy.
func waitJS(t *testing.T, ctx context.Context, timeout time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Until(deadline)+time.Second)
		err := chromedp.Do(sctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(time.Until(deadline))))
		cancel()
		// Just after a navigation the page may still swap its execution context, and a
		// poll begun in the old one fails naming it: poll again, in the new one.
		if err != nil && strings.Contains(err.Error(), "Cannot find context with specified id") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("wait for %s: %v", what, err)
		}
		return
	}
}

// fillForm picks a task type (with the change event a user's choice fires) and fills
// fields, by id, by typing the values.
func fillForm(t *testing.T, ctx context.Context, taskType string, values [][2]string) {
	t.Helper()
	do(t, ctx, 5*time.Second, "choose "+taskType,
		chromedp.SetValue(chromedp.CSS("#f-task"), taskType),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("f-task").dispatchEvent(new Event("change", {bubbles: true}))`))
	for _, kv := range values {
		sel := chromedp.CSS("#" + kv[0])
		// chromedp.Clear empties the value attribute, not what the field holds.
		do(t, ctx, 5*time.Second, "fill "+kv[0],
			chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.getElementById(%q).value = ""`, kv[0])),
			chromedp.SendKeys(sel, kv[1]))
	}
}

// screenshot writes the page as it is now to ScreenshotPath below the repository root.
func screenshot(t *testing.T, ctx context.Context, root string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	path := filepath.Join(root, ScreenshotPath)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	t.Logf("screenshot of the page: %s", path)
}

func TestWebPage(t *testing.T) {
	st := stacktest.Get(t)
	ctx := browser(t)
	gw := st.Gateway()
	if !strings.HasPrefix(gw.Base, "http://127.0.0.1:") {
		t.Fatalf("gateway at %s, want loopback", gw.Base)
	}
	t.Cleanup(func() { screenshot(t, ctx, st.RepoRoot) }) // after a failure too: it shows where

	do(t, ctx, 15*time.Second, "open the page", chromedp.Navigate(gw.Base+"/"))
	waitJS(t, ctx, 10*time.Second, "the form built from the task types", `document.getElementById("submit-form").dataset.ready === "true"`)

	// A sleep long enough for several progress events (one every 250 ms at most).
	const sleepMs = 1500
	fillForm(t, ctx, "sleep", [][2]string{{"f-p-ms", fmt.Sprint(sleepMs)}, {"f-directory", "web-test/sleep"}})
	do(t, ctx, 5*time.Second, "submit", chromedp.Click(chromedp.CSS("#submit-button")))
	waitJS(t, ctx, 10*time.Second, "the submitted task in the list", `document.querySelector("#task-list li.task") !== null`)
	id := eval[string](t, ctx, 2*time.Second, `document.querySelector("#task-list li.task").id.slice("task-".length)`)
	t.Logf("submitted task %s through the form", id)
	item := "#task-" + id

	// Watch the progress bar until the task completes: it moves through values between
	// 0 and 1 (progress events) and ends at 1 with the status completed.
	type barState struct {
		Status string  `json:"status"`
		Value  float64 `json:"value"`
		Text   string  `json:"text"`
	}
	stateJS := fmt.Sprintf(`(() => { const li = document.querySelector(%q);
		return {status: li.querySelector(".status").textContent, value: li.querySelector("progress").value, text: li.querySelector(".pct").textContent}; })()`, item)
	deadline := time.Now().Add(30 * time.Second)
	var s barState
	var between []float64
	for {
		s = eval[barState](t, ctx, 2*time.Second, stateJS)
		if s.Value > 0 && s.Value < 1 && (len(between) == 0 || between[len(between)-1] != s.Value) {
			between = append(between, s.Value)
		}
		if s.Status == "completed" || s.Status == "failed" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s.Status != "completed" || s.Value != 1 || s.Text != "100 %" {
		t.Fatalf("task %s on the page: %+v; want completed with the bar at 1 (100 %%)", id, s)
	}
	if len(between) == 0 {
		t.Errorf("the progress bar never showed a value between 0 and 1: no progress event reached it")
	}
	t.Logf("progress bar values seen before 100 %%: %v", between)

	// The result link opens the stored result.
	nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	page, err := chromedp.RunResponse(nctx, chromedp.Click(chromedp.CSS(item+" a.result")))
	cancel()
	if err != nil {
		t.Fatalf("follow the result link: %v", err)
	}
	if want := gw.Base + "/api/v1/tasks/" + id + "/result"; page.URL != want || page.Status != http.StatusOK {
		t.Fatalf("the result link opened %s (%d), want %s (200)", page.URL, page.Status, want)
	}
	body := eval[string](t, ctx, 2*time.Second, `document.body.innerText`)
	var result struct {
		SleptMs *int `json:"slept_ms"`
	}
	if err := json.Unmarshal([]byte(body[strings.Index(body, "{"):]), &result); err != nil || result.SleptMs == nil || *result.SleptMs != sleepMs {
		t.Fatalf("result page shows %q (%v); want {\"slept_ms\":%d}", body, err, sleepMs)
	}

	// Back on the page (a new load), and after a reload: the task is still listed,
	// completed, with its result link.
	do(t, ctx, 15*time.Second, "back to the page", chromedp.Navigate(gw.Base+"/"))
	waitJS(t, ctx, 10*time.Second, "the task listed", fmt.Sprintf(`document.querySelector(%q) !== null`, item+`[data-status="completed"] a.result`))
	do(t, ctx, 15*time.Second, "reload", chromedp.Reload())
	waitJS(t, ctx, 10*time.Second, "the task listed after a reload",
		fmt.Sprintf(`document.querySelector(%q) !== null`, item+`[data-status="completed"] a.result`))

	// The overview: the worker node's slots all idle again, ThroughputMinutes bars, and
	// the completion counted in the API's figures.
	waitJS(t, ctx, 15*time.Second, "the overview",
		fmt.Sprintf(`[...document.querySelectorAll("#nodes tr")].some((tr) => tr.cells[0].textContent === "worker-0" && tr.cells[2].textContent === "%d")
		&& document.querySelectorAll("#chart rect").length === 10 && document.getElementById("q-normal").textContent === "0"`, poolSize))
	var overview struct {
		Throughput []struct {
			Completed int `json:"completed"`
		} `json:"throughput"`
	}
	// The counts come from the events the gateway reads (this stack has no analytics), a
	// delivery behind the completion.
	completed := 0
	for deadline := time.Now().Add(15 * time.Second); completed < 1 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := gw.Do(ctx, http.MethodGet, "/api/v1/overview", nil, nil)
		if err != nil || resp.Code != http.StatusOK || json.Unmarshal(resp.Body, &overview) != nil {
			t.Fatalf("GET /api/v1/overview: %v %d %s", err, resp.Code, resp.Body)
		}
		completed = 0
		for _, m := range overview.Throughput {
			completed += m.Completed
		}
	}
	if completed < 1 {
		t.Errorf("overview counts %d completions, want the task's", completed)
	}

	// A task whose first attempt fails: the user sees it run and complete, never fail; the
	// overview counts the failed attempt and the recovery.
	counted := func(id string) int {
		return eval[int](t, ctx, 2*time.Second, fmt.Sprintf(`Number(document.getElementById(%q).textContent)`, id))
	}
	recovered, failedAttempts := counted("f-recovered"), counted("f-attempts") // shown since the overview above
	fillForm(t, ctx, "sleep", [][2]string{{"f-p-ms", "300"}, {"f-p-forceFailure", "1"}})
	do(t, ctx, 5*time.Second, "submit a task that fails once", chromedp.Click(chromedp.CSS("#submit-button")))
	waitJS(t, ctx, 10*time.Second, "the second task in the list", `document.querySelectorAll("#task-list li.task").length === 2`)
	retried := "#" + eval[string](t, ctx, 2*time.Second, `document.querySelector("#task-list li.task").id`)
	statuses := map[string]bool{}
	for deadline := time.Now().Add(30 * time.Second); !statuses["completed"] && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		statuses[eval[string](t, ctx, 2*time.Second, fmt.Sprintf(`document.querySelector(%q).textContent`, retried+" .status"))] = true
	}
	for status := range statuses {
		if status != "pending" && status != "running" && status != "completed" {
			t.Errorf("the task that failed once showed status %q; want only pending, running, completed", status)
		}
	}
	if !statuses["completed"] {
		t.Fatalf("the task that failed once did not complete on the page; statuses seen %v", statuses)
	}
	waitJS(t, ctx, 10*time.Second, "the recovery in the overview", fmt.Sprintf(
		`document.getElementById("f-recovered").textContent === "%d" && document.getElementById("f-attempts").textContent === "%d"`,
		recovered+1, failedAttempts+1))

	// A payload the API refuses: its message appears next to the field, and no task is added.
	const badMs = "9999999"
	fillForm(t, ctx, "sleep", [][2]string{{"f-p-ms", badMs}})
	do(t, ctx, 5*time.Second, "submit a bad payload", chromedp.Click(chromedp.CSS("#submit-button")))
	waitJS(t, ctx, 10*time.Second, "the error next to the field", `!document.getElementById("f-p-ms-err").hidden`)
	want := apiProblem(t, ctx, gw, badMs)
	shown := eval[string](t, ctx, 2*time.Second, `document.getElementById("f-p-ms-err").textContent`)
	if shown != want {
		t.Errorf("next to ms the page shows %q, want the API's message %q", shown, want)
	}
	if inv := eval[string](t, ctx, 2*time.Second, `document.getElementById("f-p-ms").getAttribute("aria-invalid")`); inv != "true" {
		t.Errorf("ms field aria-invalid = %q, want true", inv)
	}
	if n := eval[int](t, ctx, 2*time.Second, `document.querySelectorAll("#task-list li.task").length`); n != 2 {
		t.Errorf("%d tasks listed after a refused submit, want 2", n)
	}

	// A long task cancelled with its button: the page shows it cancelled, and the overview
	// counts the cancel (this stack has no analytics: the gateway's own count, from the
	// events it reads; internal/e2e/cancel checks the ledger's).
	cancelled := counted("f-cancelled")
	fillForm(t, ctx, "sleep", [][2]string{{"f-p-ms", "30000"}})
	do(t, ctx, 5*time.Second, "submit a long task", chromedp.Click(chromedp.CSS("#submit-button")))
	waitJS(t, ctx, 10*time.Second, "the long task in the list", `document.querySelectorAll("#task-list li.task").length === 3`)
	long := "#" + eval[string](t, ctx, 2*time.Second, `document.querySelector("#task-list li.task").id`)
	waitJS(t, ctx, 10*time.Second, "its cancel button", fmt.Sprintf(`document.querySelector(%q) !== null`, long+" button.cancel"))
	do(t, ctx, 5*time.Second, "cancel it", chromedp.Click(chromedp.CSS(long+" button.cancel")))
	waitJS(t, ctx, 10*time.Second, "the task shown cancelled", fmt.Sprintf(`document.querySelector(%q) !== null`, long+`[data-status="cancelled"]`))
	waitJS(t, ctx, 20*time.Second, "the cancel in the overview", fmt.Sprintf(`document.getElementById("f-cancelled").textContent === "%d"`, cancelled+1))
}

// apiProblem returns the message the API gives for the ms field of a sleep payload.
func apiProblem(t *testing.T, ctx context.Context, gw stacktest.Gateway, ms string) string {
	t.Helper()
	resp, err := gw.Do(ctx, http.MethodPost, "/api/v1/tasks",
		[]byte(`{"task":"sleep","payload":{"ms":`+ms+`},"directory":"web-test/bad"}`), nil)
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Details []struct {
				Field   string `json:"field"`
				Message string `json:"message"`
			} `json:"details"`
		} `json:"error"`
	}
	if err != nil || resp.Code != http.StatusUnprocessableEntity || json.Unmarshal(resp.Body, &body) != nil ||
		len(body.Error.Details) != 1 || body.Error.Details[0].Field != "ms" {
		t.Fatalf("bad sleep payload: %v %d %s; want 422 with one problem for ms", err, resp.Code, resp.Body)
	}
	return body.Error.Details[0].Message
}

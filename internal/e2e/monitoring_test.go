package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// monitoringWorkload runs a few tasks to completion, so that every labelled series the
// rules and the dashboard use exists (a counter vector shows no series before its first
// use; the queue's gauges appear once its actor is active).
func monitoringWorkload(t *testing.T, st *stacktest.Stack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	gw := st.Gateway()
	var ids []string
	for range 4 {
		v, err := gw.Submit(ctx, "sleep", map[string]any{"ms": 20}, "monitoring")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	for _, id := range ids {
		if v, err := gw.WaitStatus(ctx, id, "completed", "failed"); err != nil || v.Status != "completed" {
			t.Fatalf("task %s: %+v %v", id, v, err)
		}
	}
}

// scrapeTargets are the /metrics roots of every running app and sidecar, by app id.
type scrapeTarget struct{ job, app, base string }

func scrapeTargets(t *testing.T, st *stacktest.Stack) []scrapeTarget {
	t.Helper()
	var ts []scrapeTarget
	for _, id := range stacktest.AllApps {
		running := st.Running(id)
		if len(running) == 0 {
			t.Fatalf("no instance of %s is running", id)
		}
		for _, in := range running {
			ts = append(ts,
				scrapeTarget{"taskgrid", id, in.BaseURL()},
				scrapeTarget{"dapr-sidecar", id, in.MetricsURL()})
		}
	}
	return ts
}

// readMetricNames reads deploy/prometheus/metrics.txt: every metric name the rules and
// the Grafana dashboard select (kept up to date by deploy/prometheus's own tests).
func readMetricNames(t *testing.T, st *stacktest.Stack) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(st.RepoRoot, "deploy", "prometheus", "metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			names = append(names, line)
		}
	}
	if len(names) < 10 {
		t.Fatalf("metrics.txt lists only %d names", len(names))
	}
	return names
}

// Every metric the Prometheus rules and the Grafana dashboard use is exposed by the
// running apps or their sidecars (a histogram by its _bucket series, as PromQL names it).
func TestMonitoringMetricsExposed(t *testing.T) {
	st := stacktest.Get(t)
	names := readMetricNames(t, st)
	monitoringWorkload(t, st)

	// Analytics ingests in micro-batches and sidecars report some series after their
	// first use: poll until every name is there or a minute has passed.
	var missing []string
	deadline := time.Now().Add(time.Minute)
	for {
		seen := map[string]bool{}
		for _, tg := range scrapeTargets(t, st) {
			m, err := stacktest.ScrapeMetrics(t.Context(), tg.base)
			if err != nil {
				t.Fatalf("%s %s: %v", tg.job, tg.app, err)
			}
			for series := range m {
				name, _, _ := strings.Cut(series, "{")
				seen[name] = true
			}
		}
		missing = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return seen[n] })
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if len(missing) > 0 {
		t.Fatalf("the rules or the dashboard (deploy/prometheus) use metrics that no app or sidecar exposes: %v", missing)
	}
	t.Logf("all %d metric names of the rules and the dashboard are exposed", len(names))
}

// Prometheus (Debian's package, as `make run` starts it) scrapes every app and sidecar of
// the stack and evaluates every rule of deploy/prometheus/rules.yml without error.
func TestMonitoringPrometheusScrapes(t *testing.T) {
	st := stacktest.Get(t)
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if stacktest.InCI() {
			t.Fatalf("prometheus not found (CI=true): `make test-deps` installs Debian's prometheus package: %v", err)
		}
		t.Skipf("prometheus not found (run `make deps`): %v", err)
	}
	monitoringWorkload(t, st)

	// The configuration of deploy/prometheus/prometheus.yml, with the stack's ports and
	// intervals of a second.
	dir := t.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\nrule_files: [%q]\nscrape_configs:\n",
		filepath.Join(st.RepoRoot, "deploy", "prometheus", "rules.yml"))
	targets := scrapeTargets(t, st)
	for _, job := range []string{"taskgrid", "dapr-sidecar"} {
		fmt.Fprintf(&cfg, "  - job_name: %s\n    static_configs:\n", job)
		for _, tg := range targets {
			if tg.job == job {
				fmt.Fprintf(&cfg, "      - targets: [%q]\n        labels: {app: %s}\n", strings.TrimPrefix(tg.base, "http://"), tg.app)
			}
		}
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := stacktest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	api := "http://127.0.0.1:" + strconv.Itoa(port)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--config.file", cfgPath, "--web.listen-address", "127.0.0.1:"+strconv.Itoa(port),
		"--storage.tsdb.path", filepath.Join(dir, "data"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("prometheus log:\n%s", b)
			}
		}
	})

	// Every target up.
	var active []struct {
		Labels    map[string]string `json:"labels"`
		ScrapeURL string            `json:"scrapeUrl"`
		Health    string            `json:"health"`
		LastError string            `json:"lastError"`
	}
	err = poll(t, time.Minute, func() error {
		var data struct {
			ActiveTargets *[]struct {
				Labels    map[string]string `json:"labels"`
				ScrapeURL string            `json:"scrapeUrl"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
			} `json:"activeTargets"`
		}
		if err := promGet(t, api, "/api/v1/targets", &data); err != nil {
			return err
		}
		if data.ActiveTargets == nil {
			return errors.New("no activeTargets")
		}
		active = (*data.ActiveTargets)[:0:0]
		var down []string
		for _, tg := range *data.ActiveTargets {
			active = append(active, tg)
			if tg.Health != "up" {
				down = append(down, fmt.Sprintf("%s %s %s: %s %s", tg.Labels["job"], tg.Labels["app"], tg.ScrapeURL, tg.Health, tg.LastError))
			}
		}
		if len(active) != len(targets) {
			return fmt.Errorf("%d active targets, want %d", len(active), len(targets))
		}
		if len(down) > 0 {
			return fmt.Errorf("targets not up: %s", strings.Join(down, "; "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prometheus: all %d targets up (apps and sidecars)", len(active))

	// Every rule evaluated without error.
	var nRules int
	err = poll(t, time.Minute, func() error {
		var data struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name      string `json:"name"`
					Type      string `json:"type"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := promGet(t, api, "/api/v1/rules", &data); err != nil {
			return err
		}
		nRules = 0
		var bad []string
		for _, g := range data.Groups {
			for _, r := range g.Rules {
				nRules++
				if r.Health != "ok" {
					bad = append(bad, fmt.Sprintf("%s: %s %s", r.Name, r.Health, r.LastError))
				}
			}
		}
		if nRules < 20 {
			return fmt.Errorf("only %d rules loaded", nRules)
		}
		if len(bad) > 0 {
			return fmt.Errorf("rules not evaluated ok: %s", strings.Join(bad, "; "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The recording rules carry the stack's data: the slots the workers report, the
	// completions of the workload's task type, the queue's depth.
	var pool float64
	for _, in := range st.Running("worker") {
		m, err := stacktest.ScrapeMetrics(t.Context(), in.BaseURL())
		if err != nil {
			t.Fatal(err)
		}
		pool += m.Sum("taskgrid_worker_pool_size")
	}
	err = poll(t, time.Minute, func() error {
		v, err := promQuery(t, api, "taskgrid:worker_pool_size:sum")
		if err != nil {
			return err
		}
		if len(v) != 1 || v[0].value != pool || pool == 0 {
			return fmt.Errorf("taskgrid:worker_pool_size:sum = %+v, the workers report %v slots", v, pool)
		}
		if v, err = promQuery(t, api, `taskgrid:tasks_completed:rate1m{task="sleep"}`); err != nil || len(v) != 1 {
			return fmt.Errorf("taskgrid:tasks_completed:rate1m{task=\"sleep\"} = %+v %v, want one series", v, err)
		}
		if v, err = promQuery(t, api, "taskgrid:queue_depth:sum"); err != nil || len(v) != 1 {
			return fmt.Errorf("taskgrid:queue_depth:sum = %+v %v, want one series", v, err)
		}
		if v, err = promQuery(t, api, `up == 0`); err != nil || len(v) != 0 {
			return fmt.Errorf("up == 0: %+v %v", v, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prometheus: %d rules evaluated ok; taskgrid:worker_pool_size:sum = %v", nRules, pool)
}

// poll calls f until it returns nil or timeout passes, and returns its last error.
func poll(t *testing.T, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) || t.Context().Err() != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// promGet reads one API answer of Prometheus into data.
func promGet(t *testing.T, api, path string, data any) error {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, api+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s: %d: %w", path, resp.StatusCode, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s: %s %s", path, body.Status, body.Error)
	}
	return json.Unmarshal(body.Data, data)
}

type promSample struct {
	labels map[string]string
	value  float64
}

// promQuery runs an instant query and returns its vector.
func promQuery(t *testing.T, api, query string) ([]promSample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := promGet(t, api, "/api/v1/query?query="+url.QueryEscape(query), &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("%s: result type %q", query, data.ResultType)
	}
	var out []promSample
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: value %v", query, r.Value)
		}
		out = append(out, promSample{r.Metric, v})
	}
	return out, nil
}

package prometheus

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// readEnv reads deploy/local.env (KEY=value lines).
func readEnv(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../local.env")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			env[k] = strings.Trim(v, `'"`)
		}
	}
	return env
}

// TestScrapeTargets checks that prometheus.yml scrapes exactly what `make run` starts, at
// the ports it starts them on: every app of dapr.yaml (appPort) and its sidecar
// (metricsPort), placement and scheduler (deploy/local.env), and Prometheus itself.
func TestScrapeTargets(t *testing.T) {
	var tmpl struct {
		Apps []struct {
			AppID       string            `yaml:"appID"`
			MetricsPort int               `yaml:"metricsPort"`
			Env         map[string]string `yaml:"env"`
		} `yaml:"apps"`
	}
	readYAML(t, "../../dapr.yaml", &tmpl)
	public := publicPorts(t)
	env := readEnv(t)
	want := map[string]string{} // "job target app" -> ""
	add := func(job, target, app string) { want[job+" "+target+" "+app] = "" }
	for _, a := range tmpl.Apps {
		port := a.Env["PUBLIC_PORT"]
		if port == "" {
			port = public[a.AppID]
		}
		if a.AppID == "" || port == "" || a.MetricsPort == 0 {
			t.Fatalf("dapr.yaml: app %+v lacks appID, metricsPort, or its own port (env PUBLIC_PORT or the header's table)", a)
		}
		add("taskgrid", "127.0.0.1:"+port, a.AppID)
		add("dapr-sidecar", fmt.Sprintf("127.0.0.1:%d", a.MetricsPort), a.AppID)
	}
	if len(tmpl.Apps) < 4 {
		t.Fatalf("dapr.yaml: only %d apps", len(tmpl.Apps))
	}
	for job, key := range map[string]string{
		"dapr-placement": "TASKGRID_PLACEMENT_METRICS_PORT",
		"dapr-scheduler": "TASKGRID_SCHEDULER_METRICS_PORT",
		"prometheus":     "TASKGRID_PROMETHEUS_PORT",
	} {
		if env[key] == "" {
			t.Fatalf("deploy/local.env does not set %s", key)
		}
		add(job, "127.0.0.1:"+env[key], "")
	}

	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string          `yaml:"targets"`
				Labels  map[string]string `yaml:"labels"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "prometheus.yml", &cfg)
	got := map[string]string{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				got[sc.JobName+" "+target+" "+st.Labels["app"]] = ""
			}
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("prometheus.yml scrapes (job target app):\n  %s\nbut make run starts:\n  %s",
			strings.Join(slices.Sorted(maps.Keys(got)), "\n  "), strings.Join(slices.Sorted(maps.Keys(want)), "\n  "))
	}
}

// publicPorts reads the port each app serves /metrics on from dapr.yaml's header table,
// whose first column of numbers is the app's own listener: "# | gateway | 8080 | ...".
func publicPorts(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../dapr.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(strings.TrimPrefix(line, "#"), "|")
		if !strings.HasPrefix(line, "# |") || len(cells) < 4 {
			continue
		}
		id, port := strings.TrimSpace(cells[1]), strings.TrimSpace(cells[2])
		if _, err := strconv.Atoi(port); err == nil {
			ports[id] = port
		}
	}
	return ports
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/taskgrid/taskgrid/internal/adapters/sidecar"
)

// The test binary doubles as a fake daprd and a fake app (RUN_HELPER=1): it prints its
// role and environment, and on SIGTERM appends "<role> stopped" to RUN_ORDER and exits.
func TestMain(m *testing.M) {
	if os.Getenv("RUN_HELPER") == "1" {
		role := os.Getenv("APP_ID") + "-" + filepath.Base(os.Args[0])
		if len(os.Args) > 1 && os.Args[1] == "--app-id" {
			role = os.Getenv("APP_ID") + "-daprd"
		}
		// "up" once SIGTERM is ours: a stop that comes right after the line is recorded.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		fmt.Printf("%s up APP_PORT=%s DAPR_HTTP_PORT=%s EXTRA=%s GOMAXPROCS=%s\n", role, os.Getenv("APP_PORT"), os.Getenv("DAPR_HTTP_PORT"), os.Getenv("EXTRA"), os.Getenv("GOMAXPROCS"))
		<-sig
		f, err := os.OpenFile(os.Getenv("RUN_ORDER"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%s stopped\n", role)
			f.Close()
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseTheRepositorysTemplate(t *testing.T) {
	apps, err := parseTemplate("../../dapr.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range apps {
		ids = append(ids, a.AppID)
	}
	if want := []string{"gateway", "worker", "storekeeper", "analytics"}; !slices.Equal(ids, want) {
		t.Fatalf("apps %v, want %v", ids, want)
	}
	gw := apps[0]
	root, _ := filepath.Abs("../..")
	args, err := daprdArgs(gw, "localhost:50001")
	if err != nil {
		t.Fatal(err)
	}
	joined := " " + strings.Join(args, " ") + " "
	for _, want := range []string{
		"--app-id gateway", "--mode standalone", "--app-port 8090", "--dapr-http-port 3500", "--dapr-grpc-port 30001",
		"--dapr-internal-grpc-port 30011", "--metrics-port 9190", "--app-protocol http", "--app-channel-address 127.0.0.1",
		"--dapr-listen-addresses 127.0.0.1", "--placement-host-address 127.0.0.1:30005",
		"--resources-path " + filepath.Join(root, "components"), "--config " + filepath.Join(root, "components", "config.yaml"),
		"--enable-app-health-check", "--app-health-check-path /healthz", "--app-health-probe-interval 1", "--app-health-threshold 2",
		// components/config.yaml turns mTLS on.
		"--enable-mtls --sentry-address localhost:50001",
		// Messages as large as the apps send (a 16 MiB submission, a batch of results).
		"--max-body-size " + strconv.Itoa(sidecar.MaxMessageBytes>>20) + "Mi",
	} {
		if !strings.Contains(joined, " "+want+" ") {
			t.Errorf("daprd args lack %q: %v", want, args)
		}
	}
	env := appEnv(gw)
	for _, want := range []string{"APP_ID=gateway", "APP_PORT=8090", "DAPR_HTTP_PORT=3500", "DAPR_GRPC_PORT=30001", "PUBLIC_PORT=8080", "LOG_LEVEL=info"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s: %v", want, env)
		}
	}
	if gw.AppDirPath != root || gw.AppLogDestination != "fileAndConsole" || gw.DaprdLogDestination != "file" {
		t.Errorf("gateway resolved to %+v", gw)
	}
}

func TestParseRefusesWhatItCannotRun(t *testing.T) {
	const app = "  - appID: a\n    command: [./a]\n    appPort: 1\n    daprHTTPPort: 2\n    daprGRPCPort: 3\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "version: 1\napps:\n" + app + "    appSSL: true\n", "appSSL"},
		{"unknown common key", "version: 1\ncommon:\n  daprPath: /x\napps:\n" + app, "daprPath"},
		{"version", "version: 2\napps:\n" + app, "version 2"},
		{"no apps", "version: 1\n", "no apps"},
		{"no appID", "version: 1\napps:\n  - command: [./a]\n", "no appID"},
		{"twice", "version: 1\napps:\n" + app + app, "twice"},
		{"no command", "version: 1\napps:\n  - appID: a\n    appPort: 1\n    daprHTTPPort: 2\n    daprGRPCPort: 3\n", "no command"},
		{"no ports", "version: 1\napps:\n  - appID: a\n    command: [./a]\n", "appPort"},
		{"log destination", "version: 1\ncommon:\n  appLogDestination: syslog\napps:\n" + app, "syslog"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "dapr.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := parseTemplate(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestMergeAppOverCommon(t *testing.T) {
	common := AppSpec{AppProtocol: "http", AppHealthThreshold: 2, Env: map[string]string{"A": "common", "B": "common"}, ResourcesPaths: []string{"c"}}
	app := AppSpec{AppID: "x", AppProtocol: "grpc", Env: map[string]string{"B": "app"}}
	got := merge(common, app)
	if got.AppProtocol != "grpc" || got.AppHealthThreshold != 2 || got.Env["A"] != "common" || got.Env["B"] != "app" || !slices.Equal(got.ResourcesPaths, []string{"c"}) {
		t.Fatalf("merge = %+v", got)
	}
	if common.Env["B"] != "common" {
		t.Fatal("merge changed the common env")
	}
}

// A whole run with fake processes: every sidecar and app starts with the CLI's
// environment, logs go to .dapr/logs (and the console for fileAndConsole), PID files
// exist while they run, and a stop ends the apps in reverse order, then the sidecars.
func TestRunStartsAndStopsInOrder(t *testing.T) {
	dir := t.TempDir()
	order := filepath.Join(dir, "order")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The fake app is the test binary under another name (its role is its base name).
	appBin := filepath.Join(dir, "app")
	if err := os.Symlink(self, appBin); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("spec:\n  mtls:\n    enabled: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl := fmt.Sprintf(`version: 1
common:
  configFilePath: ./config.yaml
  appLogDestination: fileAndConsole
  daprdLogDestination: file
  env:
    EXTRA: common
apps:
  - appID: one
    command: [%q]
    appPort: 7001
    daprHTTPPort: 7101
    daprGRPCPort: 7201
  - appID: two
    command: [%q]
    appPort: 7002
    daprHTTPPort: 7102
    daprGRPCPort: 7202
    env:
      EXTRA: two
      GOMAXPROCS: "2"
`, appBin, appBin)
	path := filepath.Join(dir, "dapr.yaml")
	if err := os.WriteFile(path, []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	pids := filepath.Join(dir, "pids")
	if err := os.Mkdir(pids, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RUN_HELPER", "1")
	t.Setenv("RUN_ORDER", order)

	ctx, cancel := context.WithCancel(t.Context())
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-f", path, "-daprd", self, "-pid-dir", pids, "-grace", "20s"}, &out)
	}()

	// Both apps print on the console (fileAndConsole); their sidecars only to files.
	waitFor(t, func() bool {
		s := out.String()
		// One core each (package procs), but where the template says otherwise.
		return strings.Contains(s, "== APP - one == one-app up APP_PORT=7001 DAPR_HTTP_PORT=7101 EXTRA=common GOMAXPROCS=1") &&
			strings.Contains(s, "== APP - two == two-app up APP_PORT=7002 DAPR_HTTP_PORT=7102 EXTRA=two GOMAXPROCS=2")
	}, &out)
	if strings.Contains(out.String(), "daprd up") {
		t.Errorf("a sidecar's output reached the console (daprdLogDestination: file): %s", out.String())
	}
	for _, name := range []string{"one-app", "one-daprd", "two-app", "two-daprd"} {
		if _, err := os.Stat(filepath.Join(pids, name+".pid")); err != nil {
			t.Errorf("no PID file for %s: %v", name, err)
		}
	}
	// Both sidecars are up too (their lines only in their log files).
	for _, app := range []string{"one", "two"} {
		waitFor(t, func() bool {
			logs, _ := filepath.Glob(filepath.Join(dir, ".dapr", "logs", app+"_daprd_*.log"))
			if len(logs) != 1 {
				return false
			}
			data, _ := os.ReadFile(logs[0])
			return strings.Contains(string(data), app+"-daprd up APP_PORT=700") && strings.Contains(string(data), "GOMAXPROCS="+map[string]string{"one": "1", "two": "2"}[app]+"\n")
		}, &out)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(order)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 4 || lines[0] != "two-app stopped" || lines[1] != "one-app stopped" || !strings.Contains(lines[2]+lines[3], "-daprd stopped") {
		t.Errorf("stop order %q, want the apps in reverse order, then both sidecars", lines)
	}
	if left, _ := filepath.Glob(filepath.Join(pids, "*.pid")); len(left) != 0 {
		t.Errorf("PID files left: %v", left)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, ".dapr", "logs", "two_app_*.log"))
	if len(logs) != 1 {
		t.Fatalf("app logs %v", logs)
	}
	if data, _ := os.ReadFile(logs[0]); !strings.Contains(string(data), "two-app up") {
		t.Errorf("app log %s: %q", logs[0], data)
	}
}

func waitFor(t *testing.T, ok func() bool, out *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out; console:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

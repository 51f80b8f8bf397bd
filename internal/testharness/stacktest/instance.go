package stacktest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/taskgrid/taskgrid/internal/adapters/sidecar"
	"github.com/taskgrid/taskgrid/internal/platform/procs"
	"github.com/taskgrid/taskgrid/internal/testharness/netlab"
)

// Instance is one instance of an app with its daprd sidecar.
type Instance struct {
	ID    string // app id
	Name  string // unique name in logs: <id>-<n>
	Ports Ports
	Env   map[string]string
	// Host is the test host the instance runs on (nil: the machine's loopback). Its
	// public listener, sidecar metrics and sidecar-to-sidecar port are on the host's
	// address; its app channel and sidecar API stay on the host's own loopback, as in
	// a pod.
	Host *netlab.Host

	stack *Stack
	App   *Proc
	Daprd *Proc
}

// Ports of one instance. App is the app channel (the sidecar's
// --app-port); Public is the app's public listener (API, web page, /metrics, /readyz).
type Ports struct {
	App, Public, HTTP, GRPC, Internal, Metrics, Profile int
}

// ProfileURL is the root of the instance's pprof endpoints (/debug/pprof/...) for the
// app (sidecar false) or its daprd, when the stack runs with Options.Profiling.
func (in *Instance) ProfileURL(sidecar bool) string {
	if sidecar {
		return "http://" + hostAddr(in.Host, in.Ports.Profile)
	}
	return in.BaseURL()
}

// BaseURL is the root of the app's public listener, e.g. http://127.0.0.1:41234.
func (in *Instance) BaseURL() string { return "http://" + hostAddr(in.Host, in.Ports.Public) }

// MetricsURL is the root of the sidecar's Prometheus endpoint (/metrics).
func (in *Instance) MetricsURL() string { return "http://" + hostAddr(in.Host, in.Ports.Metrics) }

// ChannelURL is the root of the app channel, which only the sidecar should call (with
// the stack's app token). Like SidecarURL and Sidecar, the test process reaches it only
// for an instance on the machine's loopback (Host nil).
func (in *Instance) ChannelURL() string { return "http://" + addr(in.Ports.App) }

// SidecarURL is the sidecar's HTTP API root.
func (in *Instance) SidecarURL() string { return "http://" + addr(in.Ports.HTTP) }

// Sidecar is how to reach the instance's sidecar API, with the stack's API token.
func (in *Instance) Sidecar() sidecar.Config {
	return sidecar.Config{Host: "127.0.0.1", HTTPPort: in.Ports.HTTP, GRPCPort: in.Ports.GRPC, APIToken: in.stack.DaprToken}
}

// SidecarClient calls the instance's sidecar HTTP API with the stack's API token.
func (in *Instance) SidecarClient() Gateway {
	return Gateway{Base: in.SidecarURL(), Header: map[string]string{sidecar.TokenHeader: in.stack.DaprToken.Reveal()}}
}

// StartApp starts one more instance of app id (its own sidecar, same app id) with extra
// environment variables, and waits until the app is ready (/readyz: sidecar and
// components up). It runs where the infrastructure does (Options.Infra).
func (s *Stack) StartApp(ctx context.Context, id string, env map[string]string) (*Instance, error) {
	return s.StartAppOn(ctx, id, s.opts.Infra, env)
}

// StartAppOn is StartApp on a given test host (nil: the machine's loopback).
func (s *Stack) StartAppOn(ctx context.Context, id string, host *netlab.Host, env map[string]string) (*Instance, error) {
	p, err := freePorts(7)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	n := len(s.apps[id])
	s.mu.Unlock()
	in := &Instance{
		ID: id, Name: id + "-" + strconv.Itoa(n), stack: s, Host: host,
		Ports: Ports{App: p[0], HTTP: p[1], GRPC: p[2], Internal: p[3], Metrics: p[4], Profile: p[5], Public: p[6]},
		Env:   map[string]string{},
	}
	for k, v := range s.opts.AppEnv[id] {
		in.Env[k] = v
	}
	for k, v := range env {
		in.Env[k] = v
	}
	if id == "storekeeper" {
		in.Env["RESULTS_ROOT"] = s.ResultsRoot
	}
	if err := in.Start(ctx); err != nil {
		in.Stop() // not the stack's yet: Stack.Stop would not stop it
		return in, err
	}
	s.mu.Lock()
	s.apps[id] = append(s.apps[id], in)
	s.mu.Unlock()
	return in, nil
}

// Start starts (or restarts) the instance's sidecar, then its app, and waits until the
// app is ready.
func (in *Instance) Start(ctx context.Context) error {
	if err := in.StartSidecar(ctx); err != nil {
		return err
	}
	return in.StartApp(ctx)
}

// StartSidecar starts (or restarts) the instance's daprd. It does not wait: daprd
// waits for its app, so readiness is checked through the app (WaitReady).
func (in *Instance) StartSidecar(ctx context.Context) error {
	s := in.stack
	args := []string{
		"--app-id", in.ID, "--mode", "standalone",
		"--app-port", strconv.Itoa(in.Ports.App), "--app-protocol", "http", "--app-channel-address", "127.0.0.1",
		"--dapr-http-port", strconv.Itoa(in.Ports.HTTP), "--dapr-grpc-port", strconv.Itoa(in.Ports.GRPC),
		"--dapr-internal-grpc-port", strconv.Itoa(in.Ports.Internal), "--dapr-internal-grpc-listen-address", hostIP(in.Host),
		"--dapr-listen-addresses", "127.0.0.1",
		"--metrics-port", strconv.Itoa(in.Ports.Metrics), "--metrics-listen-address", hostIP(in.Host),
		"--placement-host-address", s.PlacementAddr, "--scheduler-host-address", s.SchedulerAddr,
		"--enable-mtls", "--sentry-address", s.SentryAddr,
		"--resources-path", filepath.Join(s.RepoRoot, "components"),
		"--config", filepath.Join(s.RepoRoot, "components", "config.yaml"),
		"--enable-app-health-check", "--app-health-check-path", "/healthz",
		"--app-health-probe-interval", "1", "--app-health-threshold", "2",
		"--dapr-graceful-shutdown-seconds", "3", "--log-as-json",
		"--max-body-size", strconv.Itoa(sidecar.MaxMessageBytes>>20) + "Mi",
	}
	if s.opts.Profiling {
		args = append(args, "--enable-profiling", "--profile-port", strconv.Itoa(in.Ports.Profile))
	}
	if level := os.Getenv("TASKGRID_DAPRD_LOG_LEVEL"); level != "" { // e.g. debug, to read a failure
		args = append(args, "--log-level", level)
	}
	// Each sidecar registers its host's address with placement and name resolution.
	vars := map[string]string{"DAPR_HOST_IP": hostIP(in.Host)}
	if v, ok := procs.Setting(os.Environ(), in.ID, true); ok {
		vars[procs.Env] = v
	}
	d, err := startProc(s.Dir, in.Name+"-daprd", withEnv(s.env, vars), s.Dir, in.Host, s.bins.daprd, args...)
	if err != nil {
		return err
	}
	in.Daprd = d
	return nil
}

// StartApp starts (or restarts) the app process and waits until /readyz answers 200.
func (in *Instance) StartApp(ctx context.Context) error {
	s := in.stack
	vars := map[string]string{
		"APP_ID": in.ID, "APP_PORT": strconv.Itoa(in.Ports.App), "PUBLIC_PORT": strconv.Itoa(in.Ports.Public), "PUBLIC_HOST": hostIP(in.Host),
		"DAPR_HTTP_PORT": strconv.Itoa(in.Ports.HTTP), "DAPR_GRPC_PORT": strconv.Itoa(in.Ports.GRPC),
		"LOG_LEVEL": "debug", "NODE_ID": in.Name,
		"DAPR_API_TOKEN": s.DaprToken.Reveal(), "APP_API_TOKEN": s.AppToken.Reveal(),
	}
	if s.opts.Profiling {
		vars["PROFILING"] = "true"
	}
	if v, ok := procs.Setting(os.Environ(), in.ID, false); ok {
		vars[procs.Env] = v
	}
	for k, v := range in.Env {
		vars[k] = v
	}
	a, err := startProc(s.Dir, in.Name, mergeEnv(s.env, vars), s.Dir, in.Host, s.bins.apps[in.ID])
	if err != nil {
		return err
	}
	in.App = a
	return in.WaitReady(ctx)
}

// WaitReady waits until the app's /readyz answers 200 (its sidecar and components are up).
func (in *Instance) WaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.BaseURL()+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		for _, p := range []*Proc{in.App, in.Daprd} {
			if ok, werr := p.Exited(); ok {
				return fmt.Errorf("%s exited (%v) before %s was ready; log: %s", p.Name, werr, in.Name, p.LogPath)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %s); logs: %s, %s", in.Name, ctx.Err(), last, in.App.LogPath, in.Daprd.LogPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops the app, then its sidecar.
func (in *Instance) Stop() {
	if in.App != nil {
		in.App.Stop(15 * time.Second)
	}
	if in.Daprd != nil {
		in.Daprd.Stop(15 * time.Second)
	}
}

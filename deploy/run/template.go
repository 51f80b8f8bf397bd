package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Template is a Dapr Multi-App Run file (dapr.yaml), the part of its format this project
// uses. A key outside it fails the parse: it would otherwise be silently dropped, where
// `dapr run -f` would apply it.
type Template struct {
	Version int       `yaml:"version"`
	Common  AppSpec   `yaml:"common"`
	Apps    []AppSpec `yaml:"apps"`
}

// AppSpec is one app of the template (or the common part), with the CLI's YAML names.
type AppSpec struct {
	AppID                  string            `yaml:"appID"`
	AppDirPath             string            `yaml:"appDirPath"`
	Command                []string          `yaml:"command"`
	AppPort                int               `yaml:"appPort"`
	AppProtocol            string            `yaml:"appProtocol"`
	AppChannelAddress      string            `yaml:"appChannelAddress"`
	APIListenAddresses     string            `yaml:"apiListenAddresses"`
	DaprHTTPPort           int               `yaml:"daprHTTPPort"`
	DaprGRPCPort           int               `yaml:"daprGRPCPort"`
	DaprInternalGRPCPort   int               `yaml:"daprInternalGRPCPort"`
	MetricsPort            int               `yaml:"metricsPort"`
	ResourcesPath          string            `yaml:"resourcesPath"`
	ResourcesPaths         []string          `yaml:"resourcesPaths"`
	ConfigFilePath         string            `yaml:"configFilePath"`
	PlacementHostAddress   string            `yaml:"placementHostAddress"`
	LogLevel               string            `yaml:"logLevel"`
	EnableAppHealthCheck   bool              `yaml:"enableAppHealthCheck"`
	AppHealthCheckPath     string            `yaml:"appHealthCheckPath"`
	AppHealthProbeInterval int               `yaml:"appHealthProbeInterval"`
	AppHealthProbeTimeout  int               `yaml:"appHealthProbeTimeout"`
	AppHealthThreshold     int               `yaml:"appHealthThreshold"`
	DaprHTTPMaxRequestSize int               `yaml:"daprHTTPMaxRequestSize"` // MiB
	AppLogDestination      string            `yaml:"appLogDestination"`
	DaprdLogDestination    string            `yaml:"daprdLogDestination"`
	Env                    map[string]string `yaml:"env"`
}

// parseTemplate reads a template strictly and resolves every app against the common
// part: an app's own value wins, env maps merge (the app's keys win), and relative paths
// are taken from the template's directory, as the CLI does.
func parseTemplate(path string) ([]AppSpec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the run template: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var t Template
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("run template %s: %w", path, err)
	}
	if t.Version != 1 {
		return nil, fmt.Errorf("run template %s: version %d, want 1", path, t.Version)
	}
	if len(t.Apps) == 0 {
		return nil, fmt.Errorf("run template %s: no apps", path)
	}
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("run template %s: %w", path, err)
	}
	seen := map[string]bool{}
	out := make([]AppSpec, 0, len(t.Apps))
	for i, a := range t.Apps {
		r := merge(t.Common, a)
		if r.AppID == "" {
			return nil, fmt.Errorf("run template %s: app %d has no appID", path, i)
		}
		if seen[r.AppID] {
			return nil, fmt.Errorf("run template %s: appID %q twice", path, r.AppID)
		}
		seen[r.AppID] = true
		if len(r.Command) == 0 {
			return nil, fmt.Errorf("run template %s: app %s has no command", path, r.AppID)
		}
		if r.AppPort <= 0 || r.DaprHTTPPort <= 0 || r.DaprGRPCPort <= 0 {
			return nil, fmt.Errorf("run template %s: app %s needs appPort, daprHTTPPort and daprGRPCPort (this runner picks no ports)", path, r.AppID)
		}
		for _, d := range []string{r.AppLogDestination, r.DaprdLogDestination} {
			switch d {
			case "", "file", "console", "fileAndConsole":
			default:
				return nil, fmt.Errorf("run template %s: app %s: log destination %q, want file, console or fileAndConsole", path, r.AppID, d)
			}
		}
		r.AppDirPath = abs(base, r.AppDirPath)
		if r.ResourcesPath != "" {
			r.ResourcesPaths = append([]string{r.ResourcesPath}, r.ResourcesPaths...)
			r.ResourcesPath = ""
		}
		for j, p := range r.ResourcesPaths {
			r.ResourcesPaths[j] = abs(base, p)
		}
		if r.ConfigFilePath != "" {
			r.ConfigFilePath = abs(base, r.ConfigFilePath)
		}
		out = append(out, r)
	}
	return out, nil
}

// merge returns app with every zero field taken from common, and the env maps merged.
func merge(common, app AppSpec) AppSpec {
	r := app
	str := func(dst *string, c string) {
		if *dst == "" {
			*dst = c
		}
	}
	num := func(dst *int, c int) {
		if *dst == 0 {
			*dst = c
		}
	}
	str(&r.AppDirPath, common.AppDirPath)
	str(&r.AppProtocol, common.AppProtocol)
	str(&r.AppChannelAddress, common.AppChannelAddress)
	str(&r.APIListenAddresses, common.APIListenAddresses)
	str(&r.ResourcesPath, common.ResourcesPath)
	str(&r.ConfigFilePath, common.ConfigFilePath)
	str(&r.PlacementHostAddress, common.PlacementHostAddress)
	str(&r.LogLevel, common.LogLevel)
	str(&r.AppHealthCheckPath, common.AppHealthCheckPath)
	str(&r.AppLogDestination, common.AppLogDestination)
	str(&r.DaprdLogDestination, common.DaprdLogDestination)
	num(&r.AppHealthProbeInterval, common.AppHealthProbeInterval)
	num(&r.AppHealthProbeTimeout, common.AppHealthProbeTimeout)
	num(&r.AppHealthThreshold, common.AppHealthThreshold)
	num(&r.DaprHTTPMaxRequestSize, common.DaprHTTPMaxRequestSize)
	if len(r.Command) == 0 {
		r.Command = common.Command
	}
	if len(r.ResourcesPaths) == 0 {
		r.ResourcesPaths = append([]string(nil), common.ResourcesPaths...)
	}
	r.EnableAppHealthCheck = r.EnableAppHealthCheck || common.EnableAppHealthCheck
	r.Env = map[string]string{}
	for k, v := range common.Env {
		r.Env[k] = v
	}
	for k, v := range app.Env {
		r.Env[k] = v
	}
	return r
}

func abs(base, p string) string {
	if p == "" {
		return base
	}
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// daprdArgs are the sidecar's flags for a, as `dapr run -f` passes them (standalone
// mode), plus mTLS through sentry when the Configuration enables it.
func daprdArgs(a AppSpec, sentry string) ([]string, error) {
	args := []string{"--app-id", a.AppID, "--mode", "standalone",
		"--app-port", strconv.Itoa(a.AppPort),
		"--dapr-http-port", strconv.Itoa(a.DaprHTTPPort), "--dapr-grpc-port", strconv.Itoa(a.DaprGRPCPort)}
	opt := func(flag, v string) {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	num := func(flag string, v int) {
		if v > 0 {
			args = append(args, flag, strconv.Itoa(v))
		}
	}
	opt("--app-protocol", a.AppProtocol)
	opt("--app-channel-address", a.AppChannelAddress)
	opt("--dapr-listen-addresses", a.APIListenAddresses)
	num("--dapr-internal-grpc-port", a.DaprInternalGRPCPort)
	num("--metrics-port", a.MetricsPort)
	for _, p := range a.ResourcesPaths {
		args = append(args, "--resources-path", p)
	}
	opt("--config", a.ConfigFilePath)
	opt("--placement-host-address", a.PlacementHostAddress)
	opt("--log-level", a.LogLevel)
	if a.EnableAppHealthCheck {
		args = append(args, "--enable-app-health-check")
	}
	opt("--app-health-check-path", a.AppHealthCheckPath)
	num("--app-health-probe-interval", a.AppHealthProbeInterval)
	num("--app-health-probe-timeout", a.AppHealthProbeTimeout)
	num("--app-health-threshold", a.AppHealthThreshold)
	if a.DaprHTTPMaxRequestSize > 0 {
		// The dapr CLI passes the deprecated --dapr-http-max-request-size; this is its
		// successor, in the same MiB.
		args = append(args, "--max-body-size", strconv.Itoa(a.DaprHTTPMaxRequestSize)+"Mi")
	}
	if a.ConfigFilePath != "" {
		on, err := mtlsEnabled(a.ConfigFilePath)
		if err != nil {
			return nil, err
		}
		if on {
			args = append(args, "--enable-mtls", "--sentry-address", sentry)
		}
	}
	return args, nil
}

// mtlsEnabled reads spec.mtls.enabled of a Dapr Configuration file.
func mtlsEnabled(path string) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read the Dapr configuration: %w", err)
	}
	var c struct {
		Spec struct {
			MTLS struct {
				Enabled bool `yaml:"enabled"`
			} `yaml:"mtls"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		return false, fmt.Errorf("Dapr configuration %s: %w", path, err)
	}
	return c.Spec.MTLS.Enabled, nil
}

// appEnv is what the CLI adds to an app's and its sidecar's environment.
func appEnv(a AppSpec) []string {
	env := []string{
		"APP_ID=" + a.AppID, "APP_PORT=" + strconv.Itoa(a.AppPort),
		"DAPR_HTTP_PORT=" + strconv.Itoa(a.DaprHTTPPort), "DAPR_GRPC_PORT=" + strconv.Itoa(a.DaprGRPCPort),
	}
	if a.MetricsPort > 0 {
		env = append(env, "DAPR_METRICS_PORT="+strconv.Itoa(a.MetricsPort))
	}
	if a.AppProtocol != "" {
		env = append(env, "APP_PROTOCOL="+a.AppProtocol)
	}
	if a.AppChannelAddress != "" {
		env = append(env, "APP_CHANNEL_ADDRESS="+a.AppChannelAddress)
	}
	for k, v := range a.Env {
		env = append(env, k+"="+v)
	}
	return env
}

// Package stacktest starts the real taskgrid stack for integration and end-to-end tests:
// Redis, MariaDB, the local Kafka-protocol broker, Dapr placement and scheduler, and
// each app with its own daprd sidecar, all on free loopback ports in a temporary
// directory, using the repository's own components/ and scripts. Nothing is mocked.
package stacktest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/platform/env"
	"github.com/taskgrid/taskgrid/internal/platform/procs"
	"github.com/taskgrid/taskgrid/internal/testharness/netlab"
)

// Options say what to start.
type Options struct {
	// Apps to start, one instance each, in order. Defaults to every app.
	Apps []string
	// AppEnv adds environment variables to an app (by app id), e.g. POOL_SIZE.
	AppEnv map[string]map[string]string
	// Logf receives progress lines (t.Logf). Defaults to discarding them.
	Logf func(format string, args ...any)
	// Profiling serves Go's pprof from every app (PROFILING=true) and every daprd
	// (--enable-profiling on Ports.Profile), for the bench's -profile.
	Profiling bool
	// Infra, when set, is the test host (a netlab namespace) that runs the
	// infrastructure and the apps Apps names, each listening on the host's address
	// instead of the machine's loopback. Other hosts' apps start with StartAppOn.
	Infra *netlab.Host
}

// AllApps are the app ids of the system, in start order.
var AllApps = []string{"storekeeper", "worker", "gateway", "analytics"}

// Stack is a running stack. Stop it with Stop.
type Stack struct {
	Dir           string // temporary directory: data, logs, results
	RepoRoot      string
	RedisAddr     string
	KafkaAddr     string
	MySQLDSN      string
	MySQLAddr     string
	PlacementAddr string
	SchedulerAddr string
	SentryAddr    string
	TrustAnchors  string // the root certificate's file (PEM)
	ResultsRoot   string
	// DaprToken is what every sidecar of the stack requires on its API (dapr-api-token);
	// AppToken is what the sidecars send their apps. Both are new for every stack.
	DaprToken env.Secret
	AppToken  env.Secret

	opts     Options
	env      []string // base environment for sidecars (TASKGRID_* included)
	bins     binaries
	mu       sync.Mutex
	services []*Proc // infrastructure, in start order
	apps     map[string][]*Instance
}

// Start brings the whole stack up, or returns an error saying which part failed and
// where its log is. The caller must Stop the stack even when Start fails.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if opts.Apps == nil {
		opts.Apps = AllApps
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "taskgrid-stack-")
	if err != nil {
		return nil, fmt.Errorf("create stack directory: %w", err)
	}
	// The MariaDB server runs as user mysql when we are root: it must reach its files.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create stack directory: %w", err)
	}
	s := &Stack{Dir: dir, RepoRoot: root, opts: opts, apps: map[string][]*Instance{}}
	if s.DaprToken, err = newToken(); err != nil {
		return s, err
	}
	if s.AppToken, err = newToken(); err != nil {
		return s, err
	}
	s.ResultsRoot = filepath.Join(dir, "results")
	for _, d := range []string{".run", "logs", "results"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return s, fmt.Errorf("create stack directory: %w", err)
		}
	}
	start := time.Now()
	if s.bins, err = buildBinaries(ctx, root); err != nil {
		return s, err
	}
	opts.Logf("stacktest: binaries ready in %s", time.Since(start).Round(time.Millisecond))
	if err := s.startServices(ctx); err != nil {
		return s, err
	}
	opts.Logf("stacktest: services up in %s (dir %s)", time.Since(start).Round(time.Millisecond), dir)
	for _, id := range opts.Apps {
		if _, err := s.StartApp(ctx, id, nil); err != nil {
			return s, err
		}
	}
	opts.Logf("stacktest: stack up in %s", time.Since(start).Round(time.Millisecond))
	return s, nil
}

func (s *Stack) startServices(ctx context.Context) error {
	p, err := freePorts(11)
	if err != nil {
		return err
	}
	sp, err := freePorts(3)
	if err != nil {
		return err
	}
	sentryPort, sentryHealth, sentryMetrics := sp[0], sp[1], sp[2]
	ip := hostIP(s.opts.Infra)
	at := func(port int) string { return hostAddr(s.opts.Infra, port) }
	s.SentryAddr = at(sentryPort)
	redisPort, mysqlPort, kafkaPort := p[0], p[1], p[2]
	placePort, placeRaft, placeHealth, placeMetrics := p[3], p[4], p[5], p[6]
	schedPort, etcdClient, etcdPeer, schedHealth := p[7], p[8], p[9], p[10]
	schedMetrics, err := FreePort()
	if err != nil {
		return err
	}
	s.RedisAddr, s.KafkaAddr = at(redisPort), at(kafkaPort)
	s.PlacementAddr, s.SchedulerAddr = at(placePort), at(schedPort)
	s.MySQLAddr = at(mysqlPort)
	s.MySQLDSN = fmt.Sprintf("taskgrid:taskgrid-test@tcp(%s)/taskgrid?allowNativePasswords=true&parseTime=true", s.MySQLAddr)
	mysqlClients := ip // the host pattern of the MariaDB user: where the clients are
	if s.opts.Infra != nil {
		mysqlClients = s.opts.Infra.NetPattern()
	}

	vars := map[string]string{
		"RUN_DIR":                           filepath.Join(s.Dir, ".run"),
		"TASKGRID_REDIS_HOST":               s.RedisAddr,
		"TASKGRID_KAFKA_BROKERS":            s.KafkaAddr,
		"TASKGRID_KAFKA_TOPICS":             strings.Join(events.Topics(), ","),
		"TASKGRID_MYSQL_PORT":               strconv.Itoa(mysqlPort),
		"TASKGRID_MYSQL_BIND":               ip,
		"TASKGRID_MYSQL_CLIENT_HOST":        mysqlClients,
		"TASKGRID_MYSQL_DATABASE":           "taskgrid",
		"TASKGRID_MYSQL_USER":               "taskgrid",
		"TASKGRID_MYSQL_PASSWORD":           "taskgrid-test",
		"TASKGRID_MYSQL_DSN":                s.MySQLDSN,
		"DAPR_HOST_IP":                      ip,
		"DAPR_SCHEDULER_HOST_ADDRESS_DNS_A": s.SchedulerAddr,
		// Both tokens, new for every stack: every daprd requires the first on its API
		// and sends the second to its app, and the apps do the same from their side.
		"DAPR_API_TOKEN": s.DaprToken.Reveal(),
		"APP_API_TOKEN":  s.AppToken.Reveal(),
	}
	if v, ok := procs.Setting(os.Environ(), "", false); ok { // placement, scheduler, sentry, the broker; apps and sidecars set their own
		vars[procs.Env] = v
	}
	s.env = mergeEnv(os.Environ(), vars)

	redisDir := filepath.Join(s.Dir, "data", "redis")
	if err := os.MkdirAll(redisDir, 0o755); err != nil {
		return fmt.Errorf("start redis: %w", err)
	}
	redisArgs := []string{"--bind", ip, "--port", strconv.Itoa(redisPort),
		"--dir", redisDir, "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no"}
	if s.opts.Infra != nil {
		// Redis without a password answers only loopback clients ("protected mode"); the
		// test hosts' private network stands in for the password the Kubernetes chart sets.
		redisArgs = append(redisArgs, "--protected-mode", "no")
	}
	if err := s.service(ctx, "redis", s.RedisAddr, "redis-server", redisArgs...); err != nil {
		return err
	}

	script := filepath.Join(s.RepoRoot, "deploy", "scripts", "mariadb.sh")
	if err := s.runScript(ctx, script, "init"); err != nil {
		return err
	}
	if err := s.service(ctx, "mariadb", s.MySQLAddr, script, "serve"); err != nil {
		return err
	}
	if err := s.runScript(ctx, script, "bootstrap"); err != nil {
		return err
	}

	if err := s.service(ctx, "kafka", s.KafkaAddr, s.bins.kafka, "-addr", s.KafkaAddr,
		"-data-dir", filepath.Join(s.Dir, "data", "kafka"), "-topics", strings.Join(events.Topics(), ",")); err != nil {
		return err
	}
	// Sentry, the certificate authority: it makes its root and issuer at first start
	// (under data/sentry), and every sidecar, placement and scheduler gets its
	// certificate from it; sidecars talk mTLS to each other and to the control plane.
	creds := filepath.Join(s.Dir, "data", "sentry")
	if err := os.MkdirAll(creds, 0o700); err != nil {
		return fmt.Errorf("start sentry: %w", err)
	}
	_, made := os.Stat(filepath.Join(creds, "ca.crt"))
	if err := s.service(ctx, "sentry", s.SentryAddr, s.bins.sentry, "--listen-address", ip,
		"--port", strconv.Itoa(sentryPort), "--issuer-credentials", creds, "--trust-domain", "localhost",
		"--config", filepath.Join(s.RepoRoot, "deploy", "sentry.yaml"),
		"--healthz-listen-address", ip, "--healthz-port", strconv.Itoa(sentryHealth),
		"--metrics-listen-address", ip, "--metrics-port", strconv.Itoa(sentryMetrics), "--log-as-json"); err != nil {
		return err
	}
	// A sentry that made its root and issuer reloads itself 2 s later (its watch of
	// data/sentry sees its own writes; dapr v1.18.2, cmd/sentry/app) and refuses
	// connections while it does: a sidecar asking for its identity then exits, and the
	// stack does not start. Started again, it finds them and writes nothing.
	if made != nil {
		if err := s.RestartService(ctx, "sentry", s.SentryAddr); err != nil {
			return fmt.Errorf("sentry, started again once it made its credentials: %w", err)
		}
	}
	anchors, err := os.ReadFile(filepath.Join(creds, "ca.crt"))
	if err != nil {
		return fmt.Errorf("sentry's trust anchors: %w", err)
	}
	s.TrustAnchors = filepath.Join(creds, "ca.crt")
	s.env = append(s.env, "DAPR_TRUST_ANCHORS="+string(anchors), "NAMESPACE=default")
	tls := []string{"--tls-enabled", "--trust-anchors-file", s.TrustAnchors, "--sentry-address", s.SentryAddr, "--trust-domain", "localhost", "--mode", "standalone"}
	if err := s.service(ctx, "placement", s.PlacementAddr, s.bins.placement, append(tls, "--listen-address", ip,
		"--port", strconv.Itoa(placePort), "--initial-cluster", "dapr-placement-0="+at(placeRaft),
		"--healthz-listen-address", ip, "--healthz-port", strconv.Itoa(placeHealth),
		"--metrics-listen-address", ip, "--metrics-port", strconv.Itoa(placeMetrics), "--log-as-json")...); err != nil {
		return err
	}
	// The scheduler writes its identity (certificate and key) to files for its etcd, by
	// default in /tmp/secrets/dapr.io/tls, one directory for every scheduler on the
	// machine: two stacks starting at once then read each other's halves ("tls: private
	// key does not match public key"). Each stack's goes in its own directory.
	return s.service(ctx, "scheduler", s.SchedulerAddr, s.bins.scheduler, append(tls, "--listen-address", ip,
		"--port", strconv.Itoa(schedPort), "--override-broadcast-host-port", s.SchedulerAddr,
		"--identity-directory-write", filepath.Join(s.Dir, "data", "scheduler-identity"),
		"--etcd-data-dir", filepath.Join(s.Dir, "data", "scheduler"), "--etcd-client-listen-address", ip,
		"--etcd-client-port", strconv.Itoa(etcdClient),
		"--etcd-initial-cluster", "dapr-scheduler-server-0=http://"+at(etcdPeer),
		"--healthz-listen-address", ip, "--healthz-port", strconv.Itoa(schedHealth),
		"--metrics-listen-address", ip, "--metrics-port", strconv.Itoa(schedMetrics), "--log-as-json")...)
}

// service starts one infrastructure process and waits for its port.
func (s *Stack) service(ctx context.Context, name, address, bin string, args ...string) error {
	p, err := startProc(s.Dir, name, s.env, s.Dir, s.opts.Infra, bin, args...)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.services = append(s.services, p)
	s.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return waitTCP(wctx, p, address)
}

func (s *Stack) runScript(ctx context.Context, script string, args ...string) error {
	cmd := exec.CommandContext(ctx, script, args...)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(script), strings.Join(args, " "), err, out)
	}
	return nil
}

// Service returns the infrastructure process called name (redis, mariadb, kafka,
// placement, scheduler), for fault tests.
func (s *Stack) Service(name string) *Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.services {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Procs returns every process of the stack that is running now: the infrastructure,
// then each app instance and its sidecar.
func (s *Stack) Procs() []*Proc {
	s.mu.Lock()
	all := slices.Clone(s.services)
	for _, id := range AllApps {
		for _, in := range s.apps[id] {
			all = append(all, in.App, in.Daprd)
		}
	}
	s.mu.Unlock()
	return slices.DeleteFunc(all, func(p *Proc) bool {
		exited, _ := p.Exited()
		return p == nil || exited
	})
}

// RestartService starts a stopped infrastructure process again with the same
// arguments and data (e.g. the Kafka broker after a kill) and waits for its port.
func (s *Stack) RestartService(ctx context.Context, name, address string) error {
	old := s.Service(name)
	if old == nil {
		return fmt.Errorf("restart %s: no such service", name)
	}
	old.Stop(10 * time.Second)
	p, err := startProc(s.Dir, name, s.env, s.Dir, nil, old.cmd.Path, old.cmd.Args[1:]...) // the same argv: on the same host
	if err != nil {
		return err
	}
	s.mu.Lock()
	for i, q := range s.services {
		if q == old {
			s.services[i] = p
		}
	}
	s.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return waitTCP(wctx, p, address)
}

// Apps returns the running instances of app id.
func (s *Stack) Apps(id string) []*Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.apps[id])
}

// Running returns the instances of app id whose app process is running.
func (s *Stack) Running(id string) []*Instance {
	return slices.DeleteFunc(s.Apps(id), func(in *Instance) bool {
		exited, _ := in.App.Exited()
		return exited
	})
}

// App returns the first instance of app id, or nil.
func (s *Stack) App(id string) *Instance {
	if a := s.Apps(id); len(a) > 0 {
		return a[0]
	}
	return nil
}

// Stop stops every process in reverse order of start (apps and sidecars first) and
// removes the directory unless keep is true (to read logs after a failure).
func (s *Stack) Stop(keep bool) {
	s.mu.Lock()
	var insts []*Instance
	for _, id := range slices.Backward(AllApps) {
		insts = append(insts, s.apps[id]...)
	}
	services := slices.Clone(s.services)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range insts {
		wg.Go(func() { in.Stop() })
	}
	wg.Wait()
	for _, p := range slices.Backward(services) {
		p.Stop(10 * time.Second)
	}
	if !keep {
		os.RemoveAll(s.Dir)
	}
}

// LogTail returns the last n lines of every log of the stack, for a failure report.
func (s *Stack) LogTail(n int) string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(s.Dir, "logs", "*.log"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "==> %s <==\n%s\n", filepath.Base(f), bytes.Join(lines, []byte("\n")))
	}
	return b.String()
}

// withEnv is base with vars set (replacing their earlier values).
func withEnv(base []string, vars map[string]string) []string {
	out := slices.DeleteFunc(slices.Clone(base), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		_, ok := vars[k]
		return ok
	})
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	return out
}

func mergeEnv(base []string, vars map[string]string) []string {
	out := make([]string, 0, len(base)+len(vars))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		// GOGC: make test raises it for the compiler and the tests; the stack's processes
		// keep Go's default, as in production.
		if _, ok := vars[k]; ok || k == "GOGC" || strings.HasPrefix(k, "TASKGRID_") || strings.HasPrefix(k, "DAPR_") || strings.HasPrefix(k, "APP_") {
			continue
		}
		out = append(out, kv)
	}
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	return out
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "dapr.yaml")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no dapr.yaml above the working directory")
		}
		dir = parent
	}
}

// newToken is a random token of 32 bytes, hex-encoded.
func newToken() (env.Secret, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate a token: %w", err)
	}
	return env.Secret(hex.EncodeToString(b)), nil
}

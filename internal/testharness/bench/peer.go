package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// The peer: River (riverqueue/river, pgx v5 driver) on a private PostgreSQL cluster from
// Debian's packages, running the same burst of no-op jobs with the same number of
// workers as taskgrid's burst scenario. The program is its own Go module,
// deploy/bench/river, so that taskgrid's go.mod does not carry River: it is built in
// that directory and run once per run of the scenario, and prints its figures as JSON.

// peerModule is the peer's module directory, from the repository root.
const peerModule = "deploy/bench/river"

// riverResult is what one run of the peer printed (deploy/bench/river's Result).
type riverResult struct {
	RiverVersion      string  `json:"river_version"`
	PgxVersion        string  `json:"pgx_version"`
	Jobs              int     `json:"jobs"`
	Workers           int     `json:"workers"`
	Clients           int     `json:"clients"`
	PoolMaxConns      int     `json:"pool_max_conns"`
	FetchCooldown     string  `json:"fetch_cooldown"`
	FetchPollInterval string  `json:"fetch_poll_interval"`
	ElapsedSeconds    float64 `json:"elapsed_s"`
	JobsPerSecond     float64 `json:"jobs_per_s"`
	P50Millis         float64 `json:"insert_to_done_p50_ms"`
	P99Millis         float64 `json:"insert_to_done_p99_ms"`
	MaxMillis         float64 `json:"insert_to_done_max_ms"`
	CPUSeconds        float64 `json:"cpu_s"`
	PostgresCPU       float64 `json:"postgres_cpu_s"`
}

// peer is the River peer's running PostgreSQL and its built program, shared by the runs
// of the peer-river scenario and stopped when the benchmark ends.
type peer struct {
	pg  *pgCluster
	bin string // the peer program
	tmp string // holds bin
}

// stop stops PostgreSQL and keeps its files (close removes them).
func (p *peer) stop() {
	if p.pg != nil {
		p.pg.stop()
	}
}

// close stops PostgreSQL and removes the peer's files unless keep.
func (p *peer) close(keep bool) {
	if keep {
		p.stop()
		return
	}
	if p.pg != nil {
		p.pg.remove()
	}
	if p.tmp != "" {
		os.RemoveAll(p.tmp)
	}
}

// startPeer builds the peer and starts its PostgreSQL.
func startPeer(ctx context.Context, logf func(string, ...any)) (*peer, error) {
	root, err := findRepoRoot()
	if err != nil {
		return nil, err
	}
	p := &peer{}
	if p.tmp, err = os.MkdirTemp("", "taskgrid-peer-"); err != nil {
		return nil, err
	}
	p.bin = filepath.Join(p.tmp, "river-peer")
	began := time.Now()
	bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(bctx, "go", "build", "-o", p.bin, ".")
	cmd.Dir = filepath.Join(root, peerModule)
	if out, err := cmd.CombinedOutput(); err != nil {
		p.close(false)
		return nil, fmt.Errorf("build the River peer (go build in %s): %w\n%s", peerModule, err, out)
	}
	logf("bench: River peer built in %s", time.Since(began).Round(time.Millisecond))
	if p.pg, err = startPostgres(ctx); err != nil {
		p.close(false)
		return nil, err
	}
	logf("bench: PostgreSQL %s on %s (pid %d, dir %s)", p.pg.version, p.pg.addr(), p.pg.pid(), p.pg.dir)
	return p, nil
}

// run runs the peer once.
func (p *peer) run(ctx context.Context, c Config) (riverResult, error) {
	var r riverResult
	ctx, cancel := context.WithTimeout(ctx, 11*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, peerArgs(c, p.pg.dsn(), p.pg.pid())...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return r, fmt.Errorf("River peer: %w\n%s", err, tail(stderr.String(), 20))
	}
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return r, fmt.Errorf("River peer printed %q: %w", stdout.String(), err)
	}
	return r, nil
}

// peerWorkers is the peer's worker count: the project's, two nodes of WorkersPerNode.
func peerWorkers(c Config) int { return 2 * c.WorkersPerNode }

func peerArgs(c Config, dsn string, pgPID int) []string {
	return []string{
		"-dsn", dsn, "-jobs", strconv.Itoa(c.BurstTasks), "-workers", strconv.Itoa(peerWorkers(c)),
		"-clients", strconv.Itoa(c.BurstClients),
		"-fetch-cooldown", c.PeerFetchCooldown.String(), "-fetch-poll-interval", c.PeerFetchPollInterval.String(),
		"-postgres-pid", strconv.Itoa(pgPID), "-timeout", "10m",
	}
}

// peerRiver is the peer-river scenario: one run of the peer, its figures, and River's
// settings beside them (Env.settings).
func peerRiver(ctx context.Context, e *Env) ([]Measure, error) {
	if e.peer == nil {
		p, err := startPeer(ctx, e.Logf)
		if err != nil {
			return nil, err
		}
		e.peer = p
	}
	r, err := e.peer.run(ctx, e.Config)
	if err != nil {
		return nil, err
	}
	e.setSettings("peer-river", riverSettings(r, e.peer.pg.version))
	return riverMeasures(r), nil
}

func riverMeasures(r riverResult) []Measure {
	per := func(s float64) float64 { return s * 1000 / float64(max(r.Jobs, 1)) }
	return []Measure{
		{Name: "throughput", Unit: "jobs/s", Value: r.JobsPerSecond},
		{Name: "insert→done p50", Unit: "ms", Value: r.P50Millis},
		{Name: "insert→done p99", Unit: "ms", Value: r.P99Millis},
		{Name: "insert→done max", Unit: "ms", Value: r.MaxMillis},
		{Name: peerCPUName, Unit: "ms", Value: per(r.CPUSeconds + r.PostgresCPU)},
		{Name: "CPU per job: River process (inserting clients and workers)", Unit: "ms", Value: per(r.CPUSeconds)},
		{Name: "CPU per job: PostgreSQL", Unit: "ms", Value: per(r.PostgresCPU)},
	}
}

// peerCPUName is the peer's figure of CPU per job over all its processes.
const peerCPUName = "CPU per job (River process and PostgreSQL)"

// riverSettings are printed beside River's figures.
func riverSettings(r riverResult, pgVersion string) []Setting {
	return []Setting{
		{"River", r.RiverVersion + " (riverpgxv5, pgx " + r.PgxVersion + ")"},
		{"PostgreSQL", pgVersion + " (defaults: fsync and synchronous_commit on), loopback"},
		{"workers", strconv.Itoa(r.Workers) + " (MaxWorkers of the default queue; taskgrid: 2 nodes × " + strconv.Itoa(r.Workers/2) + " slots)"},
		{"FetchCooldown", r.FetchCooldown},
		{"FetchPollInterval", r.FetchPollInterval},
		{"inserts", fmt.Sprintf("%d jobs by %d clients, one Insert (one transaction) per job; pool of %d connections", r.Jobs, r.Clients, r.PoolMaxConns)},
		{"done", "completion event from the client's subscription (job completed in the database); no result file, no notification"},
	}
}

// riverPairs are the figures of taskgrid's burst compared with River's, and the names
// of their ratios.
var riverPairs = []struct{ name, ours, theirs string }{
	{"throughput, taskgrid / River", "throughput", "throughput"},
	{"latency p50, taskgrid submit→notified / River insert→done", "submit→notified p50", "insert→done p50"},
	{"latency p99, taskgrid submit→notified / River insert→done", "submit→notified p99", "insert→done p99"},
	{"CPU per task, taskgrid's stack / River and PostgreSQL", cpuTotalName, peerCPUName},
}

// compareWithRiver returns taskgrid's burst figures as ratios of River's (taskgrid over
// River: above 1 is more throughput, or more latency or CPU). The median is the ratio of
// the medians; min and max are the ratios of the extremes, the widest the runs allow.
func compareWithRiver(figs []Figure) []Figure {
	var out []Figure
	for _, p := range riverPairs {
		a, ok1 := measured(figs, "burst", is(p.ours))
		b, ok2 := measured(figs, "peer-river", is(p.theirs))
		if !ok1 || !ok2 || b.Median == 0 || b.Min == 0 || b.Max == 0 {
			continue
		}
		r := a.Median / b.Median
		f := Figure{Scenario: "vs-river", Name: p.name, Unit: "×", Median: r, Min: a.Min / b.Max, Max: a.Max / b.Min, Runs: []float64{r}}
		out = append(out, f)
	}
	return out
}

// pgCluster is a private PostgreSQL cluster: its own directory, socket and loopback
// port, run as user postgres when the benchmark runs as root (the server refuses root).
type pgCluster struct {
	dir     string
	port    int
	version string
	cmd     *exec.Cmd
	done    chan struct{}
}

func (pg *pgCluster) addr() string { return "127.0.0.1:" + strconv.Itoa(pg.port) }
func (pg *pgCluster) pid() int     { return pg.cmd.Process.Pid }
func (pg *pgCluster) dsn() string {
	return fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", pg.addr())
}

// postgresBin finds the server's binaries from Debian's packages
// (/usr/lib/postgresql/<major>/bin), version 15 when there are several, or
// TASKGRID_PG_BIN.
func postgresBin() (string, error) {
	if d := os.Getenv("TASKGRID_PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var found []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		return "", errors.New("PostgreSQL server not found in /usr/lib/postgresql/*/bin: run deploy/scripts/install-services.sh --bench")
	}
	major := func(d string) int { n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d))); return n }
	slices.SortFunc(found, func(a, b string) int { return major(b) - major(a) })
	for _, d := range found {
		if major(d) == 15 {
			return d, nil
		}
	}
	return found[0], nil
}

// startPostgres creates a cluster in a new directory (initdb, trust authentication on
// loopback only) and starts its server in the foreground as a child of this process,
// so that its PID is the postmaster's; it returns once the server accepts connections.
func startPostgres(ctx context.Context) (pg *pgCluster, err error) {
	bin, err := postgresBin()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	var uid, gid = -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("PostgreSQL runs as user postgres, which does not exist: %w", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	dir, err := os.MkdirTemp("", "taskgrid-pg-")
	if err != nil {
		return nil, err
	}
	pg = &pgCluster{dir: dir}
	defer func() {
		if err != nil {
			pg.remove()
		}
	}()
	if uid >= 0 {
		if err := os.Chown(dir, uid, gid); err != nil {
			return pg, err
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return pg, err
	}
	run := func(name string, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
		return cmd
	}
	out, err := run("postgres", "--version").Output()
	if err != nil {
		return pg, fmt.Errorf("postgres --version: %w", err)
	}
	pg.version = strings.TrimPrefix(strings.TrimSpace(string(out)), "postgres (PostgreSQL) ")
	data := filepath.Join(dir, "data")
	if out, err := run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync").CombinedOutput(); err != nil {
		return pg, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if pg.port, err = stacktest.FreePort(); err != nil {
		return pg, err
	}
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		return pg, err
	}
	defer logf.Close()
	// Not tied to ctx: the server outlives this call and is stopped by stop.
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(pg.port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return pg, fmt.Errorf("start postgres: %w", err)
	}
	pg.cmd, pg.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(pg.done) }()

	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		if err := run("pg_isready", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.port), "-U", "postgres").Run(); err == nil {
			return pg, nil
		}
		select {
		case <-pg.done:
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			return pg, fmt.Errorf("postgres exited before accepting connections:\n%s", tail(string(log), 20))
		case <-wctx.Done():
			return pg, fmt.Errorf("postgres not accepting connections on %s: %w", pg.addr(), wctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop asks the server for a fast shutdown (SIGINT to the postmaster's PID) and kills
// it after 30 s; a second call does nothing. Its directory stays.
func (pg *pgCluster) stop() {
	if pg.cmd == nil {
		return
	}
	_ = pg.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-pg.done:
	case <-time.After(30 * time.Second):
		_ = pg.cmd.Process.Kill()
		<-pg.done
	}
	pg.cmd = nil
}

// remove stops the server and removes its directory.
func (pg *pgCluster) remove() {
	pg.stop()
	os.RemoveAll(pg.dir)
}

// findRepoRoot is the directory above the working directory that holds the peer's module.
func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, peerModule, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no %s above the working directory", peerModule)
		}
		dir = parent
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

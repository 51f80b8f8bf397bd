// Package bench measures the whole system on the real stack (internal/stacktest: real
// sidecars, Kafka-protocol broker, Redis, MariaDB): throughput and latency of tasks from
// the user's submit to the user's notification, recovery after a killed worker, analytics
// ingest, and the queue's cost at depth. Each scenario runs several times; every figure
// is the median of the runs with the smallest and largest beside it.
//
// deploy/bench is the command (`make bench`); it prints the table and writes the JSON.
package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/taskgrid/taskgrid/internal/platform/steps"
	"github.com/taskgrid/taskgrid/internal/testharness/stacktest"
)

// Config sets the sizes of the scenarios. Zero values are not defaults: use
// DefaultConfig or QuickConfig and change what is needed.
type Config struct {
	Runs           int      // runs of each scenario
	Scenarios      []string // which scenarios, in order; empty means all
	WorkersPerNode int      // worker slots per node; two nodes

	BurstTasks   int // noop tasks in one burst
	BurstClients int // parallel submitting clients

	PacedRate      int           // tasks per second
	PacedLightRate int           // tasks per second of the light paced run (well below capacity)
	PacedDuration  time.Duration // length of one paced run

	RecoverySleep time.Duration // length of the tasks a killed worker holds

	// The River peer (peer-river) runs BurstTasks jobs with 2 × WorkersPerNode workers
	// and BurstClients inserting clients; these are its fetch settings.
	PeerFetchCooldown     time.Duration
	PeerFetchPollInterval time.Duration

	IngestEvents int // events per analytics run

	// The chaos run: ChaosRate mixed tasks a second for ChaosDuration, a random process
	// killed every ChaosEvery and started again ChaosDown later.
	ChaosDuration time.Duration
	ChaosRate     int
	ChaosEvery    time.Duration
	ChaosDown     time.Duration
	// ChaosKill names the kinds of process the chaos run kills (ChaosKinds); empty: all.
	ChaosKill []string

	DepthSmall   int // waiting tasks in the small depth case
	DepthLarge   int // waiting tasks in the large depth case
	DepthSamples int // enqueue calls timed, and dequeues counted, at each depth

	LogLevel string // LOG_LEVEL of the apps
	Keep     bool   // keep the stack's directory (logs, data) afterwards
	// ProfileDir, when set, runs the stack with pprof on and writes a CPU profile of
	// every app and daprd, taken during each burst, into it.
	ProfileDir string
	// Steps, when set, is a file every app stamps each task's steps in (STEP_LOG, package
	// steps); each paced and paced-light run then reports the time between the steps.
	Steps string
}

// DefaultConfig is the full benchmark.
func DefaultConfig() Config {
	return Config{
		Runs: 3, WorkersPerNode: 4,
		BurstTasks: 10_000, BurstClients: 32,
		PacedRate: 500, PacedLightRate: 10, PacedDuration: 30 * time.Second,
		RecoverySleep: 8 * time.Second,
		// River's default cooldown (100 ms) caps 8 workers at about 80 jobs/s here (one
		// fetch of at most 8 jobs per cooldown); 1 ms lets it fetch again at once.
		PeerFetchCooldown: time.Millisecond, PeerFetchPollInterval: 50 * time.Millisecond,
		IngestEvents:  5000,
		ChaosDuration: 5 * time.Minute, ChaosRate: 10, ChaosEvery: 5 * time.Second, ChaosDown: 2 * time.Second,
		DepthSmall: 1_000, DepthLarge: 1_000_000, DepthSamples: 500,
		LogLevel: "info",
	}
}

// QuickConfig is a run that fits in about a minute: the same scenarios, smaller.
func QuickConfig() Config {
	c := DefaultConfig()
	c.Runs = 3
	c.BurstTasks, c.PacedRate, c.PacedLightRate, c.PacedDuration = 300, 50, 10, 3*time.Second
	c.IngestEvents = 1000
	c.ChaosDuration = time.Minute
	c.DepthLarge, c.DepthSamples = 20_000, 200
	c.Scenarios = []string{"burst", "peer-river", "paced", "paced-light", "recovery-app", "analytics", "chaos", "depth"}
	return c
}

// Measure is one value a run measured.
type Measure struct {
	Name  string
	Unit  string
	Value float64
}

// The breakdown tables: a figure whose name starts with a breakdown's prefix is printed
// in that table instead of the main one.
const (
	BreakdownCPU   = "cpu"   // CPU per task by process group: "CPU per task: <group>"
	BreakdownCalls = "calls" // sidecar calls per task by kind: "calls per task: <kind>[: <what>]"
	BreakdownHops  = "hops"  // mean latency of each leg: "latency by leg: <leg>"
	// BreakdownSwitches is context switches per task by process group: "context
	// switches per task: <group>".
	BreakdownSwitches = "switches"

	cpuPrefix      = "CPU per task: "
	callsPrefix    = "calls per task: "
	switchesPrefix = "context switches per task: "
)

// breakdownOf is the breakdown table of the figure called name, or "" for the main table.
func breakdownOf(name string) string {
	switch {
	case strings.HasPrefix(name, cpuPrefix):
		return BreakdownCPU
	case strings.HasPrefix(name, callsPrefix) && name != appCallsName:
		return BreakdownCalls
	case strings.HasPrefix(name, hopsPrefix):
		return BreakdownHops
	case strings.HasPrefix(name, switchesPrefix):
		return BreakdownSwitches
	}
	return ""
}

// Env is what a scenario works with: the running stack (nil for a scenario that does
// not use it) and the configuration.
type Env struct {
	Stack  *stacktest.Stack
	Config Config
	Logf   func(format string, args ...any)

	peer     *peer                // the River peer, started by its first run
	settings map[string][]Setting // by scenario, printed beside its figures
	// keep, when set by a scenario (a task lost in the chaos run), keeps the stack's
	// directory whatever Config.Keep says, and says why.
	keep string
}

func (e *Env) setSettings(scenario string, s []Setting) {
	if e.settings == nil {
		e.settings = map[string][]Setting{}
	}
	e.settings[scenario] = s
}

// scenario is one benchmark: a name, a one-line description, and one run. A scenario
// that repeats itself runs once and returns Config.Runs measures of each name. One
// without the stack runs before the stack is started.
type scenario struct {
	name, describe string
	run            func(ctx context.Context, e *Env) ([]Measure, error)
	repeatsItself  bool
	noStack        bool
}

// scenarios in the order they are listed (and run, those without the stack first).
// depth runs last: it leaves the queue full.
func scenarios(c Config) []scenario {
	return []scenario{
		{name: "burst", describe: fmt.Sprintf("%d noop tasks submitted over HTTP by %d clients, %d workers; first submit to last SSE completion", c.BurstTasks, c.BurstClients, 2*c.WorkersPerNode), run: burst},
		{name: "peer-river", describe: fmt.Sprintf("the burst's %d no-op jobs on River and PostgreSQL, %d workers, %d inserting clients; first insert to last completion (run before the stack starts)", c.BurstTasks, peerWorkers(c), c.BurstClients), run: peerRiver, noStack: true},
		{name: "paced", describe: fmt.Sprintf("%d tasks/s for %s, workers idle at the start; sustained if completions keep up with the offer and the backlog does not grow", c.PacedRate, c.PacedDuration), run: func(ctx context.Context, e *Env) ([]Measure, error) { return paced(ctx, e, c.PacedRate) }},
		{name: "paced-light", describe: fmt.Sprintf("%d tasks/s for %s: workers idle throughout", c.PacedLightRate, c.PacedDuration), run: func(ctx context.Context, e *Env) ([]Measure, error) { return pacedLight(ctx, e, c.PacedLightRate) }},
		{name: "recovery-app", describe: fmt.Sprintf("worker app killed (SIGKILL) holding %d tasks; kill to running again on another node", c.WorkersPerNode), run: func(ctx context.Context, e *Env) ([]Measure, error) { return recovery(ctx, e, "app") }},
		{name: "recovery-sidecar", describe: fmt.Sprintf("worker sidecar killed (SIGKILL) holding %d tasks; kill to running again on another node", c.WorkersPerNode), run: func(ctx context.Context, e *Env) ([]Measure, error) { return recovery(ctx, e, "sidecar") }},
		{name: "analytics", describe: fmt.Sprintf("%d lifecycle events through Kafka, the analytics sidecar and the MySQL binding", c.IngestEvents), run: ingest},
		{name: "chaos", describe: fmt.Sprintf("%d mixed tasks/s for %s while a random process of the stack is killed (SIGKILL) every %s and started again %s later; nothing may be lost or completed twice", c.ChaosRate, c.ChaosDuration, c.ChaosEvery, c.ChaosDown), run: chaos, repeatsItself: true},
		{name: "depth", describe: fmt.Sprintf("queue actor through the sidecar with %d and %d tasks waiting; apps' memory", c.DepthSmall, c.DepthLarge), run: depth, repeatsItself: true},
	}
}

// ScenarioNames lists every scenario.
func ScenarioNames() []string {
	var names []string
	for _, s := range scenarios(DefaultConfig()) {
		names = append(names, s.name)
	}
	return names
}

// Run runs the chosen scenarios Config.Runs times each, those without the stack (the
// River peer) first, then starts the stack for the others and stops it at the end, and
// returns the report; with both burst and peer-river it adds their ratios (vs-river).
// A failed run ends the benchmark with its error: a figure is only reported when every
// run of it succeeded.
func Run(ctx context.Context, cfg Config, logf func(string, ...any)) (*Report, error) {
	all := scenarios(cfg)
	chosen := all
	if len(cfg.Scenarios) > 0 {
		chosen = nil
		for _, name := range cfg.Scenarios {
			i := slices.IndexFunc(all, func(s scenario) bool { return s.name == name })
			if i < 0 {
				return nil, fmt.Errorf("unknown scenario %q (known: %s)", name, strings.Join(ScenarioNames(), ", "))
			}
			chosen = append(chosen, all[i])
		}
	}
	if cfg.Runs < 1 || cfg.WorkersPerNode < 1 {
		return nil, errors.New("runs and workers per node must be at least 1")
	}

	rep := &Report{Started: time.Now().UTC(), CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Config: cfg}
	if fs, err := fileSystemOf(os.TempDir()); err != nil { // where the stack's directory goes
		logf("bench: the file system of %s: %v", os.TempDir(), err)
	} else {
		rep.FileSystem = &fs
		if note := fs.Note(); note != "" {
			logf("bench: %s", note)
		}
	}
	e := &Env{Config: cfg, Logf: logf}
	defer func() {
		if e.peer != nil {
			e.peer.close(cfg.Keep)
		}
	}()
	results := map[string][]Figure{}
	runAll := func(list []scenario) error {
		for _, s := range list {
			figs, err := runScenario(ctx, e, s)
			if err != nil {
				if e.Stack != nil {
					logf("bench: last lines of the logs:\n%s", e.Stack.LogTail(20))
				}
				return err
			}
			results[s.name] = figs
		}
		return nil
	}
	assemble := func() {
		rep.Scenarios, rep.Figures = nil, nil
		for _, s := range chosen {
			if figs, ok := results[s.name]; ok {
				rep.Scenarios = append(rep.Scenarios, ScenarioInfo{Name: s.name, Describe: s.describe, Settings: e.settings[s.name]})
				rep.Figures = append(rep.Figures, figs...)
			}
		}
		if vs := compareWithRiver(rep.Figures); len(vs) > 0 {
			rep.Scenarios = append(rep.Scenarios, ScenarioInfo{Name: "vs-river", Describe: "taskgrid's burst figure over River's (ratio of the medians; min and max: ratios of the extremes); above 1, taskgrid's is larger", Settings: e.settings["peer-river"]})
			rep.Figures = append(rep.Figures, vs...)
		}
		rep.Finished = time.Now().UTC()
	}
	defer assemble()

	// Scenarios without the stack first (the River peer), on a machine that runs nothing else.
	var noStack, withStack []scenario
	for _, s := range chosen {
		if s.noStack {
			noStack = append(noStack, s)
		} else {
			withStack = append(withStack, s)
		}
	}
	if err := runAll(noStack); err != nil {
		return rep, err
	}
	if e.peer != nil {
		// PostgreSQL stops now; its files (about a thousand) go when the benchmark ends.
		// Removed here, on ext4 without a journal (see FileSystem) they made the burst
		// that follows pay for them: its result files cost the storekeeper more CPU.
		e.peer.stop()
	}
	if len(withStack) == 0 {
		return rep, nil
	}

	env := map[string]string{"POOL_SIZE": fmt.Sprint(cfg.WorkersPerNode), "LOG_LEVEL": cfg.LogLevel}
	logEnv := map[string]string{"LOG_LEVEL": cfg.LogLevel}
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	// The burst follows every task on its own event stream, all from 127.0.0.1: no caps.
	gatewayEnv := map[string]string{"LOG_LEVEL": cfg.LogLevel, "SSE_MAX_STREAMS": "0", "SSE_MAX_STREAMS_PER_CLIENT": "0"}
	if cfg.Steps != "" {
		for _, m := range []map[string]string{env, logEnv, gatewayEnv} {
			m[steps.Env] = cfg.Steps
		}
	}
	st, err := stacktest.Start(startCtx, stacktest.Options{Logf: logf, Profiling: cfg.ProfileDir != "", AppEnv: map[string]map[string]string{
		"worker": env, "gateway": gatewayEnv, "storekeeper": logEnv, "analytics": logEnv,
	}})
	if err == nil {
		_, err = st.StartApp(startCtx, "worker", nil) // the second worker node
	}
	cancel()
	defer stacktest.RemoveBinaries()
	if st != nil {
		defer func() {
			st.Stop(cfg.Keep || e.keep != "")
			switch {
			case e.keep != "":
				logf("bench: the stack's logs and data are kept in %s (%s)", st.Dir, e.keep)
			case cfg.Keep:
				logf("bench: the stack's logs and data are kept in %s", st.Dir)
			}
		}()
	}
	if err != nil {
		if st != nil {
			logf("bench: last lines of the logs:\n%s", st.LogTail(20))
		}
		return rep, fmt.Errorf("start the stack: %w", err)
	}
	e.Stack = st
	return rep, runAll(withStack)
}

// runScenario runs s Config.Runs times (once if it repeats itself) and returns its
// figures; a failed run fails it.
func runScenario(ctx context.Context, e *Env, s scenario) ([]Figure, error) {
	values := map[string][]float64{}
	var order []Measure
	runs := e.Config.Runs
	if s.repeatsItself {
		runs = 1
	}
	for r := range runs {
		e.Logf("bench: %s, run %d of %d", s.name, r+1, runs)
		began := time.Now()
		ms, err := s.run(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("%s, run %d: %w", s.name, r+1, err)
		}
		e.Logf("bench: %s, run %d took %s", s.name, r+1, time.Since(began).Round(time.Millisecond))
		for _, m := range ms {
			if _, seen := values[m.Name]; !seen {
				order = append(order, m)
			}
			values[m.Name] = append(values[m.Name], m.Value)
		}
	}
	var figs []Figure
	for _, m := range order {
		f := Summarize(s.name, m.Name, m.Unit, values[m.Name])
		f.Breakdown = breakdownOf(m.Name)
		figs = append(figs, f)
	}
	return figs, nil
}

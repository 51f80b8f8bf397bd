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
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/taskgrid/taskgrid/internal/stacktest"
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

	IngestEvents int // events per analytics run

	DepthSmall   int // waiting tasks in the small depth case
	DepthLarge   int // waiting tasks in the large depth case
	DepthSamples int // enqueue calls timed, and dequeues counted, at each depth

	LogLevel string // LOG_LEVEL of the apps
	Keep     bool   // keep the stack's directory (logs, data) afterwards
}

// DefaultConfig is the full benchmark (a few minutes on 2 cores).
func DefaultConfig() Config {
	return Config{
		Runs: 3, WorkersPerNode: 4,
		BurstTasks: 5000, BurstClients: 32,
		PacedRate: 100, PacedLightRate: 10, PacedDuration: 30 * time.Second,
		RecoverySleep: 8 * time.Second,
		IngestEvents:  5000,
		DepthSmall:    1_000, DepthLarge: 1_000_000, DepthSamples: 500,
		LogLevel: "info",
	}
}

// QuickConfig is a run that fits in about a minute: the same scenarios, smaller.
func QuickConfig() Config {
	c := DefaultConfig()
	c.Runs = 3
	c.BurstTasks, c.PacedRate, c.PacedLightRate, c.PacedDuration = 300, 50, 10, 3*time.Second
	c.IngestEvents = 1000
	c.DepthLarge, c.DepthSamples = 20_000, 200
	c.Scenarios = []string{"burst", "paced", "paced-light", "recovery-app", "analytics", "depth"}
	return c
}

// Measure is one value a run measured.
type Measure struct {
	Name  string
	Unit  string
	Value float64
}

// Env is what a scenario works with: the running stack and the configuration.
type Env struct {
	Stack  *stacktest.Stack
	Config Config
	Logf   func(format string, args ...any)
}

// scenario is one benchmark: a name, a one-line description, and one run. A scenario
// that repeats itself runs once and returns Config.Runs measures of each name.
type scenario struct {
	name, describe string
	run            func(ctx context.Context, e *Env) ([]Measure, error)
	repeatsItself  bool
}

// scenarios in the order they run. depth runs last: it leaves the queue full.
func scenarios(c Config) []scenario {
	return []scenario{
		{"burst", fmt.Sprintf("%d noop tasks submitted over HTTP by %d clients, %d workers; first submit to last SSE completion", c.BurstTasks, c.BurstClients, 2*c.WorkersPerNode), burst, false},
		{"paced", fmt.Sprintf("%d tasks/s for %s, workers idle at the start", c.PacedRate, c.PacedDuration), func(ctx context.Context, e *Env) ([]Measure, error) { return paced(ctx, e, c.PacedRate) }, false},
		{"paced-light", fmt.Sprintf("%d tasks/s for %s: workers idle throughout", c.PacedLightRate, c.PacedDuration), func(ctx context.Context, e *Env) ([]Measure, error) { return paced(ctx, e, c.PacedLightRate) }, false},
		{"recovery-app", fmt.Sprintf("worker app killed (SIGKILL) holding %d tasks; kill to running again on another node", c.WorkersPerNode), func(ctx context.Context, e *Env) ([]Measure, error) { return recovery(ctx, e, "app") }, false},
		{"recovery-sidecar", fmt.Sprintf("worker sidecar killed (SIGKILL) holding %d tasks; kill to running again on another node", c.WorkersPerNode), func(ctx context.Context, e *Env) ([]Measure, error) { return recovery(ctx, e, "sidecar") }, false},
		{"analytics", fmt.Sprintf("%d lifecycle events through Kafka, the analytics sidecar and the MySQL binding", c.IngestEvents), ingest, false},
		{"depth", fmt.Sprintf("queue actor through the sidecar with %d and %d tasks waiting; apps' memory", c.DepthSmall, c.DepthLarge), depth, true},
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

// Run starts the stack, runs the chosen scenarios Config.Runs times each, stops the
// stack and returns the report. A failed run ends the benchmark with its error: a
// figure is only reported when every run of it succeeded.
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
	env := map[string]string{"POOL_SIZE": fmt.Sprint(cfg.WorkersPerNode), "LOG_LEVEL": cfg.LogLevel}
	logEnv := map[string]string{"LOG_LEVEL": cfg.LogLevel}
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	st, err := stacktest.Start(startCtx, stacktest.Options{Logf: logf, AppEnv: map[string]map[string]string{
		"worker": env, "gateway": logEnv, "storekeeper": logEnv, "analytics": logEnv,
	}})
	if err == nil {
		_, err = st.StartApp(startCtx, "worker", nil) // the second worker node
	}
	cancel()
	if st != nil {
		defer func() {
			st.Stop(cfg.Keep)
			if cfg.Keep {
				logf("bench: the stack's logs and data are kept in %s", st.Dir)
			}
		}()
	}
	if err != nil {
		if st != nil {
			logf("bench: last lines of the logs:\n%s", st.LogTail(20))
		}
		return nil, fmt.Errorf("start the stack: %w", err)
	}
	e := &Env{Stack: st, Config: cfg, Logf: logf}
	for _, s := range chosen {
		values := map[string][]float64{}
		var order []Measure
		runs := cfg.Runs
		if s.repeatsItself {
			runs = 1
		}
		for r := range runs {
			logf("bench: %s, run %d of %d", s.name, r+1, runs)
			began := time.Now()
			ms, err := s.run(ctx, e)
			if err != nil {
				logf("bench: last lines of the logs:\n%s", st.LogTail(20))
				return rep, fmt.Errorf("%s, run %d: %w", s.name, r+1, err)
			}
			logf("bench: %s, run %d took %s", s.name, r+1, time.Since(began).Round(time.Millisecond))
			for _, m := range ms {
				if _, seen := values[m.Name]; !seen {
					order = append(order, m)
				}
				values[m.Name] = append(values[m.Name], m.Value)
			}
		}
		rep.Scenarios = append(rep.Scenarios, ScenarioInfo{Name: s.name, Describe: s.describe})
		for _, m := range order {
			rep.Figures = append(rep.Figures, Summarize(s.name, m.Name, m.Unit, values[m.Name]))
		}
	}
	rep.Finished = time.Now().UTC()
	return rep, nil
}

// Command bench measures the whole taskgrid system on the real stack and prints a table
// of figures (median, min and max of several runs), also written as JSON. `make bench`
// runs it; `make bench BENCH_ARGS=-quick` is a run that fits in about a minute.
//
//	go run ./deploy/bench [-quick] [-runs 3] [-scenarios burst,peer-river] [-burst.tasks 10000] ...
//
// peer-river runs the same burst on River and PostgreSQL (deploy/bench/river, a module
// of its own, built here) and the report gives taskgrid's figures as ratios of River's.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/taskgrid/taskgrid/internal/testharness/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := bench.DefaultConfig()
	quick := flag.Bool("quick", false, "small sizes: the whole benchmark in about a minute")
	out := flag.String("out", ".run/bench/results.json", "where the JSON report is written")
	scenarios := flag.String("scenarios", "", "comma-separated scenarios to run (default all: "+strings.Join(bench.ScenarioNames(), ",")+")")
	flag.IntVar(&cfg.Runs, "runs", cfg.Runs, "runs of each scenario (figures are their median)")
	flag.IntVar(&cfg.WorkersPerNode, "workers-per-node", cfg.WorkersPerNode, "worker slots per node (two nodes)")
	flag.IntVar(&cfg.BurstTasks, "burst.tasks", cfg.BurstTasks, "noop tasks in one burst")
	flag.IntVar(&cfg.BurstClients, "burst.clients", cfg.BurstClients, "parallel submitting clients in the burst")
	flag.IntVar(&cfg.PacedRate, "paced.rate", cfg.PacedRate, "tasks per second in the paced run")
	flag.IntVar(&cfg.PacedLightRate, "paced-light.rate", cfg.PacedLightRate, "tasks per second in the light paced run")
	flag.DurationVar(&cfg.PacedDuration, "paced.duration", cfg.PacedDuration, "length of one paced run")
	flag.DurationVar(&cfg.PeerFetchCooldown, "peer.fetch-cooldown", cfg.PeerFetchCooldown, "River's FetchCooldown in peer-river (River's default: 100ms)")
	flag.DurationVar(&cfg.PeerFetchPollInterval, "peer.fetch-poll-interval", cfg.PeerFetchPollInterval, "River's FetchPollInterval in peer-river (River's default: 1s)")
	flag.DurationVar(&cfg.RecoverySleep, "recovery.sleep", cfg.RecoverySleep, "length of the tasks a killed worker holds")
	flag.IntVar(&cfg.IngestEvents, "ingest.events", cfg.IngestEvents, "events in one analytics run")
	flag.IntVar(&cfg.DepthSmall, "depth.small", cfg.DepthSmall, "tasks waiting in the small depth case")
	flag.IntVar(&cfg.DepthLarge, "depth.large", cfg.DepthLarge, "tasks waiting in the large depth case")
	flag.IntVar(&cfg.DepthSamples, "depth.samples", cfg.DepthSamples, "enqueues timed and dequeues counted at each depth")
	flag.DurationVar(&cfg.ChaosDuration, "chaos.duration", cfg.ChaosDuration, "length of the chaos run")
	flag.IntVar(&cfg.ChaosRate, "chaos.rate", cfg.ChaosRate, "tasks per second in the chaos run")
	flag.DurationVar(&cfg.ChaosEvery, "chaos.every", cfg.ChaosEvery, "time between two kills in the chaos run")
	flag.DurationVar(&cfg.ChaosDown, "chaos.down", cfg.ChaosDown, "how long a killed process stays down in the chaos run")
	flag.Func("chaos.kill", "comma-separated kinds of process the chaos run kills (default all: "+strings.Join(bench.ChaosKinds, ", ")+")", func(v string) error {
		cfg.ChaosKill = strings.Split(v, ",")
		return nil
	})
	flag.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "LOG_LEVEL of the apps")
	flag.StringVar(&cfg.ProfileDir, "profile", "", "write CPU profiles of every app and daprd, taken during each burst and paced run, into this directory")
	flag.Func("steps", "have every app stamp each task's steps in this file (emptied before each paced run) and report the time between them (the stamps cost the apps a write each)", func(v string) error {
		p, err := filepath.Abs(v)
		cfg.Steps = p
		return err
	})
	verbose := flag.Bool("v", false, "print the stack's progress")
	keep := flag.Bool("keep", false, "keep the stack's directory (logs, data) afterwards")
	flag.Parse()

	if *quick {
		// Flags given on the command line win over the quick sizes: set them again.
		given := map[*flag.Flag]string{}
		flag.Visit(func(f *flag.Flag) { given[f] = f.Value.String() })
		cfg = bench.QuickConfig()
		for f, v := range given {
			if err := f.Value.Set(v); err != nil {
				return fmt.Errorf("flag -%s: %w", f.Name, err)
			}
		}
	}
	if *scenarios != "" {
		cfg.Scenarios = strings.Split(*scenarios, ",")
	}
	cfg.Keep = *keep
	// The burst's clients submit over keep-alive connections instead of a new one per
	// request (the default keeps 2 idle per host): thousands of short-lived loopback
	// connections in TIME_WAIT would be the benchmark's cost, not the system's.
	http.DefaultTransport.(*http.Transport).MaxIdleConnsPerHost = 256
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	logf := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if *verbose || strings.HasPrefix(msg, "bench:") {
			logger.Info(strings.TrimPrefix(msg, "bench: "))
		}
	}
	began := time.Now()
	rep, err := bench.Run(ctx, cfg, logf)
	if err != nil {
		return err
	}
	if err := rep.WriteTable(os.Stdout); err != nil {
		return err
	}
	if err := rep.WriteJSON(*out); err != nil {
		return err
	}
	fmt.Printf("\nwritten to %s (%s in all)\n", *out, time.Since(began).Round(time.Second))
	return nil
}

// Command bench measures the whole taskgrid system on the real stack and prints a table
// of figures (median, min and max of several runs), also written as JSON. `make bench`
// runs it; `make bench BENCH_ARGS=-quick` is a run that fits in about a minute.
//
//	go run ./deploy/bench [-quick] [-runs 3] [-scenarios burst,paced] [-burst.tasks 5000] ...
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/taskgrid/taskgrid/internal/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	d := bench.DefaultConfig()
	quick := flag.Bool("quick", false, "small sizes: the whole benchmark in about a minute")
	out := flag.String("out", ".run/bench/results.json", "where the JSON report is written")
	runs := flag.Int("runs", d.Runs, "runs of each scenario (figures are their median)")
	scenarios := flag.String("scenarios", "", "comma-separated scenarios to run (default all: "+strings.Join(bench.ScenarioNames(), ",")+")")
	workers := flag.Int("workers-per-node", d.WorkersPerNode, "worker slots per node (two nodes)")
	burstTasks := flag.Int("burst.tasks", d.BurstTasks, "noop tasks in one burst")
	burstClients := flag.Int("burst.clients", d.BurstClients, "parallel submitting clients in the burst")
	pacedRate := flag.Int("paced.rate", d.PacedRate, "tasks per second in the paced run")
	pacedLight := flag.Int("paced-light.rate", d.PacedLightRate, "tasks per second in the light paced run")
	pacedDuration := flag.Duration("paced.duration", d.PacedDuration, "length of one paced run")
	recoverySleep := flag.Duration("recovery.sleep", d.RecoverySleep, "length of the tasks a killed worker holds")
	ingestEvents := flag.Int("ingest.events", d.IngestEvents, "events in one analytics run")
	depthSmall := flag.Int("depth.small", d.DepthSmall, "tasks waiting in the small depth case")
	depthLarge := flag.Int("depth.large", d.DepthLarge, "tasks waiting in the large depth case")
	depthSamples := flag.Int("depth.samples", d.DepthSamples, "enqueues timed and dequeues counted at each depth")
	logLevel := flag.String("log-level", d.LogLevel, "LOG_LEVEL of the apps")
	verbose := flag.Bool("v", false, "print the stack's progress")
	keep := flag.Bool("keep", false, "keep the stack's directory (logs, data) afterwards")
	flag.Parse()

	cfg := d
	if *quick {
		cfg = bench.QuickConfig()
	}
	// Flags given on the command line win over the base configuration.
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "runs":
			cfg.Runs = *runs
		case "scenarios":
			cfg.Scenarios = strings.Split(*scenarios, ",")
		case "workers-per-node":
			cfg.WorkersPerNode = *workers
		case "burst.tasks":
			cfg.BurstTasks = *burstTasks
		case "burst.clients":
			cfg.BurstClients = *burstClients
		case "paced.rate":
			cfg.PacedRate = *pacedRate
		case "paced-light.rate":
			cfg.PacedLightRate = *pacedLight
		case "paced.duration":
			cfg.PacedDuration = *pacedDuration
		case "recovery.sleep":
			cfg.RecoverySleep = *recoverySleep
		case "ingest.events":
			cfg.IngestEvents = *ingestEvents
		case "depth.small":
			cfg.DepthSmall = *depthSmall
		case "depth.large":
			cfg.DepthLarge = *depthLarge
		case "depth.samples":
			cfg.DepthSamples = *depthSamples
		case "log-level":
			cfg.LogLevel = *logLevel
		}
	})

	cfg.Keep = *keep
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

// Command kafka serves github.com/twmb/franz-go/pkg/kfake as a one-broker Kafka-protocol
// broker on a loopback address, for development and integration tests only (production
// uses a real Kafka cluster). State lives in -data-dir and survives SIGTERM and SIGKILL.
// Every flag can also be set by its environment variable; the flag wins.
// Exit codes: 0 after SIGINT/SIGTERM, 1 on a runtime error, 2 on a bad configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv)
	if err == nil {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		context.AfterFunc(ctx, stop) // a second signal kills the process if shutdown hangs
		err = Run(ctx, slog.New(slog.NewJSONHandler(os.Stderr, nil)), cfg)
	}
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errConfig):
		fmt.Fprintln(os.Stderr, "kafka broker:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "kafka broker:", err)
		os.Exit(1)
	}
}

// parseConfig reads the flags in args, each defaulting to its environment variable.
func parseConfig(args []string, getenv func(string) string) (Config, error) {
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	sync, err := strconv.ParseBool(env("KAFKA_SYNC_WRITES", "false"))
	if err != nil {
		return Config{}, fmt.Errorf("%w: KAFKA_SYNC_WRITES=%q: want true or false", errConfig, getenv("KAFKA_SYNC_WRITES"))
	}
	// One partition by default: a local stack runs one consumer per group, and a Dapr
	// bulk subscription fills a delivery per partition (its window ticks per partition),
	// so more partitions only cut the deliveries into smaller ones. A task's events
	// share a partition (keyed by task id) either way.
	parts, err := strconv.Atoi(env("KAFKA_PARTITIONS", "1"))
	if err != nil {
		return Config{}, fmt.Errorf("%w: KAFKA_PARTITIONS=%q: want a number", errConfig, getenv("KAFKA_PARTITIONS"))
	}
	var cfg Config
	var topics string
	fs := flag.NewFlagSet("kafka", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.Addr, "addr", env("KAFKA_ADDR", "127.0.0.1:9092"), "loopback (or test host) host:port to listen on (env KAFKA_ADDR)")
	fs.StringVar(&cfg.DataDir, "data-dir", env("KAFKA_DATA_DIR", ""), "directory for topics, records and offsets; required (env KAFKA_DATA_DIR)")
	fs.BoolVar(&cfg.SyncWrites, "sync-writes", sync, "fsync every write (env KAFKA_SYNC_WRITES); off, as in Kafka, whose durability comes from replication: a crash of the broker process loses nothing, a crash of the machine may lose the last second")
	fs.StringVar(&topics, "topics", env("KAFKA_TOPICS", ""), "comma-separated topics to create at start (env KAFKA_TOPICS)")
	fs.IntVar(&cfg.Partitions, "partitions", parts, "partitions per created topic (env KAFKA_PARTITIONS)")
	fs.StringVar(&cfg.ReadyFile, "ready-file", "", "write the listen address here once ready")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fs.PrintDefaults()
			return Config{}, err
		}
		return Config{}, fmt.Errorf("%w: %v", errConfig, err)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("%w: unexpected arguments %q", errConfig, fs.Args())
	}
	cfg.Topics = splitTopics(topics)
	return cfg, nil
}

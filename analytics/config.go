package main

import (
	"time"

	"github.com/taskgrid/taskgrid/internal/platform/appserver"
	"github.com/taskgrid/taskgrid/internal/platform/env"
)

// Config is the analytics app's configuration.
type Config struct {
	appserver.Config
	// TriggerInterval is how often a micro-batch of events is aggregated and written.
	// Defaults to 5s.
	TriggerInterval time.Duration
	// BulkMax and BulkWait bound one bulk delivery from the sidecar (Dapr bulk subscribe):
	// at most BulkMax events, waiting at most BulkWait to fill it. Defaults 500 and 1s.
	BulkMax  int
	BulkWait time.Duration
	// PercentilesEvery is how often the percentiles of a running minute or hour are
	// recomputed (from the facts of every task completed in it, a sort that grows with the
	// window); an ended window's are recomputed once. Defaults to 1m; 0: at every trigger.
	PercentilesEvery time.Duration
}

// Load reads the configuration from the environment.
func Load(getenv func(string) string) (Config, error) {
	r := env.New(getenv)
	cfg := Config{
		Config:           appserver.LoadConfig(r, "analytics", 8083),
		TriggerInterval:  r.Duration("TRIGGER_INTERVAL", 5*time.Second, 100*time.Millisecond, time.Hour),
		BulkMax:          r.Int("BULK_MAX", 500, 1, 10000),
		BulkWait:         r.Duration("BULK_WAIT", time.Second, 10*time.Millisecond, time.Minute),
		PercentilesEvery: r.Duration("PERCENTILES_EVERY", time.Minute, 0, time.Hour),
	}
	return cfg, r.Err()
}

package main

import (
	"time"

	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
	"github.com/taskgrid/taskgrid/internal/platform/appserver"
	"github.com/taskgrid/taskgrid/internal/platform/env"
)

// Config is the storekeeper's configuration.
type Config struct {
	appserver.Config
	// ResultsRoot is the directory under which results are written.
	ResultsRoot string
	// Retention is how long a finished task's record is kept (TASK_RETENTION, default
	// taskstore.RetentionDefault; 0: for ever): see taskstore.WithRetention.
	Retention time.Duration
}

// Load reads the configuration from the environment.
func Load(getenv func(string) string) (Config, error) {
	r := env.New(getenv)
	cfg := Config{
		Config:      appserver.LoadConfig(r, "storekeeper", 8082),
		ResultsRoot: r.Required("RESULTS_ROOT"),
		Retention:   taskstore.LoadRetention(r),
	}
	return cfg, r.Err()
}

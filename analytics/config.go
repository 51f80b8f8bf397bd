package main

import (
	"time"

	"github.com/taskgrid/taskgrid/internal/appserver"
	"github.com/taskgrid/taskgrid/internal/env"
)

// Config is the analytics app's configuration.
type Config struct {
	appserver.Config
	// TriggerInterval is how often a micro-batch of events is aggregated and written.
	// Defaults to 5s.
	TriggerInterval time.Duration
}

// Load reads the configuration from the environment.
func Load(getenv func(string) string) (Config, error) {
	r := env.New(getenv)
	cfg := Config{
		Config:          appserver.LoadConfig(r, "analytics", 8083),
		TriggerInterval: r.Duration("TRIGGER_INTERVAL", 5*time.Second, 100*time.Millisecond, time.Hour),
	}
	return cfg, r.Err()
}

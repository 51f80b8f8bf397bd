package main

import (
	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/platform/appserver"
	"github.com/taskgrid/taskgrid/internal/platform/env"
)

// Config is the gateway's configuration.
type Config struct {
	appserver.Config
	// MaxAttempts is how many attempts a task gets before it fails for good.
	// Defaults to task.MaxAttemptsDefault (5).
	MaxAttempts int
}

// Load reads the configuration from the environment.
func Load(getenv func(string) string) (Config, error) {
	r := env.New(getenv)
	cfg := Config{
		Config:      appserver.LoadConfig(r, "gateway", 8080),
		MaxAttempts: r.Int("MAX_ATTEMPTS", task.MaxAttemptsDefault, 1, 100),
	}
	return cfg, r.Err()
}

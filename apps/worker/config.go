package main

import (
	"os"
	"runtime"

	"github.com/taskgrid/taskgrid/internal/appserver"
	"github.com/taskgrid/taskgrid/internal/env"
)

// Config is the worker's configuration.
type Config struct {
	appserver.Config
	// NodeID names this worker node in logs and metrics. Defaults to the host name.
	NodeID string
	// PoolSize is how many worker actors (tasks at once) this node runs. Defaults to the
	// number of CPUs.
	PoolSize int
}

// Load reads the configuration from the environment.
func Load(getenv func(string) string) (Config, error) {
	r := env.New(getenv)
	host, _ := os.Hostname()
	cfg := Config{
		Config:   appserver.LoadConfig(r, "worker", 8081),
		NodeID:   r.String("NODE_ID", host),
		PoolSize: r.Int("POOL_SIZE", runtime.NumCPU(), 1, 1024),
	}
	return cfg, r.Err()
}

package main

import (
	"github.com/taskgrid/taskgrid/internal/appserver"
	"github.com/taskgrid/taskgrid/internal/env"
)

// Config is the gateway's configuration.
type Config struct {
	appserver.Config
}

// Load reads the configuration from the environment.
func Load(getenv func(string) string) (Config, error) {
	r := env.New(getenv)
	cfg := Config{Config: appserver.LoadConfig(r, "gateway", 8080)}
	return cfg, r.Err()
}

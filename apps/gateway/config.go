package main

import (
	"errors"
	"time"

	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
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
	// Keys are the API keys from API_KEYS_FILE (nil: the API is open, which the gateway
	// allows on a loopback address only, unless ALLOW_ANONYMOUS=true says it is meant).
	Keys *Keys
	// Streams caps the open event streams, per client and in all (SSE_MAX_STREAMS,
	// SSE_MAX_STREAMS_PER_CLIENT).
	Streams StreamLimits
	// SubmitSpacing is the least time between the starts of two submission passes that
	// follow one another (SUBMIT_SPACING, default SubmitSpacingDefault; 0 turns it off):
	// under load a pass then carries about that long's worth of submissions.
	SubmitSpacing time.Duration
	// AcceptedDelay is how long after a task's acceptance its accepted event is published
	// at the soonest, with the others due (ACCEPTED_EVENTS_DELAY, default
	// AcceptedDelayDefault; 0: at once): see BackendOptions.AcceptedDelay.
	AcceptedDelay time.Duration
	// BodyBudget bounds the bytes of the submission bodies the gateway holds at once
	// (SUBMIT_BODY_BUDGET, default BodyBudgetDefault): see APIConfig.BodyBudget.
	BodyBudget int64
	// Retention is how long a finished task's record, and an idempotency key after its
	// claim, are kept (TASK_RETENTION, default taskstore.RetentionDefault; 0: for ever):
	// see taskstore.WithRetention.
	Retention time.Duration
}

// Load reads the configuration from the environment.
func Load(getenv func(string) string) (Config, error) {
	r := env.New(getenv)
	cfg := Config{
		Config:        appserver.LoadConfig(r, "gateway", 8080),
		MaxAttempts:   r.Int("MAX_ATTEMPTS", task.MaxAttemptsDefault, 1, 100),
		Streams:       LoadStreamLimits(r),
		SubmitSpacing: r.Duration("SUBMIT_SPACING", SubmitSpacingDefault, 0, time.Second),
		AcceptedDelay: r.Duration("ACCEPTED_EVENTS_DELAY", AcceptedDelayDefault, 0, time.Minute),
		BodyBudget:    int64(r.Int("SUBMIT_BODY_BUDGET", BodyBudgetDefault, MaxBodyBytesDefault, 1<<40)),
		Retention:     taskstore.LoadRetention(r),
	}
	if path := r.String("API_KEYS_FILE", ""); path != "" {
		keys, err := LoadKeys(path)
		if err != nil {
			return cfg, errors.Join(r.Err(), err)
		}
		cfg.Keys = keys
	}
	if cfg.Keys == nil && !isLoopback(cfg.PublicHost) && !r.Bool("ALLOW_ANONYMOUS", false) {
		r.Fail("PUBLIC_HOST", cfg.PublicHost, "a loopback address, unless API_KEYS_FILE names the API keys (or ALLOW_ANONYMOUS=true opens the API to everyone who reaches it)")
	}
	return cfg, r.Err()
}

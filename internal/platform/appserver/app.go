package appserver

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgrid/taskgrid/internal/adapters/components"
	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/adapters/sidecar"
	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
	"github.com/taskgrid/taskgrid/internal/platform/retry"
	"github.com/taskgrid/taskgrid/internal/platform/runner"
	"github.com/taskgrid/taskgrid/internal/platform/steps"
	"github.com/taskgrid/taskgrid/internal/platform/telemetry"
)

// AppConfig is an app's configuration; it embeds Config, which provides Base.
type AppConfig interface{ Base() Config }

// Base returns the configuration common to every app.
func (c Config) Base() Config { return c }

// Main runs an app the same way in every binary: signal context, configuration from the
// environment, JSON logger, run, exit code. It returns the process exit code.
func Main[C AppConfig](load func(getenv func(string) string) (C, error), run func(context.Context, *slog.Logger, C) error) int {
	ctx, stop := runner.SignalContext(context.Background())
	defer stop()

	cfg, err := load(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "configuration: %v\n", err)
		return 2
	}
	base := cfg.Base()
	logger, err := telemetry.NewLogger(os.Stderr, base.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "configuration: %v\n", err)
		return 2
	}
	logger = logger.With("app_id", base.AppID)
	logger.InfoContext(ctx, "starting", "config", fmt.Sprintf("%+v", cfg))
	if err := run(ctx, logger, cfg); err != nil {
		logger.ErrorContext(ctx, "stopped with error", "error", err)
		return 1
	}
	logger.InfoContext(ctx, "stopped")
	return 0
}

// App bundles what every app's run function builds first: its metrics registry, HTTP
// server and sidecar client.
type App struct {
	Config   Config
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Server   *Server
	Dapr     *sidecar.Client

	records []*taskstore.Store // Run waits for their expiries on their way (Records)
}

// recordsWaitTimeout bounds how long a stopping app waits for the expiries of its last
// batches of records (see taskstore.WithRetention).
const recordsWaitTimeout = 5 * time.Second

// Records returns the task records' store, whose records expire retention after they end
// (taskstore.WithRetention). Run waits for the expiries on their way before it closes the
// sidecar client.
func (a *App) Records(retention time.Duration) *taskstore.Store {
	s := taskstore.New(a.Dapr, components.StateStore, taskstore.WithRetention(retention))
	a.records = append(a.records, s)
	return s
}

// NewApp builds the registry, the HTTP server with its operational routes, and a lazily
// connecting sidecar client whose readiness /readyz reports.
func NewApp(logger *slog.Logger, cfg Config) (*App, error) {
	if err := steps.Open(cfg.StepLog); err != nil {
		return nil, err
	}
	reg := telemetry.NewRegistry(cfg.AppID)
	srv := New(logger, cfg, reg)
	client, err := sidecar.New(cfg.Sidecar)
	if err != nil {
		return nil, err
	}
	srv.AddCheck("sidecar", client.Ready)
	return &App{Config: cfg, Logger: logger, Registry: reg, Server: srv, Dapr: client}, nil
}

// NewOutbox returns the app's event outbox (see events.Outbox): its spool, in the state
// store, belongs to this instance ("<app id>-<instance>"). Run its Run among the app's
// loops. Its depth is exported as taskgrid_events_outbox_depth.
func (a *App) NewOutbox() *events.Outbox {
	o := events.NewOutbox(a.Logger, a.Dapr, a.Dapr, components.PubSub, components.StateStore, a.Config.AppID+"-"+a.Config.Instance)
	a.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "taskgrid_events_outbox_depth", Help: "Lifecycle events waiting in this instance's outbox for the broker.",
	}, func() float64 { return float64(o.Depth()) }))
	return o
}

// Run serves HTTP, waits for the sidecar (see AwaitSidecar), then runs loops until ctx
// ends or one of them fails; it closes the sidecar client last. The HTTP server starts
// first because the sidecar waits for the app's port before it calls the app.
func (a *App) Run(ctx context.Context, loops ...runner.Func) error {
	defer a.Dapr.Close()
	defer func() { // before the client closes
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordsWaitTimeout)
		defer cancel()
		for _, s := range a.records {
			s.Wait(ctx)
		}
	}()
	afterSidecar := func(ctx context.Context) error {
		if err := a.AwaitSidecar(ctx); err != nil {
			return err
		}
		return runner.Group(ctx, loops...)
	}
	return runner.Group(ctx, a.Server.Run, afterSidecar)
}

// AwaitSidecar waits until the sidecar's components are initialised, then reads its
// metadata through the SDK and logs what it loaded. The first gRPC calls of a freshly
// started sidecar can still be refused, so reading the metadata is retried until ctx ends.
func (a *App) AwaitSidecar(ctx context.Context) error {
	if err := a.Dapr.WaitReady(ctx); err != nil {
		return err
	}
	var names []string
	err := retry.Do(ctx, metadataTryTimeout, func(ctx context.Context) error {
		md, err := a.Dapr.GetMetadata(ctx)
		if err != nil {
			return err
		}
		names = names[:0]
		for _, c := range md.RegisteredComponents {
			names = append(names, c.Name+"("+c.Type+")")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read sidecar metadata: %w", err)
	}
	a.Logger.InfoContext(ctx, "sidecar ready", "components", names)
	return nil
}

// metadataTryTimeout bounds one read of the sidecar's metadata.
const metadataTryTimeout = 5 * time.Second

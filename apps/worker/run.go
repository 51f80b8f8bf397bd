package main

import (
	"context"
	"log/slog"

	"github.com/taskgrid/taskgrid/internal/actorhost"
	"github.com/taskgrid/taskgrid/internal/appserver"
	"github.com/taskgrid/taskgrid/internal/catalog"
	"github.com/taskgrid/taskgrid/internal/components"
	"github.com/taskgrid/taskgrid/internal/taskstore"
)

func run(ctx context.Context, logger *slog.Logger, cfg Config) error {
	app, err := appserver.NewApp(logger, cfg.Config)
	if err != nil {
		return err
	}
	exec := &Executor{Catalog: catalog.Default()}
	var runner *Runner
	metrics := NewMetrics(app.Registry, cfg.PoolSize, func() int { return runner.Busy() })
	runner = NewRunner(logger, cfg.NodeID, exec, taskstore.New(app.Dapr, components.StateStore), app.Dapr, metrics)
	runner.faults = cfg.FaultRate
	outbox := app.NewOutbox()
	runner.outbox = outbox
	if cfg.FaultRate > 0 {
		logger.Warn("fault injection on: worker processes die at random", "rate", cfg.FaultRate)
	}

	slots := cfg.Slots()
	host := actorhost.New(logger, nil)
	host.Register(components.WorkerActor(cfg.NodeID), NewSlotActor(logger, slots, runner, app.Dapr, cfg.WatchdogPeriod.String()))
	host.Register(components.WatchdogActor, NewWatchdogActor(logger, app.Dapr, app.Dapr, runner))
	host.Mount(app.Server.Router)

	// Running attempts finish through the sidecar, which calls back into this app: the
	// HTTP server stops only after the drain.
	serverCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServer()
	return app.Run(serverCtx, func(sctx context.Context) error {
		defer stopServer()
		if err := runner.Announce(ctx, slots); err != nil {
			return err
		}
		reoffer, stopReoffer := context.WithCancel(ctx)
		defer stopReoffer()
		go runner.Reoffer(reoffer, slots, cfg.ReofferInterval)
		select {
		case <-ctx.Done():
		case <-sctx.Done():
		}
		dctx, cancel := context.WithTimeout(serverCtx, cfg.DrainTimeout)
		defer cancel()
		runner.Drain(dctx, slots)
		return nil
	}, func(ctx context.Context) error { outbox.Run(ctx); return nil })
}

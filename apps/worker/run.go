package main

import (
	"context"
	"log/slog"

	"github.com/taskgrid/taskgrid/internal/adapters/actorhost"
	"github.com/taskgrid/taskgrid/internal/adapters/components"
	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/adapters/queueactor"
	"github.com/taskgrid/taskgrid/internal/adapters/storekeeper"
	"github.com/taskgrid/taskgrid/internal/domain/catalog"
	"github.com/taskgrid/taskgrid/internal/platform/appserver"
)

func run(ctx context.Context, logger *slog.Logger, cfg Config) error {
	app, err := appserver.NewApp(logger, cfg.Config)
	if err != nil {
		return err
	}
	outbox := app.NewOutbox()
	var node *Node
	metrics := NewMetrics(app.Registry, cfg.PoolSize, func() int { return node.Busy() }, func() (int, int64) { return node.HeldResults() })
	svc := Services{
		Queue:    queueactor.Client{Invoker: app.Dapr},
		Records:  app.Records(cfg.Retention),
		Results:  storekeeper.Client{Invoker: app.Dapr},
		Events:   outbox,
		Progress: events.BestEffort{Logger: logger, Publisher: app.Dapr, PubSub: components.PubSub},
	}
	slots := cfg.Slots()
	node = NewNode(logger, cfg.NodeID, slots, &Executor{Catalog: catalog.Default()}, svc, metrics)
	node.faults, node.prefetch, node.horizon, node.syncGap = cfg.FaultRate, cfg.Prefetch, cfg.PrefetchHorizon, cfg.SyncGap
	node.heldResultsMax, node.heldBytesMax = cfg.HeldResultsMax, int64(cfg.HeldBytesMax)
	node.deliveries.Spaced(cfg.StoreSpacing)
	if cfg.FaultRate > 0 {
		logger.Warn("fault injection on: worker processes die at random", "rate", cfg.FaultRate)
	}

	host := actorhost.New(logger, nil)
	host.Register(components.WorkerActor(cfg.NodeID), NewSlotActor(logger, slots, node))
	host.Mount(app.Server.Channel)

	// Running attempts finish through the sidecar, which calls back into this app: the
	// HTTP server stops only after the drain.
	serverCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServer()
	return app.Run(serverCtx, func(sctx context.Context) error {
		defer stopServer()
		syncCtx, stopSync := context.WithCancel(context.WithoutCancel(ctx))
		syncDone := make(chan struct{})
		go func() { defer close(syncDone); node.Run(syncCtx) }()
		logger.InfoContext(ctx, "node syncing with the queue", "node", cfg.NodeID, "slots", len(slots))
		select {
		case <-ctx.Done():
		case <-sctx.Done():
		}
		// Draining keeps syncing (the held attempts' leases stay renewed); the last
		// sync, after the loop, reports what ended or was given back.
		dctx, cancel := context.WithTimeout(serverCtx, cfg.DrainTimeout)
		defer cancel()
		node.Drain(dctx)
		stopSync()
		<-syncDone
		node.Stop(serverCtx)
		return nil
	}, func(ctx context.Context) error { outbox.Run(ctx); return nil })
}

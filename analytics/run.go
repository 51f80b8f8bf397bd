package main

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/taskgrid/taskgrid/internal/adapters/components"
	"github.com/taskgrid/taskgrid/internal/adapters/mysqlbinding"
	"github.com/taskgrid/taskgrid/internal/platform/appserver"
	"github.com/taskgrid/taskgrid/internal/platform/retry"
)

func run(ctx context.Context, logger *slog.Logger, cfg Config) error {
	app, err := appserver.NewApp(logger, cfg.Config)
	if err != nil {
		return err
	}
	db := mysqlbinding.DB{Binder: app.Dapr, Binding: components.AnalyticsDB}
	ingest := &Ingest{
		Logger: logger.With("component", "ingest"), Ledger: Ledger{DB: db, PercentilesEvery: cfg.PercentilesEvery},
		BulkMax: cfg.BulkMax, BulkWait: cfg.BulkWait, Metrics: NewMetrics(app.Registry),
	}
	ingest.Mount(app.Server.Channel)
	var migrated atomic.Bool
	app.Server.AddCheck("schema", func(context.Context) error {
		if !migrated.Load() {
			return errors.New("schema migrations not applied yet")
		}
		return nil
	})
	return app.Run(ctx, func(ctx context.Context) error {
		// MariaDB may still be starting: keep trying. Bulks that arrive meanwhile are
		// answered RETRY and come again.
		if err := retry.Do(ctx, time.Minute, func(ctx context.Context) error {
			err := Migrate(ctx, db)
			if err != nil {
				logger.WarnContext(ctx, "schema migration failed; retrying", "error", err)
			}
			return err
		}); err != nil {
			return err
		}
		migrated.Store(true)
		logger.InfoContext(ctx, "schema up to date; aggregating", "trigger_interval", cfg.TriggerInterval)
		ingest.Trigger(ctx, cfg.TriggerInterval)
		return nil
	})
}

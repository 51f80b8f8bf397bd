package main

import (
	"context"
	"log/slog"

	"github.com/taskgrid/taskgrid/internal/adapters/resultstore"
	"github.com/taskgrid/taskgrid/internal/platform/appserver"
)

func run(ctx context.Context, logger *slog.Logger, cfg Config) error {
	app, err := appserver.NewApp(logger, cfg.Config)
	if err != nil {
		return err
	}
	results, err := resultstore.Open(cfg.ResultsRoot)
	if err != nil {
		return err
	}
	defer results.Close()
	outbox := app.NewOutbox()
	NewKeeper(logger, results, app.Records(cfg.Retention), outbox, app.Registry).Mount(app.Server.Channel)
	return app.Run(ctx, func(ctx context.Context) error { outbox.Run(ctx); return nil })
}

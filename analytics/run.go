package main

import (
	"context"
	"log/slog"

	"github.com/taskgrid/taskgrid/internal/appserver"
)

func run(ctx context.Context, logger *slog.Logger, cfg Config) error {
	app, err := appserver.NewApp(logger, cfg.Config)
	if err != nil {
		return err
	}
	return app.Run(ctx)
}

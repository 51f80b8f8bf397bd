package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/taskgrid/taskgrid/internal/actorhost"
	"github.com/taskgrid/taskgrid/internal/appserver"
	"github.com/taskgrid/taskgrid/internal/catalog"
	"github.com/taskgrid/taskgrid/internal/components"
	"github.com/taskgrid/taskgrid/internal/events"
	"github.com/taskgrid/taskgrid/internal/queue"
	"github.com/taskgrid/taskgrid/internal/task"
)

// dispatchTimeout bounds one push of an assignment to a worker slot.
const dispatchTimeout = 2 * time.Second

func run(ctx context.Context, logger *slog.Logger, cfg Config) error {
	app, err := appserver.NewApp(logger, cfg.Config)
	if err != nil {
		return err
	}
	outbox := app.NewOutbox()
	hub := NewSSEHub(logger)
	app.Server.OnShutdown(hub.Close)
	api := NewAPI(logger, &APIConfig{MaxAttempts: cfg.MaxAttempts}, NewDaprBackend(logger, app.Dapr, outbox), catalog.Default(), hub, NewMetrics(app.Registry))
	api.Mount(app.Server.Router)
	MountWeb(app.Server.Router)

	// The task queue actor lives in the gateway; it pushes work to worker slots.
	// The push to a slot happens inside the queue actor's turn, so it is bounded tightly:
	// while Dapr moves actors (a node joins or leaves) calls wait, and the move itself
	// waits for turns in flight. A push that times out leaves the task queued.
	queueActor := queue.NewActor(logger, app.Dapr, func(ctx context.Context, slot string, a task.Assignment) error {
		ctx, cancel := context.WithTimeout(ctx, dispatchTimeout)
		defer cancel()
		typ, err := components.SlotActor(slot)
		if err != nil {
			return err
		}
		return actorhost.Call(ctx, app.Dapr, typ, slot, components.WorkerRun, a, nil)
	})
	app.Registry.MustRegister(queueActor)
	host := actorhost.New(logger, nil)
	host.Register(components.QueueActor, queueActor)
	host.Mount(app.Server.Router)

	// Every lifecycle event, for the SSE streams this instance serves and the overview.
	// A failed attempt is for the overview only: the user is not told (the stream shows
	// the task running again when the next attempt starts).
	feed := func(ctx context.Context) error {
		return events.Subscribe(ctx, logger.With("component", "feed"), app.Dapr, components.Fanout,
			[]string{events.TopicStarted, events.TopicProgress, events.TopicAttemptFailed, events.TopicCompleted, events.TopicFailed},
			func(_ context.Context, e events.Event) error {
				api.Observe(e)
				if e.Kind != events.KindAttemptFailed {
					hub.Publish(updateFromEvent(e))
				}
				return nil
			})
	}
	return app.Run(ctx, feed, func(ctx context.Context) error { outbox.Run(ctx); return nil })
}

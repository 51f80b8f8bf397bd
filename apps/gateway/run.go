package main

import (
	"context"
	"log/slog"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/taskgrid/taskgrid/internal/actorhost"
	"github.com/taskgrid/taskgrid/internal/appserver"
	"github.com/taskgrid/taskgrid/internal/catalog"
	"github.com/taskgrid/taskgrid/internal/components"
	"github.com/taskgrid/taskgrid/internal/events"
	"github.com/taskgrid/taskgrid/internal/queue"
	"github.com/taskgrid/taskgrid/internal/retry"
	"github.com/taskgrid/taskgrid/internal/task"
)

// dispatchTimeout bounds one push of an assignment to a worker slot.
const dispatchTimeout = 2 * time.Second

// The bulk delivery of lifecycle events to the SSE hub: at most feedBulkMax events a
// delivery, and no event waits longer than feedBulkWait for the others.
const (
	routeFeed    = "/internal/events"
	feedBulkMax  = 500
	feedBulkWait = 10 * time.Millisecond
)

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

	// The task queue actor lives in the gateway; it pushes work to worker nodes, one
	// call per node for all of the node's slots it hands work at once. The push happens
	// inside the queue actor's turn, so it is bounded tightly: while Dapr moves actors
	// (a node joins or leaves) calls wait, and the move itself waits for turns in
	// flight. A push that fails puts its attempts back at the head of the queue.
	queueActor := queue.NewActor(logger, app.Dapr, func(ctx context.Context, node string, grants []queue.Grant) ([]task.AttemptID, error) {
		ctx, cancel := context.WithTimeout(ctx, dispatchTimeout)
		defer cancel()
		var reply queue.PushReply
		err := actorhost.Call(ctx, app.Dapr, components.WorkerActor(node), grants[0].Slot, components.WorkerRun, queue.PushRequest{Grants: grants}, &reply)
		return reply.Refused, err
	})
	app.Registry.MustRegister(queueActor)
	host := actorhost.New(logger, nil)
	host.Register(components.QueueActor, queueActor)
	host.Mount(app.Server.Router)

	// Every lifecycle event, for the SSE streams this instance serves and the overview,
	// delivered in bulk by the sidecar. A failed attempt is for the overview only: the
	// user is not told (the stream shows the task running again when the next attempt
	// starts).
	feed := events.BulkRoute{
		PubSub: components.Fanout, Route: routeFeed, MaxMessages: feedBulkMax, MaxAwait: feedBulkWait,
		Topics: []string{events.TopicStarted, events.TopicProgress, events.TopicAttemptFailed, events.TopicCompleted, events.TopicFailed},
	}
	app.Server.Router.Get("/dapr/subscribe", events.ServeSubscriptions(feed))
	app.Server.Router.Post(routeFeed, events.ServeBulk(logger.With("component", "feed"), func(_ context.Context, _ string, evs []events.Event) error {
		for _, e := range evs {
			api.Observe(e)
			if e.Kind != events.KindAttemptFailed {
				hub.Publish(updateFromEvent(e))
			}
		}
		return nil
	}, nil))
	return app.Run(ctx, func(ctx context.Context) error { outbox.Run(ctx); return nil }, func(ctx context.Context) error {
		armSweep(ctx, logger, app.Dapr)
		return nil
	})
}

// armSweep registers the queue's backstop reminder (queue.SweepReminder) once, retrying
// while the scheduler cannot be reached. Nothing waits for it: dispatch and failure
// detection work without it.
func armSweep(ctx context.Context, logger *slog.Logger, c interface {
	RegisterActorReminder(ctx context.Context, in *dapr.RegisterActorReminderRequest) error
}) {
	err := retry.Do(ctx, 5*time.Second, func(ctx context.Context) error {
		return c.RegisterActorReminder(ctx, &dapr.RegisterActorReminderRequest{
			ActorType: components.QueueActor, ActorID: queue.DefaultID, Name: queue.SweepReminder,
			DueTime: queue.SweepPeriod, Period: queue.SweepPeriod,
		})
	})
	if err != nil && ctx.Err() == nil {
		logger.WarnContext(ctx, "could not register the queue's sweep reminder", "error", err)
	}
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/taskgrid/taskgrid/internal/adapters/actorhost"
	"github.com/taskgrid/taskgrid/internal/adapters/components"
	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/adapters/queueactor"
	"github.com/taskgrid/taskgrid/internal/domain/catalog"
	"github.com/taskgrid/taskgrid/internal/domain/queue"
	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/platform/appserver"
	"github.com/taskgrid/taskgrid/internal/platform/steps"
)

// dispatchTimeout bounds one push of an assignment to a worker slot.
const dispatchTimeout = 2 * time.Second

// acceptedFlushTimeout bounds publishing, on shutdown, the accepted events that wait for
// their delay (a broker that does not answer: they are spooled, or go out with their
// tasks' first starts).
const acceptedFlushTimeout = 5 * time.Second

// routeFeed is where the sidecar delivers lifecycle events to the SSE hub, one message
// (a pack of events) at a time, as it comes: a bulk delivery waited for daprd's next
// flush, every millisecond at the least (half of it on average), and that timer woke the
// sidecar every millisecond when idle. At 500 tasks/s a delivery per message costs the
// sidecar a little more (0.50 → 0.54 ms per task; docs/benchmarks-history.md, "The thirteenth session").
const routeFeed = "/internal/events"

func run(ctx context.Context, logger *slog.Logger, cfg Config) error {
	app, err := appserver.NewApp(logger, cfg.Config)
	if err != nil {
		return err
	}
	outbox := app.NewOutbox()
	hub := NewSSEHub(logger)
	hub.Streams().SetLimits(cfg.Streams)
	app.Registry.MustRegister(hub.Streams())
	app.Server.OnShutdown(hub.Close)
	// The task queue actor lives in the gateway; it pushes work to worker nodes, one
	// call per node for all of the node's slots it hands work at once. The push runs
	// after the queue's turn (its leases are written first), and is bounded: while Dapr
	// moves actors (a node joins or leaves) calls wait, and an actor call in flight
	// holds up the move. A push that fails puts its attempts back at the head of the
	// queue at the queue's next turn.
	queueActor := queueactor.NewActor(logger, app.Dapr, func(ctx context.Context, node string, grants []queue.Grant) ([]task.AttemptID, error) {
		ctx, cancel := context.WithTimeout(ctx, dispatchTimeout)
		defer cancel()
		var reply queue.PushReply
		// Any slot of the node takes the call: the first slot named, or slot 0 when all
		// the grants are for the node's buffer.
		for _, g := range grants {
			if g.Assignment.Attempt == 1 {
				steps.Mark(g.Assignment.TaskID, steps.Pushed)
			}
		}
		via := node + "-0"
		if i := slices.IndexFunc(grants, func(g queue.Grant) bool { return g.Slot != "" }); i >= 0 {
			via = grants[i].Slot
		}
		err := actorhost.Call(ctx, app.Dapr, components.WorkerActor(node), via, components.WorkerRun, queue.PushRequest{Grants: grants}, &reply)
		switch {
		case err != nil:
			logger.WarnContext(ctx, "push to a worker node failed; its attempts go back to the queue", "node", node, "attempts", queue.AttemptIDs(grants), "error", err)
		case len(reply.Refused) > 0:
			logger.DebugContext(ctx, "a worker node refused pushed attempts; they go back to the queue", "node", node, "refused", reply.Refused)
		}
		return reply.Refused, err
	})
	app.Registry.MustRegister(queueActor)
	host := actorhost.New(logger, nil)
	host.Register(components.QueueActor, queueActor)
	host.Mount(app.Server.Channel)
	// The backend's enqueues go to the queue actor in this process while the sidecar has
	// it active here (one gateway of several has it), through the sidecar otherwise.
	backend := NewDaprBackend(logger, app.Dapr, outbox, queueActor, BackendOptions{SubmitSpacing: cfg.SubmitSpacing, AcceptedDelay: cfg.AcceptedDelay, Records: app.Records(cfg.Retention)})
	api := NewAPI(logger, &APIConfig{MaxAttempts: cfg.MaxAttempts, Keys: cfg.Keys, BodyBudget: cfg.BodyBudget}, backend, catalog.Default(), hub, NewMetrics(app.Registry))
	api.Mount(app.Server.Router)
	MountWeb(app.Server.Router)

	// Every lifecycle event, for the SSE streams this instance serves and the overview,
	// delivered by the sidecar a message at a time (routeFeed). A failed attempt is for
	// the overview only: the user is not told (the stream shows the task running again
	// when the next attempt starts). An accepted event is not for the streams: the
	// gateway that accepted the task knows, and in its partition it may come after the
	// task's start (two publishers); it tells the backend that the event is out (its
	// task's first start carried it), so that the backend does not publish it again.
	feed := events.Subscription{PubSub: components.Fanout, Route: routeFeed, Topics: events.Topics()}
	app.Server.Channel.Get("/dapr/subscribe", events.ServeSubscriptions(feed))
	app.Server.Channel.Post(routeFeed, events.ServeEach(logger.With("component", "feed"), func(_ context.Context, evs []events.Event) error {
		for _, e := range evs {
			if e.Kind == events.KindAccepted {
				backend.AcceptedSeen(e.TaskID)
				continue
			}
			api.Observe(e)
			if e.Kind == events.KindCompleted {
				steps.Mark(e.TaskID, steps.Fed)
			}
			if e.Kind != events.KindAttemptFailed {
				hub.Publish(updateFromEvent(e))
			}
		}
		return nil
	}))
	// probeQueue calls the queue actor: the self-check's probe and the readiness check's.
	probeQueue := func(ctx context.Context) error {
		_, err := queueactor.Client{Invoker: app.Dapr}.Snapshot(ctx)
		return err
	}
	// The queue is reached through this sidecar's actor lookups; a sidecar left with the
	// queue's type blocked (see actorhost.SelfCheck) re-registers it.
	check := &actorhost.SelfCheck{
		Logger:    logger.With("component", "selfcheck"),
		Probe:     probeQueue,
		Connected: app.Dapr.PlacementConnected,
		SetLive:   app.Server.SetLive,
	}
	app.Server.AddCheck("queue", queueReached(probeQueue))
	flushAccepted := func(ctx context.Context) error {
		<-ctx.Done() // then, while the sidecar is still there, publish what waits
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), acceptedFlushTimeout)
		defer cancel()
		backend.Flush(fctx)
		return nil
	}
	return app.Run(ctx, func(ctx context.Context) error { outbox.Run(ctx); return nil }, flushAccepted, func(ctx context.Context) error {
		if err := queueactor.ArmSweep(ctx, app.Dapr); err != nil && ctx.Err() == nil {
			logger.WarnContext(ctx, "could not register the queue's sweep reminder", "error", err)
		}
		return nil
	}, func(ctx context.Context) error { check.Run(ctx); return nil })
}

// queueReached is the readiness check of the queue: it passes once probe (a call of
// the queue actor) has succeeded since the start. Until then the placement tables do
// not place the queue yet, and a submission would wait for them (a second or two after
// a fresh start). Once reached it stays passed: a later placement outage is met by
// fail-fast submissions (503 and Retry-After), not by taking the gateway out of service.
func queueReached(probe func(context.Context) error) appserver.CheckFunc {
	var reached atomic.Bool
	return func(ctx context.Context) error {
		if reached.Load() {
			return nil
		}
		if err := probe(ctx); err != nil {
			return fmt.Errorf("queue not reached yet: %w", err)
		}
		reached.Store(true)
		return nil
	}
}

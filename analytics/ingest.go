package main

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/taskgrid/taskgrid/internal/adapters/components"
	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/adapters/recent"
)

// routeEvents receives the bulk deliveries of the lifecycle topic.
const routeEvents = "/events"

// Ingest takes events from the sidecar in bulk (Dapr bulk subscribe: up to BulkMax
// events or BulkWait, whichever comes first) and writes each bulk to the ledger in one
// statement before acknowledging it. A bulk that cannot be written is answered RETRY
// and comes again; an entry that is not a lifecycle event is dropped (DROP).
type Ingest struct {
	Logger   *slog.Logger
	Ledger   Ledger
	BulkMax  int
	BulkWait time.Duration
	Metrics  *Metrics
}

// Mount adds the subscription routes.
func (in *Ingest) Mount(r chi.Router) {
	r.Get("/dapr/subscribe", events.ServeSubscriptions(events.Subscription{
		PubSub: components.PubSub, Topics: events.Topics(), Route: routeEvents,
		MaxMessages: in.BulkMax, MaxAwait: in.BulkWait,
	}))
	r.Post(routeEvents, events.ServeBulk(in.Logger, in.insert, func(string, error) { in.Metrics.dropped.Inc() }))
	r.Get("/"+recent.Method, in.serveActivity)
}

// insert writes one delivery to the ledger in one statement: every step of a task's
// life but its progress, which the statistics do not count.
func (in *Ingest) insert(ctx context.Context, _ string, evs []events.Event) error {
	evs = slices.DeleteFunc(evs, func(e events.Event) bool { return e.Kind == events.KindProgress })
	if len(evs) == 0 {
		return nil
	}
	if err := in.Ledger.Insert(ctx, evs); err != nil {
		return err
	}
	now := time.Now()
	for _, ev := range evs {
		in.Metrics.ingested.WithLabelValues(ev.Kind).Inc()
		in.Metrics.lag.Observe(now.Sub(ev.Time).Seconds())
	}
	return nil
}

// Trigger runs the ledger's micro-batch trigger every interval until ctx ends.
func (in *Ingest) Trigger(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		tctx, cancel := context.WithTimeout(ctx, every+30*time.Second)
		n, err := in.Ledger.Trigger(tctx, time.Now())
		cancel()
		if err != nil {
			in.Metrics.triggers.WithLabelValues("error").Inc()
			in.Logger.WarnContext(ctx, "trigger failed; the next one redoes it", "error", err)
			continue
		}
		in.Metrics.triggers.WithLabelValues("ok").Inc()
		if n > 0 {
			in.Logger.DebugContext(ctx, "trigger", "new_events", n)
		}
	}
}

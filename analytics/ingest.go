package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/taskgrid/taskgrid/internal/components"
	"github.com/taskgrid/taskgrid/internal/events"
)

// routeEvents receives the bulk deliveries of every lifecycle topic.
const routeEvents = "/events"

// Topics the analytics app reads: every step of a task's life except progress.
var analyticsTopics = []string{events.TopicAccepted, events.TopicStarted, events.TopicAttemptFailed, events.TopicCompleted, events.TopicFailed}

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
	r.Get("/dapr/subscribe", in.serveSubscriptions)
	r.Post(routeEvents, in.serveBulk)
}

func (in *Ingest) serveSubscriptions(w http.ResponseWriter, _ *http.Request) {
	type bulk struct {
		Enabled            bool `json:"enabled"`
		MaxMessagesCount   int  `json:"maxMessagesCount"`
		MaxAwaitDurationMs int  `json:"maxAwaitDurationMs"`
	}
	type sub struct {
		PubSub string `json:"pubsubname"`
		Topic  string `json:"topic"`
		Route  string `json:"route"`
		Bulk   bulk   `json:"bulkSubscribe"`
	}
	subs := make([]sub, 0, len(analyticsTopics))
	for _, t := range analyticsTopics {
		subs = append(subs, sub{PubSub: components.PubSub, Topic: t, Route: routeEvents,
			Bulk: bulk{Enabled: true, MaxMessagesCount: in.BulkMax, MaxAwaitDurationMs: int(in.BulkWait.Milliseconds())}})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(subs)
}

// bulkRequest is what daprd posts for a bulk subscription.
type bulkRequest struct {
	Entries []struct {
		EntryID string          `json:"entryId"`
		Event   json.RawMessage `json:"event"`
	} `json:"entries"`
	Topic string `json:"topic"`
}

type bulkStatus struct {
	EntryID string `json:"entryId"`
	Status  string `json:"status"` // SUCCESS, RETRY or DROP
}

func (in *Ingest) serveBulk(w http.ResponseWriter, r *http.Request) {
	var req bulkRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "decode bulk: "+err.Error(), http.StatusBadRequest)
		return
	}
	statuses := make([]bulkStatus, len(req.Entries))
	var batch []events.Event
	var ok []int
	for i, e := range req.Entries {
		statuses[i] = bulkStatus{EntryID: e.EntryID, Status: "DROP"}
		ev, err := decodeEntry(e.Event)
		if err != nil {
			in.Logger.WarnContext(r.Context(), "dropping an entry that is not a lifecycle event", "topic", req.Topic, "entry", e.EntryID, "error", err)
			in.Metrics.dropped.Inc()
			continue
		}
		batch = append(batch, ev)
		ok = append(ok, i)
	}
	status := "SUCCESS"
	if err := in.Ledger.Insert(r.Context(), batch); err != nil {
		in.Logger.WarnContext(r.Context(), "could not write events; they will come again", "topic", req.Topic, "events", len(batch), "error", err)
		status = "RETRY"
	} else {
		now := time.Now()
		for _, ev := range batch {
			in.Metrics.ingested.WithLabelValues(ev.Kind).Inc()
			in.Metrics.lag.Observe(now.Sub(ev.Time).Seconds())
		}
	}
	for _, i := range ok {
		statuses[i].Status = status
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"statuses": statuses})
}

// decodeEntry returns the lifecycle event a bulk entry carries: a CloudEvent whose data
// is the event JSON (as an object, or as a string holding it).
func decodeEntry(raw json.RawMessage) (events.Event, error) {
	var ce struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &ce); err != nil {
		return events.Event{}, err
	}
	data := ce.Data
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return events.Event{}, err
		}
		data = []byte(s)
	}
	if len(data) == 0 {
		return events.Event{}, errors.New("no data")
	}
	return events.Decode(data)
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

package events

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"
)

// Bulk subscriptions: daprd delivers events to an app route many at a time (Dapr bulk
// subscribe), up to MaxMessages or every MaxAwait, whichever comes first. One HTTP call
// then carries a whole batch, where a streaming subscription costs a message and an
// acknowledgement per event.

// BulkRoute is one bulk subscription: topics of pubsub delivered to Route.
type BulkRoute struct {
	PubSub      string
	Topics      []string
	Route       string
	MaxMessages int
	MaxAwait    time.Duration
}

// ServeSubscriptions answers daprd's GET /dapr/subscribe with routes.
func ServeSubscriptions(routes ...BulkRoute) http.HandlerFunc {
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
	var subs []sub
	for _, r := range routes {
		for _, t := range r.Topics {
			subs = append(subs, sub{PubSub: r.PubSub, Topic: t, Route: r.Route,
				Bulk: bulk{Enabled: true, MaxMessagesCount: r.MaxMessages, MaxAwaitDurationMs: int(r.MaxAwait.Milliseconds())}})
		}
	}
	data, _ := json.Marshal(subs) // plain structs always encode
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	}
}

// BulkHandleFunc handles the events of one delivery, all of one topic. nil acknowledges
// them all; an error has daprd deliver them again.
type BulkHandleFunc func(ctx context.Context, topic string, evs []Event) error

// ServeBulk returns the handler of a bulk route: it decodes each entry (an entry that is
// not a lifecycle event is dropped, and reported to dropped when not nil), hands the
// events to handle, and answers each entry SUCCESS, RETRY (handle failed) or DROP.
func ServeBulk(logger *slog.Logger, handle BulkHandleFunc, dropped func(topic string, err error)) http.HandlerFunc {
	type request struct {
		Entries []struct {
			EntryID string          `json:"entryId"`
			Event   json.RawMessage `json:"event"`
		} `json:"entries"`
		Topic string `json:"topic"`
	}
	type status struct {
		EntryID string `json:"entryId"`
		Status  string `json:"status"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var req request
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "decode bulk: "+err.Error(), http.StatusBadRequest)
			return
		}
		statuses := make([]status, len(req.Entries))
		evs := make([]Event, 0, len(req.Entries))
		var ok []int
		for i, e := range req.Entries {
			statuses[i] = status{EntryID: e.EntryID, Status: "DROP"}
			ev, err := DecodeEntry(e.Event)
			if err != nil {
				logger.WarnContext(r.Context(), "dropping an entry that is not a lifecycle event", "topic", req.Topic, "entry", e.EntryID, "error", err)
				if dropped != nil {
					dropped(req.Topic, err)
				}
				continue
			}
			evs = append(evs, ev)
			ok = append(ok, i)
		}
		result := "SUCCESS"
		if err := handle(r.Context(), req.Topic, evs); err != nil {
			logger.WarnContext(r.Context(), "events not handled; they will come again", "topic", req.Topic, "events", len(evs), "error", err)
			result = "RETRY"
		}
		for _, i := range ok {
			statuses[i].Status = result
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"statuses": statuses})
	}
}

// DecodeEntry returns the lifecycle event a bulk entry carries: a CloudEvent whose data
// is the event JSON (as an object, or as a string holding it).
func DecodeEntry(raw json.RawMessage) (Event, error) {
	var ce struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &ce); err != nil {
		return Event{}, err
	}
	data := ce.Data
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return Event{}, err
		}
		data = []byte(s)
	}
	if len(data) == 0 {
		return Event{}, errors.New("no data")
	}
	return Decode(data)
}

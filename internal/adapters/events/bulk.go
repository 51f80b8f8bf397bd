package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/taskgrid/taskgrid/internal/platform/jsonscan"
)

// Subscriptions: daprd delivers a topic's messages to an app route, in bulk (Dapr bulk
// subscribe: up to MaxMessages a delivery, flushed every MaxAwait) or one at a time. One
// bulk call carries a whole batch, where a streaming subscription costs a message and an
// acknowledgement per event; a delivery of one message goes as it comes, where a bulk
// one waits for daprd's next flush (half of MaxAwait on average).

// Subscription is one subscription: topics of pubsub delivered to Route, in bulk when
// MaxMessages is above 0 (see ServeBulk), one message a delivery otherwise (ServeEach).
type Subscription struct {
	PubSub      string
	Topics      []string
	Route       string
	MaxMessages int
	MaxAwait    time.Duration
}

// ServeSubscriptions answers daprd's GET /dapr/subscribe with subs.
func ServeSubscriptions(subs ...Subscription) http.HandlerFunc {
	type bulk struct {
		Enabled            bool `json:"enabled"`
		MaxMessagesCount   int  `json:"maxMessagesCount"`
		MaxAwaitDurationMs int  `json:"maxAwaitDurationMs"`
	}
	type sub struct {
		PubSub string `json:"pubsubname"`
		Topic  string `json:"topic"`
		Route  string `json:"route"`
		Bulk   *bulk  `json:"bulkSubscribe,omitempty"`
	}
	var out []sub
	for _, r := range subs {
		for _, t := range r.Topics {
			s := sub{PubSub: r.PubSub, Topic: t, Route: r.Route}
			if r.MaxMessages > 0 {
				s.Bulk = &bulk{Enabled: true, MaxMessagesCount: r.MaxMessages, MaxAwaitDurationMs: int(r.MaxAwait.Milliseconds())}
			}
			out = append(out, s)
		}
	}
	data, _ := json.Marshal(out) // plain structs always encode
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	}
}

// BulkHandleFunc handles the events of one delivery, all of one topic. nil acknowledges
// them all; an error has daprd deliver them again.
type BulkHandleFunc func(ctx context.Context, topic string, evs []Event) error

// ServeBulk returns the handler of a bulk route: it decodes the events of each entry (a
// pack: what is not a lifecycle event is left out, and reported to dropped when not
// nil), hands the events to handle, and answers each entry SUCCESS, RETRY (handle
// failed) or DROP (it carried no event).
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
			got := decodeDelivered(r.Context(), logger, e.Event, req.Topic, e.EntryID, dropped)
			if len(got) == 0 {
				continue
			}
			evs = append(evs, got...)
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

// HandleFunc handles the events of one message. nil acknowledges them; an error has
// daprd deliver the message again.
type HandleFunc func(ctx context.Context, evs []Event) error

// ServeEach returns the handler of a route daprd delivers one message at a time: it
// decodes the events the message carries (as ServeBulk an entry: what is not a
// lifecycle event is left out), hands them to handle, and answers SUCCESS, RETRY
// (handle failed) or DROP (it carried no event).
func ServeEach(logger *slog.Logger, handle HandleFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read delivery: "+err.Error(), http.StatusBadRequest)
			return
		}
		got := decodeDelivered(r.Context(), logger, raw, "", "", nil)
		result := "DROP"
		if len(got) > 0 {
			result = "SUCCESS"
			if err := handle(r.Context(), got); err != nil {
				logger.WarnContext(r.Context(), "events not handled; they will come again", "events", len(got), "error", err)
				result = "RETRY"
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"`+result+`"}`)
	}
}

// decodeDelivered returns the lifecycle events of one delivered message (DecodeEntry),
// and logs and hands to dropped (when not nil) each part that is not one. topic and
// entry name the message in the log, when known (a bulk delivery's entry).
func decodeDelivered(ctx context.Context, logger *slog.Logger, raw json.RawMessage, topic, entry string, dropped func(topic string, err error)) []Event {
	got, bad := DecodeEntry(raw)
	for _, err := range bad {
		attrs := []any{"error", err}
		if topic != "" || entry != "" {
			attrs = append(attrs, "topic", topic, "entry", entry)
		}
		logger.WarnContext(ctx, "dropping what is not a lifecycle event", attrs...)
		if dropped != nil {
			dropped(topic, err)
		}
	}
	return got
}

// DecodeEntry returns the lifecycle events a bulk entry carries, and an error for each
// part of it that is not one: a CloudEvent whose data is a pack (see DecodePack), as a
// string (PackContentType), or an event or an array of events as JSON.
func DecodeEntry(raw json.RawMessage) (evs []Event, bad []error) {
	data, ok := packData(raw)
	if !ok {
		var err error
		if data, err = entryData(raw); err != nil {
			return nil, []error{err}
		}
	}
	if len(bytes.TrimSpace(data)) == 0 || string(data) == "null" {
		return nil, []error{errors.New("no data")}
	}
	return DecodePack(data)
}

// entryData returns the data of a CloudEvent, through encoding/json: a string's
// contents, or the JSON value.
func entryData(raw []byte) ([]byte, error) {
	var ce struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &ce); err != nil {
		return nil, err
	}
	data := ce.Data
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return nil, err
		}
		data = []byte(s)
	}
	return data, nil
}

// packData returns the data of a CloudEvent whose data is a string (a pack, as the
// apps publish it), in one pass: every other value of the envelope is skipped (and
// checked), the data unescaped. ok is false for any other envelope, or one that
// jsonscan leaves to encoding/json (a \u escape, a key written another way): DecodeEntry
// reads it with encoding/json then. With encoding/json the envelope cost as much as the
// events it carries (three scans of the pack: the envelope, the string, the lines).
func packData(raw []byte) (data []byte, ok bool) {
	s := jsonscan.Scanner{Data: raw}
	found := false
	if !s.Object(func(key []byte) bool {
		if string(key) != "data" {
			// encoding/json takes "Data" for "data" too: such an envelope is left to it
			return !bytes.EqualFold(key, []byte("data")) && s.Skip()
		}
		data, found = s.Unquote()
		return found
	}) || !s.End() {
		return nil, false
	}
	return data, found
}

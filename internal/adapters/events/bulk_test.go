package events

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestServeSubscriptions(t *testing.T) {
	t.Parallel()
	h := ServeSubscriptions(BulkRoute{PubSub: "ps", Topics: []string{"a", "b"}, Route: "/r", MaxMessages: 7, MaxAwait: 15 * time.Millisecond})
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodGet, "/dapr/subscribe", nil))
	var subs []struct {
		PubSub string `json:"pubsubname"`
		Topic  string `json:"topic"`
		Route  string `json:"route"`
		Bulk   struct {
			Enabled bool `json:"enabled"`
			Max     int  `json:"maxMessagesCount"`
			Await   int  `json:"maxAwaitDurationMs"`
		} `json:"bulkSubscribe"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &subs); err != nil || len(subs) != 2 {
		t.Fatalf("subscriptions %s (%v)", rec.Body, err)
	}
	for i, s := range subs {
		if s.PubSub != "ps" || s.Topic != []string{"a", "b"}[i] || s.Route != "/r" || !s.Bulk.Enabled || s.Bulk.Max != 7 || s.Bulk.Await != 15 {
			t.Errorf("subscription %d = %+v", i, s)
		}
	}
}

func TestServeBulk(t *testing.T) {
	t.Parallel()
	ev := Event{ID: "x:started:1", Version: Version, Kind: KindStarted, TaskID: uuid.New()}
	data, _ := json.Marshal(ev)
	asString, _ := json.Marshal(string(data))
	ev2 := Event{ID: "y:completed:1", Version: Version, Kind: KindCompleted, TaskID: uuid.New()}
	data2, _ := json.Marshal(ev2)
	pack, _ := json.Marshal(string(data) + "\n" + string(data2) + "\n")
	body := `{"topic":"task-events","entries":[
		{"entryId":"1","event":{"data":` + string(data) + `}},
		{"entryId":"2","event":{"data":"not an event"}},
		{"entryId":"3","event":{"data":` + string(asString) + `}},
		{"entryId":"4","event":{"data":` + string(pack) + `}}]}`
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		name    string
		fail    error
		want    []string
		wantGot int
	}{
		{"handled", nil, []string{"SUCCESS", "DROP", "SUCCESS", "SUCCESS"}, 4},
		{"handler failed: delivered again", errors.New("db down"), []string{"RETRY", "DROP", "RETRY", "RETRY"}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []Event
			drops := 0
			h := ServeBulk(logger, func(_ context.Context, topic string, evs []Event) error {
				if topic != "task-events" {
					t.Errorf("topic %q", topic)
				}
				got = append(got, evs...)
				return tt.fail
			}, func(string, error) { drops++ })
			rec := httptest.NewRecorder()
			h(rec, httptest.NewRequest(http.MethodPost, "/r", strings.NewReader(body)))
			var reply struct {
				Statuses []struct {
					EntryID string `json:"entryId"`
					Status  string `json:"status"`
				} `json:"statuses"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil {
				t.Fatal(err)
			}
			var statuses []string
			for _, s := range reply.Statuses {
				statuses = append(statuses, s.Status)
			}
			if !slices.Equal(statuses, tt.want) || len(got) != tt.wantGot || drops != 1 || got[0].ID != ev.ID || got[3].ID != ev2.ID {
				t.Fatalf("statuses %v, %d events, %d drops; want %v, %d, 1", statuses, len(got), drops, tt.want, tt.wantGot)
			}
		})
	}
	rec := httptest.NewRecorder()
	ServeBulk(logger, nil, nil)(rec, httptest.NewRequest(http.MethodPost, "/r", strings.NewReader("{")))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("a body that is not JSON: %d, want 400", rec.Code)
	}
}

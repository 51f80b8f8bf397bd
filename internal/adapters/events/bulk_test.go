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

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

func TestServeSubscriptions(t *testing.T) {
	t.Parallel()
	h := ServeSubscriptions(
		Subscription{PubSub: "ps", Topics: []string{"a", "b"}, Route: "/r", MaxMessages: 7, MaxAwait: 15 * time.Millisecond},
		Subscription{PubSub: "fan", Topics: []string{"c"}, Route: "/each"},
	)
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodGet, "/dapr/subscribe", nil))
	type bulk struct {
		Enabled bool `json:"enabled"`
		Max     int  `json:"maxMessagesCount"`
		Await   int  `json:"maxAwaitDurationMs"`
	}
	type sub struct {
		PubSub string `json:"pubsubname"`
		Topic  string `json:"topic"`
		Route  string `json:"route"`
		Bulk   *bulk  `json:"bulkSubscribe"`
	}
	var subs []sub
	if err := json.Unmarshal(rec.Body.Bytes(), &subs); err != nil {
		t.Fatalf("subscriptions %s (%v)", rec.Body, err)
	}
	want := []sub{
		{PubSub: "ps", Topic: "a", Route: "/r", Bulk: &bulk{Enabled: true, Max: 7, Await: 15}},
		{PubSub: "ps", Topic: "b", Route: "/r", Bulk: &bulk{Enabled: true, Max: 7, Await: 15}},
		{PubSub: "fan", Topic: "c", Route: "/each"}, // no bulkSubscribe: one message a delivery
	}
	if len(subs) != len(want) {
		t.Fatalf("subscriptions %s, want %d", rec.Body, len(want))
	}
	for i := range want {
		g, w := subs[i], want[i]
		if g.PubSub != w.PubSub || g.Topic != w.Topic || g.Route != w.Route || (g.Bulk == nil) != (w.Bulk == nil) || g.Bulk != nil && *g.Bulk != *w.Bulk {
			t.Errorf("subscription %d = %+v (bulk %+v), want %+v (bulk %+v)", i, g, g.Bulk, w, w.Bulk)
		}
	}
}

func TestServeEach(t *testing.T) {
	t.Parallel()
	ev := Event{ID: "x:started:1", Version: Version, Kind: KindStarted, TaskID: uuid.New()}
	data, _ := json.Marshal(ev)
	ev2 := Event{ID: "y:completed:1", Version: Version, Kind: KindCompleted, TaskID: uuid.New()}
	data2, _ := json.Marshal(ev2)
	pack, _ := json.Marshal(string(data) + "\n" + string(data2) + "\n")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		name string
		body string
		fail error
		want string
		ids  []string
	}{
		{"a pack", `{"topic":"task-events","datacontenttype":"application/x-ndjson","data":` + string(pack) + `}`, nil, "SUCCESS", []string{ev.ID, ev2.ID}},
		{"an event as JSON", `{"topic":"task-events","data":` + string(data) + `}`, nil, "SUCCESS", []string{ev.ID}},
		{"handler failed: delivered again", `{"data":` + string(pack) + `}`, errors.New("hub down"), "RETRY", []string{ev.ID, ev2.ID}},
		{"not an event", `{"data":"not an event"}`, nil, "DROP", nil},
		{"not JSON", `{`, nil, "DROP", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var ids []string
			h := ServeEach(logger, func(_ context.Context, evs []Event) error {
				for _, e := range evs {
					ids = append(ids, e.ID)
				}
				return tt.fail
			})
			rec := httptest.NewRecorder()
			h(rec, httptest.NewRequest(http.MethodPost, "/each", strings.NewReader(tt.body)))
			var reply struct {
				Status string `json:"status"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil || rec.Code != http.StatusOK {
				t.Fatalf("answer %d %s (%v), want 200 with a status", rec.Code, rec.Body, err)
			}
			if reply.Status != tt.want || !slices.Equal(ids, tt.ids) {
				t.Fatalf("status %s, events %v; want %s, %v", reply.Status, ids, tt.want, tt.ids)
			}
		})
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

// An envelope as daprd delivers a pack (its data a string of the events, one per line)
// takes the one-pass way; what packData takes, the encoding/json way reads the same.
func TestPackDataTakesDaprdsEnvelope(t *testing.T) {
	id := uuid.MustParse("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	ev, _ := json.Marshal(Event{ID: task.EventID(id, KindStarted, 1), Version: Version, Kind: KindStarted, Time: time.Unix(0, 0).UTC(), TaskID: id, Type: "noop", Attempt: 1})
	pack, _ := json.Marshal(string(ev) + "\n" + string(ev) + "\n")
	envelope := `{"data":` + string(pack) + `,"datacontenttype":"application/x-ndjson","id":"x+1","pubsubname":"fanout",` +
		`"source":"gateway","specversion":"1.0","time":"2026-12-06T22:00:00Z","topic":"task-events","traceid":"00-0-0-00",` +
		`"traceparent":"00-0-0-00","tracestate":"","type":"com.dapr.event.sent","n":1.5,"flags":[true,null,{"a":[]}]}`
	data, ok := packData([]byte(envelope))
	if !ok {
		t.Fatal("daprd's envelope did not take the one-pass way")
	}
	if want := string(ev) + "\n" + string(ev) + "\n"; string(data) != want {
		t.Fatalf("data %q, want %q", data, want)
	}
	for _, other := range []string{
		`{"Data":"x"}`, `{"data":"x","DATA":"y"}`, `{"data":{"id":"x"}}`, `{"data":"\u0041"}`, `{"data":null}`, `{"id":"x"}`, `{"data":"x"} trailing`,
	} {
		if _, ok := packData([]byte(other)); ok {
			t.Errorf("packData took %s, which it should leave to encoding/json", other)
		}
	}
}

// Whatever packData takes, the encoding/json way takes too, with the same data.
func FuzzPackData(f *testing.F) {
	f.Add([]byte(`{"data":"{\"id\":\"x\"}\n","id":"y","n":[1,{"b":null}]}`))
	f.Add([]byte(`{"data":"a","Data":"b"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		fast, ok := packData(raw)
		if !ok {
			return
		}
		want, err := entryData(raw)
		if err != nil || string(want) != string(fast) {
			t.Fatalf("%q: packData %q; encoding/json %q, %v", raw, fast, want, err)
		}
	})
}

func BenchmarkEntryData(b *testing.B) {
	id := uuid.MustParse("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	ev, _ := json.Marshal(Event{ID: task.EventID(id, KindStarted, 1), Version: Version, Kind: KindStarted, Time: time.Unix(0, 0).UTC(), TaskID: id, Type: "noop", Attempt: 1})
	pack, _ := json.Marshal(strings.Repeat(string(ev)+"\n", 64))
	raw := []byte(`{"data":` + string(pack) + `,"datacontenttype":"application/x-ndjson","id":"x+63","pubsubname":"fanout","source":"gateway","specversion":"1.0","topic":"task-events","type":"com.dapr.event.sent"}`)
	b.Run("one pass", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if _, ok := packData(raw); !ok {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if _, err := entryData(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

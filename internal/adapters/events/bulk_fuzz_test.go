package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// FuzzServeBulk feeds arbitrary bodies to a bulk route, as daprd delivers them. It must
// never panic; a body that is not a bulk delivery is answered 400; any other is answered
// 200 with one status per entry, in order and with its entryId: SUCCESS (or RETRY when
// the handler fails) for exactly the entries in which DecodeEntry finds events, which
// the handler got in order, and DROP for the others; each part that is not an event is
// reported to dropped.
//
//	go test -run '^$' -fuzz '^FuzzServeBulk$' -fuzztime 30s ./internal/adapters/events
func FuzzServeBulk(f *testing.F) {
	id := uuid.MustParse("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	ev, _ := json.Marshal(Event{
		ID: task.EventID(id, KindStarted, 1), Version: Version, Kind: KindStarted, Time: time.Unix(0, 0).UTC(),
		TaskID: id, Type: "noop", Attempt: 1,
	})
	asString, _ := json.Marshal(string(ev))
	pack, _ := json.Marshal(string(ev) + "\n" + string(ev) + "\n{}\n")
	for _, seed := range []string{
		`{"topic":"task-events","entries":[{"entryId":"1","event":{"data":` + string(ev) + `}},{"entryId":"2","event":{"data":` + string(asString) + `}}]}`,
		`{"topic":"task-events","entries":[{"entryId":"1","event":{"data":` + string(pack) + `}},{"entryId":"2","event":{"data":[` + string(ev) + `,{"id":"x"}]}}]}`,
		`{"topic":"task-events","entries":[{"entryId":"1","event":{"data":"not an event"}},{"entryId":"2","event":{}},{"entryId":"3","event":null}]}`,
		`{"topic":"t","entries":[]}`, `{"entries":null}`, `{}`, `[]`, `null`, ``, `{"entries":[{"entryId":1}]}`,
		`{"entries":[{"event":{"data":"\u0000"}}]}`, `{"entries":[{"entryId":"x","event":{"data":{"version":1}}}]} trailing`,
	} {
		f.Add([]byte(seed), false)
	}
	f.Add([]byte(`{"topic":"task-events","entries":[{"entryId":"1","event":{"data":`+string(ev)+`}}]}`), true)
	logger := slog.New(slog.DiscardHandler)

	f.Fuzz(func(t *testing.T, body []byte, fail bool) {
		var got []Event
		var drops int
		h := ServeBulk(logger, func(_ context.Context, _ string, evs []Event) error {
			got = evs
			if fail {
				return errors.New("handler failed")
			}
			return nil
		}, func(string, error) { drops++ })
		rec := httptest.NewRecorder()
		h(rec, httptest.NewRequest(http.MethodPost, "/bulk", bytes.NewReader(body)))

		var req struct {
			Entries []struct {
				EntryID string          `json:"entryId"`
				Event   json.RawMessage `json:"event"`
			} `json:"entries"`
			Topic string `json:"topic"`
		}
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&req); err != nil {
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("body that is not a delivery (%v) answered %d, want 400", err, rec.Code)
			}
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("delivery answered %d: %s", rec.Code, rec.Body)
		}
		var resp struct {
			Statuses []struct {
				EntryID string `json:"entryId"`
				Status  string `json:"status"`
			} `json:"statuses"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || len(resp.Statuses) != len(req.Entries) {
			t.Fatalf("answer %s (%v): want one status for each of %d entries", rec.Body, err, len(req.Entries))
		}
		ok := "SUCCESS"
		if fail {
			ok = "RETRY"
		}
		var want []Event
		wantDrops := 0
		for i, e := range req.Entries {
			st := resp.Statuses[i]
			if st.EntryID != e.EntryID {
				t.Fatalf("status %d is for entry %q, want %q", i, st.EntryID, e.EntryID)
			}
			evs, bad := DecodeEntry(e.Event)
			wantDrops += len(bad)
			switch {
			case len(evs) == 0 && st.Status != "DROP":
				t.Fatalf("entry %q (%v) answered %s, want DROP", e.EntryID, bad, st.Status)
			case len(evs) == 0:
			case st.Status != ok:
				t.Fatalf("entry %q, carrying %d lifecycle events, answered %s, want %s", e.EntryID, len(evs), st.Status, ok)
			default:
				want = append(want, evs...)
			}
		}
		if drops != wantDrops {
			t.Fatalf("%d drops reported, want %d", drops, wantDrops)
		}
		if !slices.EqualFunc(got, want, func(a, b Event) bool { return a.ID == b.ID && a.Kind == b.Kind && a.TaskID == b.TaskID }) {
			t.Fatalf("handler got %d events, want the %d accepted ones in order", len(got), len(want))
		}
	})
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/adapters/resultstore"
	"github.com/taskgrid/taskgrid/internal/adapters/taskstore"
	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// fakeState is an in-memory state store with ETags, for the task records and the
// outbox: a write with an ETag succeeds only if it matches. It counts calls by kind.
type fakeState struct {
	mu      sync.Mutex
	items   map[string]fakeItem
	version int
	calls   map[string]int
	// gate, when set, holds every transaction until it is closed (entered is told
	// first); a transaction whose context ends meanwhile fails as a sidecar call would.
	gate, entered chan struct{}
	// arriving holds records on their way: a bulk read that misses one of them puts it
	// right after (the gateway's write lands just after the storekeeper looked).
	arriving map[string][]byte
}

type fakeItem struct {
	value []byte
	etag  string
}

func newFakeState() *fakeState {
	return &fakeState{items: map[string]fakeItem{}, calls: map[string]int{}}
}

func (f *fakeState) put(key string, value []byte) {
	f.version++
	f.items[key] = fakeItem{value: slices.Clone(value), etag: strconv.Itoa(f.version)}
}

func (f *fakeState) GetState(_ context.Context, _, key string, _ map[string]string) (*dapr.StateItem, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["get"]++
	it := f.items[key]
	return &dapr.StateItem{Key: key, Value: slices.Clone(it.value), Etag: it.etag}, nil
}

func (f *fakeState) SaveStateWithETag(_ context.Context, _, key string, data []byte, etag string, _ map[string]string, _ ...dapr.StateOption) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["save"]++
	if cur, ok := f.items[key]; etag != "" && (!ok || cur.etag != etag) {
		return errors.New("possible etag mismatch")
	}
	f.put(key, data)
	return nil
}

func (f *fakeState) DeleteState(_ context.Context, _, key string, _ map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["delete"]++
	delete(f.items, key)
	return nil
}

func (f *fakeState) GetBulkState(ctx context.Context, _ string, keys []string, _ map[string]string, _ int32) ([]*dapr.BulkStateItem, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["bulk-get"]++
	out := make([]*dapr.BulkStateItem, len(keys))
	for i, k := range keys {
		it := f.items[k]
		out[i] = &dapr.BulkStateItem{Key: k, Value: slices.Clone(it.value), Etag: it.etag}
	}
	for _, k := range keys {
		if v, ok := f.arriving[k]; ok && len(f.items[k].value) == 0 {
			f.put(k, v)
			delete(f.arriving, k)
		}
	}
	return out, nil
}

func (f *fakeState) ExecuteStateTransaction(ctx context.Context, _ string, _ map[string]string, ops []*dapr.StateOperation) error {
	if err := ctx.Err(); err != nil { // a sidecar call fails once its context has ended
		return err
	}
	if f.gate != nil {
		f.entered <- struct{}{}
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["transaction"]++
	for _, op := range ops {
		if cur, ok := f.items[op.Item.Key]; op.Item.Etag != nil && (!ok || cur.etag != op.Item.Etag.Value) {
			return errors.New("possible etag mismatch")
		}
	}
	for _, op := range ops {
		if op.Type == dapr.StateOperationTypeDelete {
			delete(f.items, op.Item.Key)
		} else {
			f.put(op.Item.Key, op.Item.Value)
		}
	}
	return nil
}

func (f *fakeState) record(t *testing.T, id uuid.UUID) (task.Record, bool) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	it, ok := f.items["task-"+id.String()]
	if !ok {
		return task.Record{}, false
	}
	var r task.Record
	if err := json.Unmarshal(it.value, &r); err != nil {
		t.Fatal(err)
	}
	return r, true
}

func (f *fakeState) seed(t *testing.T, recs ...task.Record) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range recs {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		f.put("task-"+r.ID.String(), data)
	}
}

func (f *fakeState) callCounts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.calls {
		out[k] = v
	}
	return out
}

// fakeBroker takes every bulk publish and records its events by topic.
type fakeBroker struct {
	mu     sync.Mutex
	calls  int
	events []task.Event
	topics []string
}

func (b *fakeBroker) PublishEvents(_ context.Context, _, topic string, evs []any, _ ...dapr.PublishEventsOption) dapr.PublishEventsResponse {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	for _, e := range evs {
		entry := e.(dapr.PublishEventsEvent)
		pack, bad := events.DecodePack(entry.Data)
		if len(bad) > 0 || len(pack) == 0 || !strings.HasPrefix(entry.Metadata["cloudevent.id"], pack[0].ID) || entry.Metadata["partitionKey"] != pack[0].TaskID.String() {
			return dapr.PublishEventsResponse{Error: errors.New("bad entry"), FailedEvents: evs}
		}
		for _, ev := range pack {
			b.events = append(b.events, ev)
			b.topics = append(b.topics, topic)
		}
	}
	return dapr.PublishEventsResponse{}
}

// counter reads a counter's value.
func counter(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

type fixture struct {
	keeper  *Keeper
	state   *fakeState
	broker  *fakeBroker
	results *resultstore.Store
	root    string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	results, err := resultstore.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = results.Close() })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	state, broker := newFakeState(), &fakeBroker{}
	outbox := events.NewOutbox(logger, broker, state, "pubsub", "statestore", "storekeeper-test")
	k := NewKeeper(logger, results, taskstore.New(state, "statestore"), outbox, prometheus.NewRegistry())
	return &fixture{keeper: k, state: state, broker: broker, results: results, root: root}
}

func running(attempt int) task.Record {
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return task.Record{
		ID: uuid.New(), Type: "noop", Payload: json.RawMessage(`{}`), Directory: "out", Status: task.StatusRunning,
		Priority: task.PriorityNormal, Attempts: attempt, MaxAttempts: 5, Worker: "n1/s1", StartedAt: &started,
		CreatedAt: started.Add(-time.Second),
	}
}

func result(rec task.Record, dir, output string) task.StoreRequest {
	return task.StoreRequest{TaskID: rec.ID, Attempt: rec.Attempts, Directory: dir, Worker: "n1/s1", Output: json.RawMessage(output)}
}

// One batch with a new result, a duplicate of a completed task, a result of a task that
// failed for good, a rejected directory and a result whose record is missing.
func TestStoreBatch(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	ctx := t.Context()

	fresh := running(1)
	done := running(1)
	oldLoc, _, err := fx.results.Write(ctx, "out", done.ID, []byte(`{"first":true}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	finished := time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC)
	done.Status, done.FinishedAt, done.Progress = task.StatusCompleted, &finished, 1
	done.Result = &task.Location{Directory: oldLoc.Directory, Path: oldLoc.Path, Bytes: oldLoc.Bytes, SHA256: oldLoc.SHA256}
	failed := running(5)
	failed.Status, failed.FinishedAt, failed.Error = task.StatusFailed, &finished, "failed after 5 attempts"
	rejected := running(1)
	lost := running(1) // no record
	cancelled := running(1)
	cancelled.Status, cancelled.FinishedAt = task.StatusCancelled, &finished
	fx.state.seed(t, fresh, done, failed, rejected, cancelled)
	before := fx.state.callCounts()

	reply := fx.keeper.Store(ctx, task.StoreBatch{Results: []task.StoreRequest{
		result(fresh, "out", `{"n":1}`),
		result(done, "out", `{"second":true}`),
		result(failed, "out", `{"late":true}`),
		result(rejected, "../escape", `{}`),
		result(lost, "out", `{"n":5}`),
		result(cancelled, "out", `{"after":"cancel"}`),
	}})

	type want struct {
		stored, rejected, err bool
		path                  string
	}
	wants := []want{
		{stored: true, path: "out/" + fresh.ID.String() + ".json"},
		{stored: true, path: oldLoc.Path},
		{stored: true, path: "out/" + failed.ID.String() + ".json"},
		{rejected: true},
		{rejected: true}, // no record, and no start with it: the task does not exist
		{stored: true, path: "out/" + cancelled.ID.String() + ".json"},
	}
	ids := []uuid.UUID{fresh.ID, done.ID, failed.ID, rejected.ID, lost.ID, cancelled.ID}
	if len(reply.Outcomes) != len(wants) {
		t.Fatalf("%d outcomes, want %d: %+v", len(reply.Outcomes), len(wants), reply)
	}
	for i, w := range wants {
		o := reply.Outcomes[i]
		if o.TaskID != ids[i] || o.Stored != w.stored || o.Rejected != w.rejected || (o.Error != "") != (w.err || w.rejected) {
			t.Errorf("outcome %d = %+v, want %+v for task %s", i, o, w, ids[i])
		}
		if (o.Location != nil) != (w.path != "") || o.Location != nil && o.Location.Path != w.path {
			t.Errorf("outcome %d location = %+v, want path %q", i, o.Location, w.path)
		}
	}

	// Files: the new one written, the first result of the completed task kept, the late
	// result of the failed task kept on disk, nothing outside the root.
	files := map[uuid.UUID]string{fresh.ID: `{"n":1}`, done.ID: `{"first":true}`, failed.ID: `{"late":true}`, lost.ID: `{"n":5}`}
	for id, content := range files {
		data, err := os.ReadFile(filepath.Join(fx.root, "out", id.String()+".json"))
		if err != nil || string(data) != content {
			t.Errorf("result file of %s = %q, %v; want %q", id, data, err, content)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(fx.root), "escape")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rejected result left something outside the root: %v", err)
	}

	// Records: the fresh task completed with its result; the others as they were.
	rec, _ := fx.state.record(t, fresh.ID)
	if rec.Status != task.StatusCompleted || rec.Result == nil || rec.Result.Path != wants[0].path || rec.FinishedAt == nil {
		t.Errorf("fresh task after Store = %+v, want completed with its result", rec)
	}
	if rec, _ := fx.state.record(t, done.ID); !rec.FinishedAt.Equal(finished) || rec.Result.Path != oldLoc.Path {
		t.Errorf("completed task changed: %+v", rec)
	}
	if rec, _ := fx.state.record(t, failed.ID); rec.Status != task.StatusFailed {
		t.Errorf("failed task changed: %+v", rec)
	}
	if rec, _ := fx.state.record(t, cancelled.ID); rec.Status != task.StatusCancelled || rec.Result != nil {
		t.Errorf("cancelled task changed: %+v", rec)
	}
	if _, ok := fx.state.record(t, lost.ID); ok {
		t.Error("Store created the missing record")
	}

	// Events: the new completion and the repeated one, in one bulk publish.
	fx.broker.mu.Lock()
	got, calls := slices.Clone(fx.broker.events), fx.broker.calls
	fx.broker.mu.Unlock()
	if len(got) != 2 || got[0].ID != task.EventID(fresh.ID, task.EventCompleted, 1) || got[1].ID != task.EventID(done.ID, task.EventCompleted, 1) || calls != 1 {
		t.Fatalf("published %+v in %d calls, want the completions of %s and %s in one", got, calls, fresh.ID, done.ID)
	}
	if got[0].Result == nil || got[0].Result.Path != wants[0].path || got[0].Worker != "n1/s1" {
		t.Errorf("completion of the fresh task = %+v, want its result and worker", got[0])
	}
	if got[1].Result == nil || got[1].Result.Path != oldLoc.Path || !got[1].Time.Equal(finished) {
		t.Errorf("repeated completion = %+v, want the first result and finish time", got[1])
	}

	// The records cost one bulk read and one transaction; the outbox one counter read.
	after := fx.state.callCounts()
	for kind, want := range map[string]int{"bulk-get": 1, "transaction": 1, "save": 0, "get": 1} {
		if n := after[kind] - before[kind]; n != want {
			t.Errorf("%d state calls of kind %s, want %d (all: %v)", n, kind, want, after)
		}
	}

	k := fx.keeper
	for outcome, want := range map[string]float64{"written": 4, "duplicate": 1, "rejected": 1, "error": 0} {
		if n := counter(t, k.stored.WithLabelValues(outcome)); n != want {
			t.Errorf("stored{outcome=%q} = %v, want %v", outcome, n, want)
		}
	}
	if n := counter(t, k.completed.WithLabelValues("noop")); n != 1 {
		t.Errorf("completed{task=noop} = %v, want 1", n)
	}
	if n := counter(t, k.bytes); n != float64(len(`{"n":1}`)+len(`{"late":true}`)+len(`{"n":5}`)+len(`{"after":"cancel"}`)) {
		t.Errorf("bytes = %v", n)
	}
}

// A task listed twice in one batch is completed once; both results share the outcome.
func TestStoreBatchRepeatedTask(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	rec := running(1)
	fx.state.seed(t, rec)
	reply := fx.keeper.Store(t.Context(), task.StoreBatch{Results: []task.StoreRequest{
		result(rec, "out", `{"a":1}`), result(rec, "out", `{"a":2}`),
	}})
	for i, o := range reply.Outcomes {
		if !o.Stored || o.TaskID != rec.ID || o.Location == nil {
			t.Errorf("outcome %d = %+v, want stored", i, o)
		}
	}
	if reply.Outcomes[0].Location.SHA256 != reply.Outcomes[1].Location.SHA256 {
		t.Errorf("outcomes name different results: %+v", reply.Outcomes)
	}
	if n := counter(t, fx.keeper.completed.WithLabelValues("noop")); n != 1 {
		t.Errorf("completed %v times, want once", n)
	}
	if len(fx.broker.events) != 1 {
		t.Errorf("published %d events, want one completion", len(fx.broker.events))
	}
}

func TestServeStore(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	fx.keeper.maxBody = 4 << 10
	rec := running(1)
	fx.state.seed(t, rec)
	r := chi.NewRouter()
	fx.keeper.Mount(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	post := func(body []byte) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/results", bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp, data
	}

	body, _ := json.Marshal(task.StoreBatch{Results: []task.StoreRequest{result(rec, "out", `{}`), result(running(1), "/abs", `{}`)}})
	resp, data := post(body)
	var reply task.StoreReply
	if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &reply) != nil || len(reply.Outcomes) != 2 {
		t.Fatalf("POST /results = %d %s, want 200 with two outcomes", resp.StatusCode, data)
	}
	if !reply.Outcomes[0].Stored || !reply.Outcomes[1].Rejected {
		t.Errorf("outcomes = %+v, want stored and rejected", reply.Outcomes)
	}

	for _, bad := range []string{`{"results":`, `[]`, `{"results":[{"output":"` + strings.Repeat("x", 4<<10) + `"}]}`} {
		if resp, _ := post([]byte(bad)); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST %.20q... = %d, want 400", bad, resp.StatusCode)
		}
	}
}

// A short task's result carries its start (the worker did not record it): the record is
// started and completed in one write, and both events go out.
func TestStoreBatchWithStart(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	pending, _ := task.Accept(task.Record{ID: uuid.New(), Type: "noop", Payload: json.RawMessage(`{}`), Directory: "out", MaxAttempts: 5}, time.Now())
	fx.state.seed(t, pending)
	startedAt := time.Now().UTC().Truncate(time.Microsecond)
	req := result(pending, "out", `{"short":true}`)
	req.Attempt, req.StartedAt = 1, startedAt
	req.Start = &task.Assignment{TaskID: pending.ID, Attempt: 1, Priority: task.PriorityNormal}
	reply := fx.keeper.Store(t.Context(), task.StoreBatch{Results: []task.StoreRequest{req}})
	if len(reply.Outcomes) != 1 || !reply.Outcomes[0].Stored {
		t.Fatalf("outcomes %+v", reply.Outcomes)
	}
	rec, ok := fx.state.record(t, pending.ID)
	if !ok || rec.Status != task.StatusCompleted || rec.Attempts != 1 || rec.Worker != "n1/s1" || rec.StartedAt == nil || !rec.StartedAt.Equal(startedAt) {
		t.Fatalf("record %+v, want completed with the start of attempt 1 on n1/s1", rec)
	}
	var kinds []string
	for _, e := range fx.broker.events {
		kinds = append(kinds, e.Kind)
	}
	if !slices.Equal(kinds, []string{task.EventAccepted, task.EventStarted, task.EventCompleted}) {
		t.Errorf("published %v, want the acceptance again (the task's first start), the start and the completion", kinds)
	}
	if c := fx.state.callCounts(); c["transaction"] != 1 {
		t.Errorf("calls %v, want one transaction", c)
	}
}

// A result whose task has no record: with the start of a first attempt queued within
// task.RecordGrace, the record is on its way (the gateway writes it while the attempt is
// queued), and the worker is told to send the result again; otherwise the task does not
// exist and the result is rejected. Nothing is completed or published either way.
func TestStoreWithoutARecord(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		attempt  int
		queued   time.Duration // before now; 0: no start with the result
		rejected bool
	}{
		{"first attempt just queued: try again", 1, time.Second, false},
		{"first attempt queued past the grace: rejected", 1, task.RecordGrace + time.Second, true},
		{"a later attempt: rejected", 2, time.Second, true},
		{"no start with the result: rejected", 1, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t)
			id := uuid.New()
			req := task.StoreRequest{TaskID: id, Attempt: tt.attempt, Directory: "out", Worker: "n1/s1", Output: json.RawMessage(`{"n":1}`), StartedAt: time.Now().UTC()}
			if tt.queued > 0 {
				req.Start = &task.Assignment{TaskID: id, Attempt: tt.attempt, Priority: task.PriorityNormal, Enqueued: time.Now().Add(-tt.queued)}
			}
			reply := fx.keeper.Store(t.Context(), task.StoreBatch{Results: []task.StoreRequest{req}})
			if len(reply.Outcomes) != 1 {
				t.Fatalf("outcomes %+v", reply.Outcomes)
			}
			o := reply.Outcomes[0]
			if o.Stored || o.Rejected != tt.rejected || o.Error == "" {
				t.Fatalf("outcome %+v, want stored false, rejected %v, with an error", o, tt.rejected)
			}
			if _, ok := fx.state.record(t, id); ok {
				t.Error("a record was written for a task that had none")
			}
			if len(fx.broker.events) != 0 {
				t.Errorf("published %v, want nothing", fx.broker.events)
			}
		})
	}
}

// A record that comes while the store call waits for it (written just after the
// storekeeper first looked for it) completes the task in that call.
func TestStoreAwaitsARecordOnItsWay(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	pending, _ := task.Accept(task.Record{ID: uuid.New(), Type: "noop", Payload: json.RawMessage(`{}`), Directory: "out", MaxAttempts: 5}, time.Now())
	data, err := json.Marshal(pending)
	if err != nil {
		t.Fatal(err)
	}
	req := result(pending, "out", `{"late":"record"}`)
	req.Attempt, req.StartedAt = 1, time.Now().UTC()
	req.Start = &task.Assignment{TaskID: pending.ID, Attempt: 1, Priority: task.PriorityNormal, Enqueued: time.Now()}
	fx.state.arriving = map[string][]byte{"task-" + pending.ID.String(): data}
	reply := fx.keeper.Store(t.Context(), task.StoreBatch{Results: []task.StoreRequest{req}})
	if len(reply.Outcomes) != 1 || !reply.Outcomes[0].Stored {
		t.Fatalf("outcomes %+v, want stored in this call", reply.Outcomes)
	}
	if rec, ok := fx.state.record(t, pending.ID); !ok || rec.Status != task.StatusCompleted {
		t.Fatalf("record %+v, want completed", rec)
	}
	if len(fx.broker.events) != 3 {
		t.Errorf("published %v, want the acceptance again, the start and the completion", fx.broker.events)
	}
}

// A worker that gives up on a store call (killed mid-call: its request is cancelled) does
// not cut the batch short: the record is completed and the completion published, so a
// later delivery, which finds the task completed, is not needed for the event.
func TestServeStoreFinishesWhenTheCallerGoes(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	rec := running(1)
	fx.state.seed(t, rec)
	fx.state.gate, fx.state.entered = make(chan struct{}), make(chan struct{}, 1)
	r := chi.NewRouter()
	fx.keeper.Mount(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	body, _ := json.Marshal(task.StoreBatch{Results: []task.StoreRequest{result(rec, "out", `{}`)}})
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/results", bytes.NewReader(body))
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-fx.state.entered // the record's update is under way
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the cancelled call got an answer")
	}
	time.Sleep(50 * time.Millisecond) // the server sees the connection go
	close(fx.state.gate)
	deadline := time.Now().Add(5 * time.Second)
	for {
		fx.broker.mu.Lock()
		published := slices.ContainsFunc(fx.broker.events, func(e task.Event) bool { return e.Kind == task.EventCompleted && e.TaskID == rec.ID })
		fx.broker.mu.Unlock()
		if published {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no completion published after the caller went")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, _, err := fx.keeper.tasks.Get(t.Context(), rec.ID)
	if err != nil || got.Status != task.StatusCompleted {
		t.Fatalf("record after the caller went: %+v, %v; want completed", got, err)
	}
}

// The results of a batch sent back to their workers are logged once per kind, with how
// many: a full disk refuses every result of every call.
func TestRefusalsLoggedOncePerKind(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	var log bytes.Buffer
	fx.keeper.logger = slog.New(slog.NewTextHandler(&log, nil))
	// A file where the results' directory should be: every write into it fails.
	if err := os.WriteFile(filepath.Join(fx.root, "blocked"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	recs := []task.Record{running(1), running(1), running(1), running(1)}
	fx.state.seed(t, recs...)
	reply := fx.keeper.Store(t.Context(), task.StoreBatch{Results: []task.StoreRequest{
		result(recs[0], "blocked", `{}`), result(recs[1], "out", `{}`), result(recs[2], "blocked", `{}`), result(recs[3], "blocked", `{}`),
	}})
	for i, o := range reply.Outcomes {
		if want := i == 1; o.Stored != want || o.Rejected {
			t.Errorf("outcome %d: %+v, want stored %v", i, o, want)
		}
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "level=ERROR") || !strings.Contains(lines[0], "results=3") ||
		!strings.Contains(lines[0], "step=\"write result\"") || !strings.Contains(lines[0], recs[0].ID.String()) {
		t.Errorf("log:\n%s\nwant one error line for the 3 results refused, naming the first", log.String())
	}
}

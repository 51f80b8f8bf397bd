package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/taskgrid/taskgrid/internal/adapters/recent"
	"github.com/taskgrid/taskgrid/internal/domain/catalog"
	"github.com/taskgrid/taskgrid/internal/domain/queue"
	"github.com/taskgrid/taskgrid/internal/domain/task"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeBackend is an in-memory Backend. Like the Dapr backend, a repeated idempotency
// key returns the first task with created=false.
type fakeBackend struct {
	mu      sync.Mutex
	tasks   map[uuid.UUID]task.Record
	keys    map[string]uuid.UUID
	results map[uuid.UUID][]byte
	submits []submitCall // every Submit call, in order
	gets    int          // Get calls
	cancels []uuid.UUID  // every Cancel call
	// cancelHook, when set, runs at the start of Cancel (under mu): a change racing it.
	cancelHook func()

	snapshot queue.Snapshot // what QueueSnapshot returns

	activity *recent.Activity // nil: analytics cannot be reached

	// Errors returned instead of doing the work, when set.
	submitErr, getErr, resultErr, snapshotErr, cancelErr error
	// submitGate, when set, holds every Submit until it is closed.
	submitGate chan struct{}
}

type submitCall struct {
	rec task.Record
	key string
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{tasks: map[uuid.UUID]task.Record{}, keys: map[string]uuid.UUID{}, results: map[uuid.UUID][]byte{}}
}

func (b *fakeBackend) Submit(_ context.Context, rec task.Record, _ task.Event, key string) (task.Record, bool, error) {
	if b.submitGate != nil {
		<-b.submitGate
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.submits = append(b.submits, submitCall{rec: rec, key: key})
	if b.submitErr != nil {
		return rec, false, b.submitErr
	}
	if key != "" {
		if id, ok := b.keys[key]; ok {
			return b.tasks[id], false, nil
		}
		b.keys[key] = rec.ID
	}
	b.tasks[rec.ID] = rec
	return rec, true, nil
}

func (b *fakeBackend) Get(_ context.Context, id uuid.UUID) (task.Record, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gets++
	if b.getErr != nil {
		return task.Record{}, b.getErr
	}
	rec, ok := b.tasks[id]
	if !ok {
		return task.Record{}, fmt.Errorf("task %s: %w", id, ErrNotFound)
	}
	return rec, nil
}

func (b *fakeBackend) Cancel(_ context.Context, id uuid.UUID) (task.Record, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cancels = append(b.cancels, id)
	if b.cancelHook != nil {
		b.cancelHook()
	}
	if b.cancelErr != nil {
		return task.Record{}, b.cancelErr
	}
	rec, ok := b.tasks[id]
	if !ok {
		return rec, fmt.Errorf("task %s: %w", id, ErrNotFound)
	}
	next, _, err := task.Cancel(rec, time.Now())
	b.tasks[id] = next
	return next, err
}

func (b *fakeBackend) Activity(context.Context) (recent.Activity, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.activity == nil {
		return recent.Activity{}, errors.New("analytics not there")
	}
	return *b.activity, nil
}

func (b *fakeBackend) QueueSnapshot(context.Context) (queue.Snapshot, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.snapshot, b.snapshotErr
}

func (b *fakeBackend) Result(_ context.Context, rec task.Record) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.resultErr != nil {
		return nil, b.resultErr
	}
	data, ok := b.results[rec.ID]
	if !ok {
		return nil, fmt.Errorf("result of %s: %w", rec.ID, ErrNotFound)
	}
	return data, nil
}

func (b *fakeBackend) put(rec task.Record) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tasks[rec.ID] = rec
}

func (b *fakeBackend) getCalls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gets
}

func (b *fakeBackend) submitCalls() []submitCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]submitCall(nil), b.submits...)
}

// testEnv is an API over a fake backend, with its own hub and metrics registry.
type testEnv struct {
	backend *fakeBackend
	hub     *SSEHub
	promReg *prometheus.Registry
	api     *API
	handler http.Handler
}

func newTestEnv(t *testing.T, cfg *APIConfig) *testEnv {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	e := &testEnv{backend: newFakeBackend(), hub: NewSSEHub(logger), promReg: prometheus.NewRegistry()}
	e.api = NewAPI(logger, cfg, e.backend, catalog.Default(), e.hub, NewMetrics(e.promReg))
	r := chi.NewRouter()
	e.api.Mount(r)
	e.handler = r
	t.Cleanup(e.hub.Close)
	return e
}

// serve runs one request through the router.
func (e *testEnv) serve(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	return rec
}

// metric returns the value of the counter or gauge name with the given labels (name=value
// pairs), and whether it exists.
func (e *testEnv) metric(t *testing.T, name string, labels ...string) (float64, bool) {
	t.Helper()
	families, err := e.promReg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// apiError is the JSON body of an error response.
type apiError struct {
	Error struct {
		Code    string          `json:"code"`
		Message string          `json:"message"`
		Details json.RawMessage `json:"details"`
	} `json:"error"`
}

// decodeErrorBody checks that rec is a JSON error response with status and code, and returns it.
func decodeErrorBody(t *testing.T, status int, header http.Header, body []byte, wantStatus int, wantCode string) apiError {
	t.Helper()
	if status != wantStatus {
		t.Errorf("status = %d, want %d; body %s", status, wantStatus, body)
	}
	if ct := header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if e.Error.Code != wantCode {
		t.Errorf("error code = %q, want %q; body %s", e.Error.Code, wantCode, body)
	}
	if strings.TrimSpace(e.Error.Message) == "" {
		t.Errorf("error message is empty; body %s", body)
	}
	return e
}

// waitFor polls cond until it is true or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// readAll reads r, failing the test on error.
func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	data, err := io.ReadAll(r)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read body: %v", err)
	}
	return data
}

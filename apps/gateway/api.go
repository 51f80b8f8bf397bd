package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/recent"
	"github.com/taskgrid/taskgrid/internal/domain/catalog"
	"github.com/taskgrid/taskgrid/internal/domain/queue"
	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/platform/steps"
)

// Backend is what the API needs of the gateway's Dapr-backed services. It returns
// ErrNotFound for an unknown task and wraps ErrUnavailable when a dependency is down;
// every other error is answered as an internal error.
type Backend interface {
	// Submit stores the new task record (status pending) and queues it. With a non-empty
	// idempotency key, a repeated key returns the first task and created=false, and
	// queues nothing.
	// accepted is the task's accepted event, published once the task is queued (a while
	// after the answer: see BackendOptions.AcceptedDelay).
	Submit(ctx context.Context, rec task.Record, accepted task.Event, idempotencyKey string) (stored task.Record, created bool, err error)
	// Get returns the task's record, or an error wrapping ErrNotFound when it is unknown.
	Get(ctx context.Context, id uuid.UUID) (task.Record, error)
	// Result returns the stored result JSON of a completed task.
	Result(ctx context.Context, rec task.Record) ([]byte, error)
	// QueueSnapshot returns the queue's depth and idle slots.
	QueueSnapshot(ctx context.Context) (queue.Snapshot, error)
	// Activity returns the recent completions and failures, from analytics.
	Activity(ctx context.Context) (recent.Activity, error)
	// Cancel ends the task as cancelled (task.Cancel, a conditional write of its record),
	// publishes its cancelled event and tells the queue. A task that has ended already
	// is returned as it is, with an error wrapping task.ErrFinished.
	Cancel(ctx context.Context, id uuid.UUID) (task.Record, error)
}

// Errors a Backend returns (wrapped or not); the API maps them in errorTable.
var (
	ErrNotFound    = errors.New("not found")
	ErrUnavailable = errors.New("service unavailable") // a dependency is down; the client may retry
)

// API defaults.
const (
	MaxBodyBytesDefault      = 16 << 20 // 16 MiB
	BodyBudgetDefault        = 32 << 20
	HeartbeatIntervalDefault = 15 * time.Second
	// bodyWait is how long a submission waits for room in the body budget before it
	// is answered 503 (the 2 s a submission takes at most when a dependency is away).
	bodyWait = 2 * time.Second
)

// APIConfig configures the API. Zero fields take their defaults.
type APIConfig struct {
	// MaxBodyBytes limits the size of a submitted request body.
	// Defaults to MaxBodyBytesDefault (16 MiB).
	MaxBodyBytes int64
	// BodyBudget bounds the bytes of the submission bodies the gateway holds at once
	// (SUBMIT_BODY_BUDGET): past it a submission waits, then is answered 503 with
	// Retry-After. Defaults to BodyBudgetDefault (32 MiB); at least MaxBodyBytes.
	BodyBudget int64
	// HeartbeatInterval is how often an idle event stream gets a ": ping" comment, so that
	// proxies keep it open and a gone client is noticed.
	// Defaults to HeartbeatIntervalDefault (15s).
	HeartbeatInterval time.Duration
	// MaxAttempts is how many attempts a new task gets.
	// Defaults to task.MaxAttemptsDefault (5).
	MaxAttempts int
	// Keys, when not nil, are the API keys every route requires; a task is then visible
	// only to the key that submitted it.
	Keys *Keys
}

// WithDefaults returns a copy of c (which may be nil) with every zero field set to its default.
func (c *APIConfig) WithDefaults() *APIConfig {
	if c == nil {
		c = &APIConfig{}
	}
	return &APIConfig{
		MaxBodyBytes:      cmp.Or(c.MaxBodyBytes, MaxBodyBytesDefault),
		BodyBudget:        cmp.Or(c.BodyBudget, BodyBudgetDefault),
		HeartbeatInterval: cmp.Or(c.HeartbeatInterval, HeartbeatIntervalDefault),
		MaxAttempts:       cmp.Or(c.MaxAttempts, task.MaxAttemptsDefault),
		Keys:              c.Keys,
	}
}

func (c *APIConfig) mustValidate() *APIConfig {
	switch {
	case c.MaxBodyBytes < 0:
		panic(fmt.Sprintf("gateway: APIConfig.MaxBodyBytes %d is negative", c.MaxBodyBytes))
	case c.BodyBudget < c.MaxBodyBytes:
		panic(fmt.Sprintf("gateway: APIConfig.BodyBudget %d is less than MaxBodyBytes %d", c.BodyBudget, c.MaxBodyBytes))
	case c.HeartbeatInterval < 0:
		panic(fmt.Sprintf("gateway: APIConfig.HeartbeatInterval %s is negative", c.HeartbeatInterval))
	case c.MaxAttempts < 0:
		panic(fmt.Sprintf("gateway: APIConfig.MaxAttempts %d is negative", c.MaxAttempts))
	}
	return c
}

// API serves the task endpoints under /api/v1.
type API struct {
	logger  *slog.Logger
	cfg     *APIConfig
	backend Backend
	reg     *catalog.Registry
	hub     *SSEHub
	metrics *Metrics
	bodies  *bodyBudget // the bytes of submission bodies held at once (APIConfig.BodyBudget)

	overview  *Overview
	snapshots readCache[queue.Snapshot]
	activity  readCache[recent.Activity]
}

// NewAPI returns the task API. cfg may be nil; every other argument is required.
func NewAPI(logger *slog.Logger, cfg *APIConfig, backend Backend, reg *catalog.Registry, hub *SSEHub, metrics *Metrics) *API {
	if logger == nil || backend == nil || reg == nil || hub == nil || metrics == nil {
		panic("gateway: NewAPI needs a logger, backend, registry, hub and metrics")
	}
	metrics.init(reg.Names())
	cfg = cfg.WithDefaults().mustValidate()
	return &API{
		logger: logger.With("component", "api"), cfg: cfg,
		backend: backend, reg: reg, hub: hub, metrics: metrics, overview: NewOverview(time.Now()),
		bodies: newBodyBudget(cfg.BodyBudget),
	}
}

// Routes.
const (
	routeTasks     = "/api/v1/tasks"
	routeTaskTypes = "/api/v1/task-types"
	routeOverview  = "/api/v1/overview"
)

// Mount adds the API's routes to r.
func (a *API) Mount(r chi.Router) {
	r = r.With(a.cfg.Keys.Require)
	r.Post(routeTasks, a.handleSubmit)
	r.Get(routeTasks+"/{id}", a.handleGet)
	r.Delete(routeTasks+"/{id}", a.handleCancel)
	r.Get(routeTasks+"/{id}/result", a.handleResult)
	r.Get(routeTasks+"/{id}/events", a.handleEvents)
	r.Get(routeTaskTypes, a.handleTaskTypes)
	r.Get(routeOverview, a.handleOverview)
}

// handleSubmit accepts a task: 202 with its view for a new task, 200 with the first
// task's view for a repeated idempotency key.
func (a *API) handleSubmit(w http.ResponseWriter, r *http.Request) {
	size := a.cfg.MaxBodyBytes // the most a body without a Content-Length may be
	if r.ContentLength >= 0 && r.ContentLength < size {
		size = r.ContentLength
	}
	if !a.bodies.take(r.Context(), size, bodyWait) {
		err := fmt.Errorf("%w: the gateway holds as many submission bytes as it may (SUBMIT_BODY_BUDGET %d)", ErrUnavailable, a.cfg.BodyBudget)
		a.metrics.taskRejected(a.writeError(w, r, err))
		return
	}
	defer a.bodies.give(size)
	req, err := decodeSubmit(r, a.cfg.MaxBodyBytes, a.reg)
	if err != nil {
		a.metrics.taskRejected(a.writeError(w, r, err))
		return
	}
	owner := ownerOf(r.Context())
	rec, accepted := task.Accept(task.Record{
		ID: uuid.New(), Type: req.Task, Payload: req.Payload, Directory: req.Directory, MaxAttempts: a.cfg.MaxAttempts,
		Owner: owner,
	}, time.Now())
	steps.Mark(rec.ID, steps.Accepted)
	key := req.IdempotencyKey
	if key != "" && owner != "" {
		key = owner + "/" + key // each key's idempotency keys are its own
	}
	a.hub.Remember(newTaskView(rec)) // before the task is queued: see SSEHub.Remember
	stored, created, err := a.backend.Submit(r.Context(), rec, accepted, key)
	if err != nil || stored.ID != rec.ID {
		a.hub.Forget(rec.ID) // not accepted, or accepted before under another id
	}
	if err != nil {
		a.metrics.taskRejected(a.writeError(w, r, fmt.Errorf("submit task %s: %w", rec.ID, err)))
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusAccepted
		a.metrics.taskSubmitted(stored.Type)
		a.logger.DebugContext(r.Context(), "task accepted", "task_id", stored.ID, "task", stored.Type, "directory", stored.Directory)
	} else {
		a.logger.InfoContext(r.Context(), "task resubmitted with a known idempotency key", "task_id", stored.ID, "task", stored.Type)
	}
	w.Header().Set("Location", taskPath(stored.ID))
	writeJSON(w, status, newTaskView(stored))
}

// handleGet answers the task's view.
func (a *API) handleGet(w http.ResponseWriter, r *http.Request) {
	rec, err := a.lookup(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newTaskView(rec))
}

// handleCancel cancels a pending or running task: 200 with its view, now cancelled. A
// task that has ended (completed, failed, or cancelled before) is answered 409
// task_finished with its status, and nothing changes. Another key's task is 404.
func (a *API) handleCancel(w http.ResponseWriter, r *http.Request) {
	rec, err := a.lookup(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if !rec.Status.Terminal() {
		rec, err = a.backend.Cancel(r.Context(), rec.ID)
	} else {
		_, _, err = task.Cancel(rec, time.Now()) // ErrFinished, as the backend would say
	}
	switch {
	case errors.Is(err, task.ErrFinished):
		a.writeError(w, r, requestError(errTaskFinished,
			fmt.Sprintf("task %s is %s already, so it cannot be cancelled", rec.ID, rec.Status),
			map[string]any{"status": rec.Status}))
		return
	case err != nil:
		a.writeError(w, r, fmt.Errorf("cancel task %s: %w", rec.ID, err))
		return
	}
	a.logger.InfoContext(r.Context(), "task cancelled", "task_id", rec.ID, "task", rec.Type, "attempts", rec.Attempts)
	writeJSON(w, http.StatusOK, newTaskView(rec))
}

// handleResult answers the stored result of a completed task, and 409 otherwise.
func (a *API) handleResult(w http.ResponseWriter, r *http.Request) {
	rec, err := a.lookup(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	switch rec.Status {
	case task.StatusCompleted:
	case task.StatusFailed:
		a.writeError(w, r, requestError(errTaskFailed,
			fmt.Sprintf("task %s failed, so it has no result: %s", rec.ID, rec.Error),
			map[string]any{"status": rec.Status, "error": rec.Error}))
		return
	case task.StatusCancelled:
		a.writeError(w, r, requestError(errTaskCancelled,
			fmt.Sprintf("task %s was cancelled, so it has no result", rec.ID),
			map[string]any{"status": rec.Status}))
		return
	default:
		a.writeError(w, r, requestError(errTaskNotCompleted,
			fmt.Sprintf("task %s is %s, not completed yet; its result is available once its status is completed (watch %s)",
				rec.ID, rec.Status, taskPath(rec.ID)+"/events"),
			map[string]any{"status": rec.Status}))
		return
	}
	data, err := a.backend.Result(r.Context(), rec)
	if err != nil {
		a.writeError(w, r, fmt.Errorf("read result of task %s: %w", rec.ID, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

// handleTaskTypes lists the catalog's task types, sorted by name.
func (a *API) handleTaskTypes(w http.ResponseWriter, r *http.Request) {
	specs := slices.SortedFunc(slices.Values(a.reg.Specs()), func(x, y catalog.Spec) int {
		return strings.Compare(x.Name, y.Name)
	})
	writeJSON(w, http.StatusOK, map[string]any{"task_types": specs})
}

// lookup parses the {id} path parameter and reads the task.
func (a *API) lookup(r *http.Request) (task.Record, error) {
	id, err := parseTaskID(r)
	if err != nil {
		return task.Record{}, err
	}
	rec, err := a.backend.Get(r.Context(), id)
	if err != nil {
		return task.Record{}, fmt.Errorf("get task %s: %w", id, err)
	}
	if !a.visible(r.Context(), rec.Owner) {
		return task.Record{}, fmt.Errorf("get task %s of another key: %w", id, ErrNotFound)
	}
	return rec, nil
}

// visible reports whether the request's key may see a task of owner: always without
// keys; with keys, only the key (its name) that submitted it. Another key's task is
// answered as unknown (404), so that its existence is not disclosed either.
func (a *API) visible(ctx context.Context, owner string) bool {
	return a.cfg.Keys == nil || owner == ownerOf(ctx)
}

// parseTaskID reads the {id} path parameter.
func parseTaskID(r *http.Request) (uuid.UUID, error) {
	raw := chi.URLParam(r, "id")
	id, err := uuid.Parse(raw)
	if err != nil {
		return uuid.Nil, requestError(fmt.Errorf("parse task id: %w: %w", errInvalidID, err),
			fmt.Sprintf("task id %.100q is not a UUID; use the id returned on submit, like 3f2b8c1e-9a4d-4e7f-8b1a-2c3d4e5f6a7b", raw), nil)
	}
	return id, nil
}

// taskPath is the URL path of a task.
func taskPath(id uuid.UUID) string { return routeTasks + "/" + id.String() }

// taskView is what users see of a task. Failed attempts are silent: a task whose attempt
// failed is pending again, and only its attempts count (and a high priority) shows it.
type taskView struct {
	ID         uuid.UUID      `json:"id"`
	Task       string         `json:"task"`
	Status     task.Status    `json:"status"`
	Priority   task.Priority  `json:"priority"`
	Attempts   int            `json:"attempts"`
	Directory  string         `json:"directory"`
	Progress   float64        `json:"progress"`
	Worker     string         `json:"worker,omitempty"`
	CreatedAt  time.Time      `json:"created_at"`
	QueuedAt   *time.Time     `json:"queued_at,omitempty"`
	Dispatched *time.Time     `json:"dispatched_at,omitempty"`
	StartedAt  *time.Time     `json:"started_at"`
	FinishedAt *time.Time     `json:"finished_at"`
	Result     *task.Location `json:"result,omitempty"`
	Error      string         `json:"error,omitempty"`
	Links      taskLinks      `json:"links"`
	// Owner is the name of the key that submitted the task (never shown).
	Owner string `json:"-"`
}

type taskLinks struct {
	Self   string `json:"self"`
	Events string `json:"events"`
	Result string `json:"result"`
}

func newTaskView(rec task.Record) taskView {
	v := taskView{
		ID: rec.ID, Task: rec.Type, Status: rec.Status, Priority: rec.Priority, Attempts: rec.Attempts,
		Directory: rec.Directory, Progress: rec.Progress, Worker: rec.Worker, CreatedAt: rec.CreatedAt,
		QueuedAt: rec.QueuedAt, Dispatched: rec.DispatchedAt, StartedAt: rec.StartedAt, FinishedAt: rec.FinishedAt, Result: rec.Result, Error: rec.Error,
		Owner: rec.Owner,
	}
	return v.sanitized()
}

// sanitized hides what belongs to failed attempts or to another status, and sets the links.
func (v taskView) sanitized() taskView {
	if v.Status == task.StatusPending { // maybe again, after a failed attempt
		v.StartedAt, v.Progress, v.Worker, v.QueuedAt, v.Dispatched = nil, 0, "", nil, nil
	}
	if !v.Status.Terminal() {
		v.FinishedAt = nil
	}
	if v.Status != task.StatusCompleted {
		v.Result = nil
	}
	if v.Status != task.StatusFailed {
		v.Error = ""
	}
	self := taskPath(v.ID)
	v.Links = taskLinks{Self: self, Events: self + "/events", Result: self + "/result"}
	return v
}

// writeJSON writes v as the JSON response body with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		// Only our own types reach here; failing to encode them is a programmer error.
		status, data = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

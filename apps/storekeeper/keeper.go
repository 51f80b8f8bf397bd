package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgrid/taskgrid/internal/events"
	"github.com/taskgrid/taskgrid/internal/resultstore"
	"github.com/taskgrid/taskgrid/internal/task"
	"github.com/taskgrid/taskgrid/internal/taskstore"
)

// MaxResultBytesDefault bounds one store request (the result JSON and its files).
const MaxResultBytesDefault = 96 << 20

// Keeper stores results and completes tasks. Workers call it through service
// invocation (POST /results); the gateway reads results back (GET /results/{id}).
type Keeper struct {
	logger    *slog.Logger
	results   *resultstore.Store
	tasks     *taskstore.Store
	pub       events.Sender
	stored    *prometheus.CounterVec
	bytes     prometheus.Counter
	completed *prometheus.CounterVec
}

// NewKeeper returns a Keeper writing under results.
func NewKeeper(logger *slog.Logger, results *resultstore.Store, tasks *taskstore.Store, pub events.Sender, reg prometheus.Registerer) *Keeper {
	k := &Keeper{
		logger: logger.With("component", "keeper"), results: results, tasks: tasks, pub: pub,
		stored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskgrid_results_stored_total", Help: "Store requests, by outcome (written, duplicate, rejected, error).",
		}, []string{"outcome"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "taskgrid_results_bytes_total", Help: "Bytes of result JSON files written.",
		}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskgrid_tasks_completed_total", Help: "Tasks completed (result on disk, task marked completed), by task type.",
		}, []string{"task"}),
	}
	reg.MustRegister(k.stored, k.bytes, k.completed)
	return k
}

// Mount adds the storekeeper's routes.
func (k *Keeper) Mount(r chi.Router) {
	r.Post("/results", k.serveStore)
	r.Get("/results/{id}", k.serveRead)
}

func (k *Keeper) serveStore(w http.ResponseWriter, r *http.Request) {
	var req task.StoreRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxResultBytesDefault)).Decode(&req); err != nil {
		k.stored.WithLabelValues("rejected").Inc()
		http.Error(w, "decode store request: "+err.Error(), http.StatusBadRequest)
		return
	}
	loc, err := k.Store(r.Context(), req)
	switch {
	case errors.Is(err, resultstore.ErrInvalidDirectory), errors.Is(err, resultstore.ErrInvalidFile), errors.Is(err, resultstore.ErrInvalidResult):
		k.stored.WithLabelValues("rejected").Inc()
		http.Error(w, err.Error(), http.StatusBadRequest)
	case err != nil:
		k.stored.WithLabelValues("error").Inc()
		k.logger.ErrorContext(r.Context(), "store failed", "task_id", req.TaskID, "error", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(loc)
	}
}

// Store writes the result (first write wins), then marks the task completed, then
// publishes the completion. Each step is idempotent, so a worker may send the same
// result again (a retry, or a presumed-dead worker finishing late) and the user still
// sees one result and one completion.
func (k *Keeper) Store(ctx context.Context, req task.StoreRequest) (task.Location, error) {
	files := make([]resultstore.File, len(req.Files))
	for i, f := range req.Files {
		files[i] = resultstore.File{Suffix: f.Suffix, Data: f.Data}
	}
	loc, existed, err := k.results.Write(ctx, req.Directory, req.TaskID, req.Output, files)
	if err != nil {
		return task.Location{}, err
	}
	outcome := "written"
	if existed {
		outcome = "duplicate"
	} else {
		k.bytes.Add(float64(loc.Bytes))
	}
	k.stored.WithLabelValues(outcome).Inc()
	where := task.Location{Directory: loc.Directory, Path: loc.Path, Files: loc.Files, Bytes: loc.Bytes, SHA256: loc.SHA256}

	now := time.Now().UTC()
	rec, changed, err := k.tasks.Update(ctx, req.TaskID, func(rec *task.Record) error {
		if rec.Status.Terminal() {
			// Completed already, or failed for good and the user told so: a late
			// result changes neither.
			return taskstore.ErrNoChange
		}
		rec.Status, rec.Result, rec.FinishedAt, rec.Progress, rec.Error = task.StatusCompleted, &where, &now, 1, ""
		if req.Attempt > rec.Attempts {
			rec.Attempts = req.Attempt
		}
		return nil
	})
	if err != nil {
		return task.Location{}, fmt.Errorf("complete task %s: %w", req.TaskID, err)
	}
	if rec.Status != task.StatusCompleted {
		k.logger.WarnContext(ctx, "result of a task that already failed for good; kept on disk only", "task_id", rec.ID)
		return where, nil
	}
	if changed {
		k.completed.WithLabelValues(rec.Type).Inc()
	}
	// Published whenever the task is completed, also for a repeated request: the step
	// before may have crashed between the update and the publish. The event id is the
	// same every time, so consumers see one completion.
	ev := events.New(events.KindCompleted, rec, now)
	ev.ID = rec.ID.String() + ":" + events.KindCompleted // one completion per task, whatever the attempt
	ev.Result = rec.Result
	ev.Worker = req.Worker
	if err := k.pub.Send(ctx, ev); err != nil {
		return task.Location{}, err
	}
	return *rec.Result, nil
}

func (k *Keeper) serveRead(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(chi.URLParam(r, "id"))
	if err != nil {
		http.Error(w, "invalid task id", http.StatusBadRequest)
		return
	}
	rec, _, err := k.tasks.Get(r.Context(), id)
	if errors.Is(err, taskstore.ErrNotFound) {
		http.Error(w, "no such task", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	data, err := k.results.Read(rec.Directory, id)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		http.Error(w, "no result", http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	}
}

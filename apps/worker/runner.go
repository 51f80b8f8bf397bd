package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/taskgrid/taskgrid/internal/actorhost"
	"github.com/taskgrid/taskgrid/internal/components"
	"github.com/taskgrid/taskgrid/internal/events"
	"github.com/taskgrid/taskgrid/internal/queue"
	"github.com/taskgrid/taskgrid/internal/retry"
	"github.com/taskgrid/taskgrid/internal/task"
	"github.com/taskgrid/taskgrid/internal/taskstore"
)

// ProgressIntervalDefault is the most often a running attempt publishes progress.
const ProgressIntervalDefault = 250 * time.Millisecond

// errStale marks an assignment that is no longer current (a duplicate dispatch, or the
// task moved on): it is dropped without running.
var errStale = errors.New("stale assignment")

// Services is what the runner needs from the Dapr client.
type Services interface {
	actorhost.Invoker
	events.Publisher
	InvokeMethodWithContent(ctx context.Context, appID, methodName, verb string, content *dapr.DataContent) ([]byte, error)
}

// Runner runs attempts outside actor turns and reports their ends: the result to the
// storekeeper, a failure back to the queue (or to the user once attempts run out), the
// slot back to the queue as idle.
type Runner struct {
	logger   *slog.Logger
	node     string
	exec     *Executor
	tasks    *taskstore.Store
	svc      Services
	queue    queue.Client
	metrics  *Metrics
	progress time.Duration

	ctx    context.Context // attempts run under it; cancelled when the drain time is up
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	running  map[string]task.Assignment // slot → attempt running in this process
	draining bool                       // slots retired: never offered again
}

// NewRunner returns a runner for node.
func NewRunner(logger *slog.Logger, node string, exec *Executor, tasks *taskstore.Store, svc Services, metrics *Metrics) *Runner {
	ctx, cancel := context.WithCancel(context.Background())
	return &Runner{
		logger: logger.With("component", "runner"), node: node, exec: exec, tasks: tasks, svc: svc,
		queue: queue.Client{Invoker: svc}, metrics: metrics, progress: ProgressIntervalDefault,
		ctx: ctx, cancel: cancel, running: map[string]task.Assignment{},
	}
}

// Running reports whether attempt a runs on slot in this process.
func (r *Runner) Running(slot string, a task.Assignment) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.running[slot]
	return ok && cur.TaskID == a.TaskID && cur.Attempt == a.Attempt
}

// Busy is the number of attempts running in this process.
func (r *Runner) Busy() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}

// Start runs attempt a on slot in the background.
func (r *Runner) Start(slot string, a task.Assignment) {
	r.mu.Lock()
	r.running[slot] = a
	r.mu.Unlock()
	r.wg.Go(func() {
		defer func() {
			r.mu.Lock()
			delete(r.running, slot)
			r.mu.Unlock()
		}()
		r.execute(slot, a)
	})
}

// Recover re-queues an attempt whose process died, then offers the slot again.
func (r *Runner) Recover(slot string, a task.Assignment) {
	r.wg.Go(func() {
		r.metrics.recovered.Inc()
		r.retryOrFail(a, "worker process lost")
		r.offer(slot)
	})
}

// Announce offers slots to the queue as idle (at start-up), retrying until the queue
// answers or ctx ends.
func (r *Runner) Announce(ctx context.Context, slots []string) error {
	for _, slot := range slots {
		if err := retry.Do(ctx, callTimeout, func(ctx context.Context) error { _, err := r.queue.Idle(ctx, slot); return err }); err != nil {
			return fmt.Errorf("announce slot %s: %w", slot, err)
		}
	}
	r.logger.InfoContext(ctx, "slots offered to the queue", "slots", len(slots))
	return nil
}

// Reoffer offers the slots that run nothing here to the queue every interval, until
// ctx ends or the runner drains. The queue drops a slot when a push to it fails (a
// timeout while Dapr moves actors, a restart of the queue's host); this brings it back.
// Offering a slot that is already idle changes nothing; a slot that Dapr placed in
// another process and that is busy there refuses the push at once and is dropped again.
func (r *Runner) Reoffer(ctx context.Context, slots []string, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, slot := range slots {
			r.mu.Lock()
			_, busy := r.running[slot]
			draining := r.draining
			r.mu.Unlock()
			if draining {
				return
			}
			if busy {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			if _, err := r.queue.Idle(cctx, slot); err != nil && ctx.Err() == nil {
				r.logger.DebugContext(ctx, "could not offer slot again", "slot", slot, "error", err)
			}
			cancel()
		}
	}
}

// Drain retires slots, then waits for running attempts until ctx ends, then abandons
// them (their watchdogs re-queue them in another process).
func (r *Runner) Drain(ctx context.Context, slots []string) {
	r.mu.Lock()
	r.draining = true
	r.mu.Unlock()
	if err := r.queue.Retire(ctx, slots...); err != nil {
		r.logger.WarnContext(ctx, "could not retire slots", "error", err)
	}
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		r.logger.WarnContext(ctx, "drain time is up; abandoning running attempts", "running", r.Busy())
	}
	r.cancel()
}

func (r *Runner) execute(slot string, a task.Assignment) {
	ctx := r.ctx
	log := r.logger.With("slot", slot, "task_id", a.TaskID, "attempt", a.Attempt)
	now := time.Now().UTC()
	var rec task.Record
	err := retry.Do(ctx, callTimeout, func(ctx context.Context) error {
		var err error
		rec, _, err = r.tasks.Update(ctx, a.TaskID, func(rec *task.Record) error {
			if rec.Status.Terminal() || rec.Attempts >= a.Attempt {
				return errStale
			}
			rec.Status, rec.Attempts, rec.Priority = task.StatusRunning, a.Attempt, a.Priority
			rec.Worker, rec.StartedAt, rec.Progress = r.node+"/"+slot, &now, 0
			return nil
		})
		if errors.Is(err, errStale) || errors.Is(err, taskstore.ErrNotFound) {
			return retry.Permanent(err)
		}
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			log.InfoContext(ctx, "dropping assignment that is no longer current", "reason", err)
			r.release(slot, a)
		}
		return
	}
	r.metrics.started(rec, now)
	r.publish(ctx, events.New(events.KindStarted, rec, now))
	log.DebugContext(ctx, "attempt started", "task", rec.Type)

	out := r.exec.Execute(ctx, rec.Type, rec.Payload, a.Attempt, r.reportProgress(ctx, rec))
	r.metrics.finished(rec.Type, out)
	if ctx.Err() != nil {
		return // shutting down: the watchdog re-queues it elsewhere
	}
	if out.Failure == "" {
		if err := r.deliver(ctx, rec, slot, out); err != nil {
			return // shutting down before the result was stored: re-queued by the watchdog
		}
	} else {
		log.InfoContext(ctx, "attempt failed", "failure", out.Failure, "error", out.Err)
		failed := events.New(events.KindAttemptFailed, rec, time.Now())
		failed.Error = out.Failure + ": " + out.Err.Error()
		r.publish(ctx, failed)
		r.retryOrFail(a, out.Failure+": "+out.Err.Error())
	}
	r.release(slot, a)
}

// deliver hands the result to the storekeeper, which stores it and completes the task.
func (r *Runner) deliver(ctx context.Context, rec task.Record, slot string, out Outcome) error {
	req := task.StoreRequest{
		TaskID: rec.ID, Attempt: rec.Attempts, Directory: rec.Directory, Worker: r.node + "/" + slot,
		Output: json.RawMessage(out.Result.Output), StartedAt: *rec.StartedAt,
	}
	for _, f := range out.Result.Files {
		req.Files = append(req.Files, task.File{Suffix: f.Name, Data: f.Data})
	}
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode result of %s: %w", rec.ID, err)
	}
	return retry.Do(ctx, deliverTimeout, func(ctx context.Context) error {
		_, err := r.svc.InvokeMethodWithContent(ctx, "storekeeper", "results", "post",
			&dapr.DataContent{ContentType: "application/json", Data: data})
		return err
	})
}

// retryOrFail puts a failed attempt's task back in the queue at high priority, or fails
// it for good when attempts run out. It does nothing when the task has moved on.
func (r *Runner) retryOrFail(a task.Assignment, reason string) {
	ctx := context.WithoutCancel(r.ctx)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	now := time.Now().UTC()
	var rec task.Record
	var changed bool
	err := retry.Do(ctx, callTimeout, func(ctx context.Context) error {
		var err error
		rec, changed, err = r.tasks.Update(ctx, a.TaskID, func(rec *task.Record) error {
			if rec.Status.Terminal() || rec.Attempts > a.Attempt || (rec.Attempts == a.Attempt && rec.Status == task.StatusPending) {
				return taskstore.ErrNoChange // moved on, or already re-queued
			}
			rec.Attempts = a.Attempt
			if a.Attempt >= rec.MaxAttempts {
				rec.Status, rec.Error, rec.FinishedAt = task.StatusFailed, fmt.Sprintf("failed after %d attempts; last: %s", a.Attempt, reason), &now
				return nil
			}
			rec.Status, rec.Priority, rec.Progress = task.StatusPending, task.PriorityHigh, 0
			return nil
		})
		if errors.Is(err, taskstore.ErrNotFound) {
			return retry.Permanent(err)
		}
		return err
	})
	if err != nil || !changed {
		if err != nil {
			r.logger.ErrorContext(ctx, "could not re-queue task", "task_id", a.TaskID, "error", err)
		}
		return
	}
	if rec.Status == task.StatusFailed {
		r.metrics.failedForGood.Inc()
		ev := events.New(events.KindFailed, rec, now)
		ev.Error = rec.Error
		r.publish(ctx, ev)
		return
	}
	next := task.Assignment{TaskID: a.TaskID, Attempt: a.Attempt + 1, Priority: task.PriorityHigh, Enqueued: now}
	if err := retry.Do(ctx, callTimeout, func(ctx context.Context) error { _, err := r.queue.Enqueue(ctx, next); return err }); err != nil {
		r.logger.ErrorContext(ctx, "could not re-queue task", "task_id", a.TaskID, "error", err)
		return
	}
	r.metrics.requeued.Inc()
}

// release clears the slot's attempt and offers the slot to the queue again.
func (r *Runner) release(slot string, a task.Assignment) {
	ctx := r.ctx
	err := retry.Do(ctx, callTimeout, func(ctx context.Context) error {
		return actorhost.Call(ctx, r.svc, components.WorkerActor, slot, MethodFinish, a, nil)
	})
	if err != nil {
		return
	}
	r.offer(slot)
}

func (r *Runner) offer(slot string) {
	r.mu.Lock()
	draining := r.draining
	r.mu.Unlock()
	if draining {
		return
	}
	if err := retry.Do(r.ctx, callTimeout, func(ctx context.Context) error { _, err := r.queue.Idle(ctx, slot); return err }); err != nil && r.ctx.Err() == nil {
		r.logger.ErrorContext(r.ctx, "could not offer slot to the queue", "slot", slot, "error", err)
	}
}

// reportProgress returns a progress callback that publishes at most every r.progress.
func (r *Runner) reportProgress(ctx context.Context, rec task.Record) func(float64) {
	var last atomic.Int64 // unix nanos of the last publish
	return func(f float64) {
		now := time.Now()
		if f < 1 && now.UnixNano()-last.Load() < int64(r.progress) {
			return
		}
		last.Store(now.UnixNano())
		ev := events.New(events.KindProgress, rec, now)
		ev.Progress = f
		ev.ID = fmt.Sprintf("%s:%.3f", ev.ID, f)
		go r.publish(ctx, ev) // progress is advisory: never slow the task down
	}
}

func (r *Runner) publish(ctx context.Context, ev events.Event) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := events.Publish(ctx, r.svc, components.PubSub, ev); err != nil {
		r.logger.WarnContext(ctx, "could not publish event", "event_id", ev.ID, "error", err)
	}
}

// Bounds of one try of a sidecar call (see package retry). Results can be large and
// are fsynced, hence more time for delivering them.
const (
	callTimeout    = 5 * time.Second
	deliverTimeout = time.Minute
)

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/actorhost"
	"github.com/taskgrid/taskgrid/internal/batch"
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
	ReminderClient
	InvokeMethodWithContent(ctx context.Context, appID, methodName, verb string, content *dapr.DataContent) ([]byte, error)
}

// Runner runs attempts outside actor turns and reports their ends: the result to the
// storekeeper, a failure back to the queue (or to the user once attempts run out), the
// slot back to the queue as idle. It also re-queues the attempts the watchdog finds lost.
type Runner struct {
	logger   *slog.Logger
	node     string
	exec     *Executor
	tasks    *taskstore.Store
	svc      Services
	queue    queue.Client
	metrics  *Metrics
	progress time.Duration
	faults   float64 // see Config.FaultRate
	outbox   events.Sender

	ctx    context.Context // attempts run under it; cancelled when the drain time is up
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// offers gathers the slots freed at about the same time into one call of the queue
	// actor (one turn), which hands them their next tasks at once.
	offers *batch.Batcher[string]

	mu         sync.Mutex
	running    map[string]task.Assignment // slot → attempt running in this process
	delivering map[attemptKey]struct{}    // attempts done computing whose result is on its way
	draining   bool                       // slots retired: never offered again
}

// attemptKey names one attempt of a task.
type attemptKey struct {
	task    uuid.UUID
	attempt int
}

func keyOf(a task.Assignment) attemptKey { return attemptKey{a.TaskID, a.Attempt} }

// NewRunner returns a runner for node.
func NewRunner(logger *slog.Logger, node string, exec *Executor, tasks *taskstore.Store, svc Services, metrics *Metrics) *Runner {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runner{
		logger: logger.With("component", "runner"), node: node, exec: exec, tasks: tasks, svc: svc,
		queue: queue.Client{Invoker: svc}, metrics: metrics, progress: ProgressIntervalDefault,
		ctx: ctx, cancel: cancel, running: map[string]task.Assignment{}, delivering: map[attemptKey]struct{}{},
	}
	r.offers = batch.New(ctx, 0, r.offerNow)
	return r
}

// Running reports whether attempt a runs on slot in this process, or has run and its
// result is being handed to the storekeeper (its slot may run the next attempt).
func (r *Runner) Running(slot string, a task.Assignment) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.running[slot]
	_, delivering := r.delivering[keyOf(a)]
	return ok && keyOf(cur) == keyOf(a) || delivering
}

// Current returns the attempt running on slot in this process, if any.
func (r *Runner) Current(slot string) (task.Assignment, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.running[slot]
	return cur, ok
}

// Draining reports whether the runner stopped taking attempts.
func (r *Runner) Draining() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.draining
}

// Busy is the number of attempts running in this process.
func (r *Runner) Busy() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}

// Start runs attempt a on slot in the background. The slot is offered to the queue
// again as soon as the computation succeeded (the result then goes to the storekeeper
// while the slot runs its next task; the attempt's watchdog stays armed until the result
// is stored), or when the attempt ends otherwise.
func (r *Runner) Start(slot string, a task.Assignment) {
	r.mu.Lock()
	r.running[slot] = a
	r.mu.Unlock()
	r.wg.Go(func() {
		released := false
		release := func() {
			r.mu.Lock()
			delete(r.running, slot)
			r.delivering[keyOf(a)] = struct{}{}
			r.mu.Unlock()
			released = true
			r.wg.Go(func() { r.offer(slot) })
		}
		end := r.execute(slot, a, release)
		r.mu.Lock()
		delete(r.delivering, keyOf(a))
		if !released {
			delete(r.running, slot)
		}
		r.mu.Unlock()
		if released {
			return
		}
		switch end {
		case endDone:
			r.offer(slot)
		case endVanished:
			// A supervisor restarts the "process" a moment later.
			time.AfterFunc(time.Second, func() { r.offer(slot) })
		}
	})
}

// Recover re-queues attempt a, found lost by a watchdog (its process or node died). It
// does nothing when the task has moved on, so a repeat is harmless.
func (r *Runner) Recover(ctx context.Context, a task.Assignment, reason string) error {
	requeued, err := r.requeue(ctx, a, reason)
	if err != nil {
		return err
	}
	if requeued {
		r.metrics.recovered.Inc()
	}
	return nil
}

// Announce offers slots to the queue as idle (at start-up), retrying until the queue
// answers or ctx ends.
func (r *Runner) Announce(ctx context.Context, slots []string) error {
	if err := retry.Do(ctx, callTimeout, func(ctx context.Context) error { return r.offerNow(ctx, slots) }); err != nil {
		return fmt.Errorf("announce slots: %w", err)
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
		if r.Draining() {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		if err := r.offerNow(cctx, slots); err != nil && ctx.Err() == nil {
			r.logger.DebugContext(ctx, "could not offer slots again", "error", err)
		}
		cancel()
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

// How an attempt left its slot.
type attemptEnd int

const (
	endDone     attemptEnd = iota // finished, failed or dropped: watchdog disarmed, slot free
	endShutdown                   // the process is stopping: the watchdog re-queues it elsewhere
	endVanished                   // fault injection: the "process" died without a word
)

// execute runs attempt a to its end and reports it.
// release, called at most once, frees the slot when the computation succeeded.
func (r *Runner) execute(slot string, a task.Assignment, release func()) attemptEnd {
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
			if !a.Enqueued.IsZero() && !a.Dispatched.IsZero() {
				rec.QueuedAt, rec.DispatchedAt = &a.Enqueued, &a.Dispatched
			}
			return nil
		})
		if errors.Is(err, errStale) || errors.Is(err, taskstore.ErrNotFound) {
			return retry.Permanent(err)
		}
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return endShutdown
		}
		log.InfoContext(ctx, "dropping assignment that is no longer current", "reason", err)
		r.disarm(slot, a)
		return endDone
	}
	r.metrics.started(rec, now)
	started := events.New(events.KindStarted, rec, now)
	r.wg.Go(func() { r.publish(ctx, started) }) // the task need not wait for it
	log.DebugContext(ctx, "attempt started", "task", rec.Type)

	out := r.exec.Execute(ctx, rec.Type, rec.Payload, a.Attempt, r.reportProgress(ctx, rec))
	r.metrics.finished(rec.Type, out)
	if ctx.Err() != nil {
		return endShutdown
	}
	if r.faults > 0 && rand.Float64() < r.faults {
		r.metrics.faults.Inc()
		log.WarnContext(ctx, "fault injection: the worker process dies before storing the result")
		return endVanished
	}
	if out.Failure == "" {
		release()
		if err := r.deliver(ctx, rec, slot, out); err != nil {
			return endShutdown // stopping before the result was stored
		}
	} else {
		reason := out.Failure + ": " + out.Err.Error()
		log.InfoContext(ctx, "attempt failed", "failure", out.Failure, "error", out.Err)
		failed := events.New(events.KindAttemptFailed, rec, time.Now())
		failed.Error = reason
		r.publish(ctx, failed)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		_, err := r.requeue(rctx, a, reason)
		cancel()
		if err != nil {
			// The watchdog stays armed and re-queues it.
			log.ErrorContext(ctx, "could not re-queue task", "error", err)
			return endShutdown
		}
	}
	r.disarm(slot, a)
	return endDone
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

// requeue puts a failed attempt's task back in the queue at high priority, or fails it
// for good when attempts run out; requeued says whether it changed the task (it does
// nothing when the task has moved on).
func (r *Runner) requeue(ctx context.Context, a task.Assignment, reason string) (requeued bool, err error) {
	now := time.Now().UTC()
	var rec task.Record
	var changed bool
	err = retry.Do(ctx, callTimeout, func(ctx context.Context) error {
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
	if errors.Is(err, taskstore.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("re-queue task %s: %w", a.TaskID, err)
	}
	if !changed && !(rec.Status == task.StatusPending && rec.Attempts == a.Attempt) {
		return false, nil // moved on
	}
	if rec.Status == task.StatusFailed {
		if changed {
			r.metrics.failedForGood.Inc()
			r.logger.WarnContext(ctx, "task failed for good", "task_id", a.TaskID, "error", rec.Error)
			ev := events.New(events.KindFailed, rec, now)
			ev.Error = rec.Error
			r.publish(ctx, ev)
		}
		return changed, nil
	}
	// Pending again at high priority: queue the next attempt. When an earlier try got
	// this far and then failed to queue it, the record is already pending, and this
	// queues it now (a duplicate entry is dropped by the worker as stale).
	next := task.Assignment{TaskID: a.TaskID, Attempt: a.Attempt + 1, Priority: task.PriorityHigh, Enqueued: now}
	if err := retry.Do(ctx, callTimeout, func(ctx context.Context) error { _, err := r.queue.Enqueue(ctx, next); return err }); err != nil {
		return false, fmt.Errorf("queue attempt %d of task %s: %w", next.Attempt, a.TaskID, err)
	}
	if changed {
		r.metrics.requeued.Inc()
	}
	return changed, nil
}

// disarm removes the slot's watchdog. If that fails the watchdog fires once more, finds
// the attempt gone and the task moved on, and removes itself.
func (r *Runner) disarm(slot string, a task.Assignment) {
	ctx, cancel := context.WithTimeout(r.ctx, 2*callTimeout)
	defer cancel()
	err := retry.Do(ctx, callTimeout, func(ctx context.Context) error {
		return r.svc.UnregisterActorReminder(ctx, &dapr.UnregisterActorReminderRequest{
			ActorType: components.WatchdogActor, ActorID: slot, Name: watchName(a),
		})
	})
	if err != nil && r.ctx.Err() == nil {
		r.logger.WarnContext(ctx, "could not disarm watchdog", "slot", slot, "error", err)
	}
}

// offer offers a freed slot to the queue, with the other slots freed meanwhile.
func (r *Runner) offer(slot string) {
	err := retry.Do(r.ctx, callTimeout, func(ctx context.Context) error { return r.offers.Do(ctx, slot) })
	if err != nil && r.ctx.Err() == nil {
		r.logger.ErrorContext(r.ctx, "could not offer slot to the queue", "slot", slot, "error", err)
	}
}

// offerNow offers those of slots that run nothing here to the queue in one call,
// unless the runner drains. A slot that refused the task pushed to it (a stale push
// racing a new attempt) is left for Reoffer.
func (r *Runner) offerNow(ctx context.Context, slots []string) error {
	r.mu.Lock()
	draining := r.draining
	free := slices.DeleteFunc(slices.Clone(slots), func(s string) bool { _, busy := r.running[s]; return busy })
	r.mu.Unlock()
	if draining || len(free) == 0 {
		return nil
	}
	reply, err := r.queue.Offer(ctx, free...)
	if err != nil {
		return err
	}
	for _, why := range reply.Refused {
		r.logger.DebugContext(ctx, "slot refused its task; it stays queued", "reason", why)
	}
	return nil
}

// reportProgress returns a progress callback that publishes at most every r.progress.
// The end of the work (1) is not published: the completion, which follows once the
// result is stored, says 100 % (a progress event for it would cost as much as the
// rest of a short task's events).
func (r *Runner) reportProgress(ctx context.Context, rec task.Record) func(float64) {
	var last atomic.Int64 // unix nanos of the last publish
	return func(f float64) {
		now := time.Now()
		if f >= 1 || now.UnixNano()-last.Load() < int64(r.progress) {
			return
		}
		last.Store(now.UnixNano())
		ev := events.New(events.KindProgress, rec, now)
		ev.Progress = f
		ev.ID = fmt.Sprintf("%s:%.3f", ev.ID, f)
		go r.publish(ctx, ev) // progress is advisory: never slow the task down
	}
}

// publish sends a lifecycle event through the outbox; progress, which is advisory and
// soon stale, is published directly or not at all.
func (r *Runner) publish(ctx context.Context, ev events.Event) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if ev.Kind == events.KindProgress {
		pctx, pcancel := context.WithTimeout(ctx, events.OutboxTryTimeout)
		defer pcancel()
		if err := events.Publish(pctx, r.svc, components.PubSub, ev); err != nil {
			r.logger.DebugContext(ctx, "progress not published", "event_id", ev.ID, "error", err)
		}
		return
	}
	if err := r.outbox.Send(ctx, ev); err != nil {
		r.logger.ErrorContext(ctx, "could not publish or spool event", "event_id", ev.ID, "error", err)
	}
}

// Bounds of one try of a sidecar call (see package retry). Results can be large and
// are fsynced, hence more time for delivering them.
const (
	callTimeout    = 5 * time.Second
	deliverTimeout = time.Minute
)

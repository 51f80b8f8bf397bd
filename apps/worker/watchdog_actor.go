package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/actorhost"
	"github.com/taskgrid/taskgrid/internal/components"
	"github.com/taskgrid/taskgrid/internal/task"
)

// Bounds of the watchdog.
const (
	// checkTimeout bounds one call to a slot. A slot answers from memory (a few
	// milliseconds through two sidecars); a call that takes this long has met a dead
	// node: Dapr retries calls to an actor type that no host serves (5 tries, 1 s
	// apart, not configurable) rather than failing them.
	checkTimeout = 500 * time.Millisecond
	// unreachableLimit is how many fires in a row may fail to reach a slot before its
	// attempt is taken for lost. A node whose app is gone while its sidecar lives
	// (connection refused) is recognised at the first fire.
	unreachableLimit = 2
	// recoverBudget bounds re-queuing a lost attempt within one fire; what is not done
	// is done again at the next fire (re-queuing is idempotent).
	recoverBudget = 20 * time.Second
)

// Recoverer re-queues a lost attempt (Runner does).
type Recoverer interface {
	Recover(ctx context.Context, a task.Assignment, reason string) error
}

// WatchdogActor is the Watchdog actor type, hosted by every worker node. Actor id =
// slot; its reminder, armed by the slot when it takes an attempt, carries the attempt.
// At every fire it asks the slot, through the slot's node, whether the attempt still
// runs there; when the answer is no, or the node is gone, it re-queues the attempt and
// cancels itself. Reminders are held by the Dapr scheduler, so they fire on a surviving
// node when the slot's node dies, and in the restarted node after a full restart.
type WatchdogActor struct {
	logger    *slog.Logger
	invoker   actorhost.Invoker
	reminders ReminderClient
	rec       Recoverer

	mu          sync.Mutex
	unreachable map[string]int // slot → fires in a row that could not reach it
}

// NewWatchdogActor returns the Watchdog actor type.
func NewWatchdogActor(logger *slog.Logger, invoker actorhost.Invoker, reminders ReminderClient, rec Recoverer) *WatchdogActor {
	return &WatchdogActor{logger: logger.With("component", "watchdog"), invoker: invoker, reminders: reminders, rec: rec, unreachable: map[string]int{}}
}

// Invoke has no methods: the watchdog is driven by its reminder.
func (w *WatchdogActor) Invoke(context.Context, string, string, []byte) ([]byte, error) {
	return nil, actorhost.ErrMethodNotFound
}

// Remind checks the slot's attempt, and removes the reminder once the attempt ended or
// was re-queued.
func (w *WatchdogActor) Remind(ctx context.Context, slot, name string, data []byte) (bool, error) {
	if !strings.HasPrefix(name, watchPrefix) {
		return true, w.drop(ctx, slot, name)
	}
	var a task.Assignment
	if err := json.Unmarshal(data, &a); err != nil || a.TaskID == uuid.Nil {
		w.logger.ErrorContext(ctx, "watchdog reminder without an attempt; dropping it", "slot", slot, "data", string(data), "error", err)
		return true, w.drop(ctx, slot, name)
	}
	running, reason := w.check(ctx, slot, a)
	if running {
		return false, nil
	}
	if reason == "" {
		return false, nil // not sure yet: ask again at the next fire
	}
	w.logger.WarnContext(ctx, "attempt lost; re-queuing", "slot", slot, "task_id", a.TaskID, "attempt", a.Attempt, "reason", reason)
	rctx, cancel := context.WithTimeout(ctx, recoverBudget)
	defer cancel()
	if err := w.rec.Recover(rctx, a, reason); err != nil {
		return false, err // fire again: the reminder is the only record of the lost attempt
	}
	w.forget(slot)
	return true, w.drop(ctx, slot, name)
}

// drop removes a reminder. Answering a fire with "cancel" is not enough: daprd 1.18
// reports a cancelled fire of a periodic reminder to the scheduler as a success, and
// the scheduler keeps the job. If the removal fails, the next fire finds the task moved
// on and tries again.
func (w *WatchdogActor) drop(ctx context.Context, slot, name string) error {
	err := w.reminders.UnregisterActorReminder(ctx, &dapr.UnregisterActorReminderRequest{
		ActorType: components.WatchdogActor, ActorID: slot, Name: name,
	})
	if err != nil {
		return fmt.Errorf("remove reminder %s of %s: %w", name, slot, err)
	}
	return nil
}

// check asks the slot whether a runs there. It returns running, or a reason when a is
// surely not running; neither means the slot could not be reached (yet).
func (w *WatchdogActor) check(ctx context.Context, slot string, a task.Assignment) (running bool, reason string) {
	typ, err := components.SlotActor(slot)
	if err != nil {
		return false, "bad slot name: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	var reply CheckReply
	err = actorhost.Call(ctx, w.invoker, typ, slot, MethodCheck, a, &reply)
	switch {
	case err == nil && reply.Running:
		w.forget(slot)
		return true, ""
	case err == nil:
		return false, "worker process lost (the slot no longer runs the attempt)"
	case noAddress(err):
		return false, "worker node lost (no host for " + typ + ")"
	case appGone(err):
		return false, "worker process lost (its sidecar cannot reach it)"
	}
	w.mu.Lock()
	w.unreachable[slot]++
	n := w.unreachable[slot]
	w.mu.Unlock()
	w.logger.InfoContext(ctx, "watchdog could not reach slot", "slot", slot, "task_id", a.TaskID, "tries", n, "error", err)
	if n >= unreachableLimit {
		return false, "worker node unreachable: " + err.Error()
	}
	return false, ""
}

func (w *WatchdogActor) forget(slot string) {
	w.mu.Lock()
	delete(w.unreachable, slot)
	w.mu.Unlock()
}

// noAddress reports whether err says that no host serves the actor's type: Dapr
// placement has removed the node (its sidecar is gone or its app failed its health
// checks).
func noAddress(err error) bool {
	s := err.Error()
	return strings.Contains(s, "ERR_ACTOR_NO_ADDRESS") || strings.Contains(s, "did not find address for actor")
}

// appGone reports whether err says that the slot's sidecar could not connect to its app:
// the app process is not running.
func appGone(err error) bool {
	return strings.Contains(err.Error(), "connect: connection refused") && strings.Contains(err.Error(), "/actors/")
}

// Deactivate forgets what the watchdog knew about slot.
func (w *WatchdogActor) Deactivate(_ context.Context, slot string) { w.forget(slot) }

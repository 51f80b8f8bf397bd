package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/taskgrid/taskgrid/internal/actorhost"
	"github.com/taskgrid/taskgrid/internal/components"
	"github.com/taskgrid/taskgrid/internal/task"
)

// Worker actor methods and reminder.
const (
	MethodRun      = components.WorkerRun
	MethodFinish   = "finish"
	ReminderWatch  = "watchdog"
	stateKeyCurent = "current"
)

// ErrBusy is returned by run when the slot already runs another attempt.
var ErrBusy = errors.New("slot busy")

// WatchdogPeriodDefault is how often a busy slot's reminder checks that its attempt is
// still running in the process that hosts the slot.
const WatchdogPeriodDefault = "1s"

// ActorClient is what the slot actor needs from the Dapr client.
type ActorClient interface {
	actorhost.StateClient
	RegisterActorReminder(ctx context.Context, in *dapr.RegisterActorReminderRequest) error
}

// SlotActor is the Worker actor type: each actor id is one worker slot (a "worker
// process") that runs at most one attempt at a time.
//
// The attempt a slot runs is kept in its actor state ("current"), and a reminder fires
// every WatchdogPeriod while the slot is busy. When it fires where the attempt is not
// running — the process that ran it died, so Dapr placement re-activated the slot
// elsewhere, or the app restarted — the attempt is re-queued. The task code runs outside
// the actor's turn (in Runner), so a long task never blocks the reminder.
type SlotActor struct {
	logger *slog.Logger
	client ActorClient
	runner *Runner
	period string

	mu      sync.Mutex
	current map[string]*task.Assignment // slot → attempt, as last read or written here
}

// NewSlotActor returns the Worker actor type.
func NewSlotActor(logger *slog.Logger, client ActorClient, runner *Runner, period string) *SlotActor {
	if period == "" {
		period = WatchdogPeriodDefault
	}
	return &SlotActor{logger: logger.With("component", "slot_actor"), client: client, runner: runner, period: period, current: map[string]*task.Assignment{}}
}

func (s *SlotActor) state(slot string) actorhost.State {
	return actorhost.State{Client: s.client, ActorType: components.WorkerActor, ActorID: slot}
}

// load returns the slot's current attempt (cached after the first read).
func (s *SlotActor) load(ctx context.Context, slot string) (*task.Assignment, error) {
	s.mu.Lock()
	cur, ok := s.current[slot]
	s.mu.Unlock()
	if ok {
		return cur, nil
	}
	data, err := s.state(slot).Get(ctx, stateKeyCurent)
	if err != nil {
		return nil, err
	}
	if data != nil {
		cur = &task.Assignment{}
		if err := json.Unmarshal(data, cur); err != nil {
			return nil, fmt.Errorf("decode slot %s state: %w", slot, err)
		}
	}
	s.mu.Lock()
	s.current[slot] = cur
	s.mu.Unlock()
	return cur, nil
}

func (s *SlotActor) store(ctx context.Context, slot string, a *task.Assignment) error {
	var value []byte
	if a != nil {
		value, _ = json.Marshal(a)
	}
	if err := s.state(slot).Apply(ctx, actorhost.Write{Key: stateKeyCurent, Value: value}); err != nil {
		return err
	}
	s.mu.Lock()
	s.current[slot] = a
	s.mu.Unlock()
	return nil
}

// Invoke runs an actor method.
func (s *SlotActor) Invoke(ctx context.Context, slot, method string, body []byte) ([]byte, error) {
	var a task.Assignment
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("decode %s request: %w", method, err)
	}
	switch method {
	case MethodRun:
		return []byte("{}"), s.run(ctx, slot, a)
	case MethodFinish:
		return []byte("{}"), s.finish(ctx, slot, a)
	}
	return nil, actorhost.ErrMethodNotFound
}

// run takes attempt a: it records it durably, arms the watchdog, and starts it.
func (s *SlotActor) run(ctx context.Context, slot string, a task.Assignment) error {
	cur, err := s.load(ctx, slot)
	if err != nil {
		return err
	}
	if cur != nil {
		if cur.TaskID == a.TaskID && cur.Attempt == a.Attempt {
			return nil // the same dispatch again: already taken
		}
		return fmt.Errorf("%w: runs %s", ErrBusy, cur)
	}
	if err := s.store(ctx, slot, &a); err != nil {
		return err
	}
	if err := s.client.RegisterActorReminder(ctx, &dapr.RegisterActorReminderRequest{
		ActorType: components.WorkerActor, ActorID: slot, Name: ReminderWatch, DueTime: s.period, Period: s.period,
	}); err != nil {
		// Without a watchdog a crash would strand the task: give it back.
		_ = s.store(ctx, slot, nil)
		return fmt.Errorf("arm watchdog of slot %s: %w", slot, err)
	}
	s.runner.Start(slot, a)
	return nil
}

// finish clears the slot when a is still its attempt (the runner calls it when done).
func (s *SlotActor) finish(ctx context.Context, slot string, a task.Assignment) error {
	cur, err := s.load(ctx, slot)
	if err != nil {
		return err
	}
	if cur == nil || cur.TaskID != a.TaskID || cur.Attempt != a.Attempt {
		return nil // already cleared, e.g. by the watchdog
	}
	return s.store(ctx, slot, nil)
}

// Remind is the watchdog. It cancels itself when the slot is idle.
func (s *SlotActor) Remind(ctx context.Context, slot, name string) (bool, error) {
	if name != ReminderWatch {
		return true, nil
	}
	cur, err := s.load(ctx, slot)
	if err != nil {
		return false, err
	}
	if cur == nil {
		return true, nil
	}
	if s.runner.Running(slot, *cur) {
		return false, nil
	}
	// The attempt is not running here: its process died (or this app restarted).
	s.logger.WarnContext(ctx, "attempt lost with its process; re-queuing", "slot", slot, "task_id", cur.TaskID, "attempt", cur.Attempt)
	if err := s.store(ctx, slot, nil); err != nil {
		return false, err
	}
	s.runner.Recover(slot, *cur)
	return true, nil
}

// Deactivate forgets the cached state of slot (it may be re-activated elsewhere).
func (s *SlotActor) Deactivate(_ context.Context, slot string) {
	s.mu.Lock()
	delete(s.current, slot)
	s.mu.Unlock()
}

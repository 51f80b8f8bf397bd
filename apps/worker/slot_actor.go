package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/taskgrid/taskgrid/internal/actorhost"
	"github.com/taskgrid/taskgrid/internal/components"
	"github.com/taskgrid/taskgrid/internal/task"
)

// Worker actor methods and the watchdog reminder.
const (
	MethodRun   = components.WorkerRun
	MethodCheck = components.WorkerCheck
)

// watchPrefix starts the name of every watchdog reminder.
const watchPrefix = "watch-"

// watchName names the watchdog reminder of attempt a. One reminder per attempt, not per
// slot: the next attempt a slot takes (after a restart, say) must not overwrite the
// watchdog of an attempt that was lost before its watchdog fired.
func watchName(a task.Assignment) string {
	return fmt.Sprintf("%s%s-%d", watchPrefix, a.TaskID, a.Attempt)
}

// Errors of the run method (they reach the queue as text; it drops the slot).
var (
	ErrBusy         = errors.New("slot busy")
	ErrNotThisNode  = errors.New("slot does not belong to this node")
	ErrNotAccepting = errors.New("node is draining")
)

// WatchdogPeriodDefault is how often a busy slot's watchdog checks its attempt.
const WatchdogPeriodDefault = "1s"

// ReminderClient registers and removes the watchdog reminders.
type ReminderClient interface {
	RegisterActorReminder(ctx context.Context, in *dapr.RegisterActorReminderRequest) error
	UnregisterActorReminder(ctx context.Context, in *dapr.UnregisterActorReminderRequest) error
}

// SlotActor is this node's Worker actor type ("Worker.<node>"): each actor id is one
// slot of the node (a "worker process") that runs at most one attempt at a time. Only
// this node registers the type, so Dapr places every slot here and nowhere else.
//
// Taking an attempt arms a watchdog first: a reminder on the Watchdog actor type, which
// every worker node hosts, carrying the attempt. The task code then runs outside the
// actor's turn (in Runner), so a long task never blocks the actor or the watchdog.
type SlotActor struct {
	logger *slog.Logger
	slots  []string
	runner *Runner
	client ReminderClient
	period string
}

// NewSlotActor returns the Worker actor type of a node with the given slots.
func NewSlotActor(logger *slog.Logger, slots []string, runner *Runner, client ReminderClient, period string) *SlotActor {
	if period == "" {
		period = WatchdogPeriodDefault
	}
	return &SlotActor{logger: logger.With("component", "slot_actor"), slots: slots, runner: runner, client: client, period: period}
}

// CheckReply is the reply of the check method.
type CheckReply struct {
	Running bool `json:"running"`
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
	case MethodCheck:
		return json.Marshal(CheckReply{Running: s.runner.Running(slot, a)})
	}
	return nil, actorhost.ErrMethodNotFound
}

// run takes attempt a: it arms the watchdog, then starts the attempt.
func (s *SlotActor) run(ctx context.Context, slot string, a task.Assignment) error {
	if !slices.Contains(s.slots, slot) {
		return fmt.Errorf("%w: %s", ErrNotThisNode, slot)
	}
	if s.runner.Running(slot, a) {
		return nil // the same dispatch again: already taken (running, or its result on its way)
	}
	if cur, ok := s.runner.Current(slot); ok {
		return fmt.Errorf("%w: runs %s", ErrBusy, cur)
	}
	if s.runner.Draining() {
		return ErrNotAccepting
	}
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode watchdog of slot %s: %w", slot, err)
	}
	if err := s.client.RegisterActorReminder(ctx, &dapr.RegisterActorReminderRequest{
		ActorType: components.WatchdogActor, ActorID: slot, Name: watchName(a),
		DueTime: s.period, Period: s.period, Data: data,
	}); err != nil {
		// Without a watchdog a crash would strand the task: refuse it (it stays queued).
		return fmt.Errorf("arm watchdog of slot %s: %w", slot, err)
	}
	s.runner.Start(slot, a)
	return nil
}

// Remind is not used: the watchdog reminders live on the Watchdog type.
func (s *SlotActor) Remind(context.Context, string, string, []byte) (bool, error) {
	return true, nil
}

// Deactivate does nothing: the slot's attempt lives in the Runner, not in the actor.
func (s *SlotActor) Deactivate(context.Context, string) {}

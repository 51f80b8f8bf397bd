package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"

	"github.com/taskgrid/taskgrid/internal/adapters/actorhost"
	"github.com/taskgrid/taskgrid/internal/adapters/components"
	"github.com/taskgrid/taskgrid/internal/domain/queue"
	"github.com/taskgrid/taskgrid/internal/platform/steps"
)

// SlotActor is this node's Worker actor type ("Worker.<node>"): each actor id is one
// slot of the node (a "worker process") that runs at most one attempt at a time. Only
// this node registers the type, so Dapr places every slot here and nowhere else, and
// the queue reaches a node through any of its slots: one push carries the grants of all
// the node's slots that it hands work at once.
type SlotActor struct {
	logger *slog.Logger
	slots  []string
	node   *Node
}

// NewSlotActor returns the Worker actor type of a node.
func NewSlotActor(logger *slog.Logger, slots []string, node *Node) *SlotActor {
	return &SlotActor{logger: logger.With("component", "slot_actor"), slots: slots, node: node}
}

// Invoke runs an actor method.
func (s *SlotActor) Invoke(ctx context.Context, slot, method string, body []byte) ([]byte, error) {
	if method != components.WorkerRun {
		return nil, actorhost.ErrMethodNotFound
	}
	if !slices.Contains(s.slots, slot) {
		return nil, fmt.Errorf("slot %s does not belong to this node", slot)
	}
	var req queue.PushRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("decode %s request: %w", method, err)
	}
	// Taken means held: the queue's lease covers it from here, so the answer does not
	// wait for the start to be recorded.
	for _, g := range req.Grants {
		steps.Mark(g.Assignment.TaskID, steps.Received)
	}
	refused := s.node.Pushed(req.Grants)
	if s.logger.Enabled(ctx, slog.LevelDebug) { // the ids are built for the line only
		s.logger.DebugContext(ctx, "pushed attempts", "attempts", queue.AttemptIDs(req.Grants), "refused", refused)
	}
	return json.Marshal(queue.PushReply{Refused: refused})
}

// Remind is not used: the slots register no reminders.
func (s *SlotActor) Remind(context.Context, string, string, []byte) (bool, error) { return true, nil }

// Deactivate does nothing: a slot's attempt lives in the Node, not in the actor.
func (s *SlotActor) Deactivate(context.Context, string) {}

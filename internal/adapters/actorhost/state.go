package actorhost

import (
	"context"
	"fmt"

	dapr "github.com/dapr/go-sdk/client"
)

// StateClient is the part of the Dapr client that reads and writes actor state.
type StateClient interface {
	GetActorState(ctx context.Context, in *dapr.GetActorStateRequest) (*dapr.GetActorStateResponse, error)
	SaveStateTransactionally(ctx context.Context, actorType, actorID string, operations []*dapr.ActorStateOperation) error
}

// State is the state of one actor, through its sidecar. Only the process hosting the
// actor may use it, inside or alongside the actor's calls.
type State struct {
	Client    StateClient
	ActorType string
	ActorID   string
}

// Get returns the value of key, or nil when it does not exist.
func (s State) Get(ctx context.Context, key string) ([]byte, error) {
	resp, err := s.Client.GetActorState(ctx, &dapr.GetActorStateRequest{ActorType: s.ActorType, ActorID: s.ActorID, KeyName: key})
	if err != nil {
		return nil, fmt.Errorf("get actor state %s/%s %s: %w", s.ActorType, s.ActorID, key, err)
	}
	if resp == nil || len(resp.Data) == 0 {
		return nil, nil
	}
	return resp.Data, nil
}

// Write is one operation of a transaction: Value nil deletes Key.
type Write struct {
	Key   string
	Value []byte
}

// Apply writes ws in one transaction.
func (s State) Apply(ctx context.Context, ws ...Write) error {
	ops := make([]*dapr.ActorStateOperation, 0, len(ws))
	for _, w := range ws {
		op := &dapr.ActorStateOperation{OperationType: "upsert", Key: w.Key, Value: w.Value}
		if w.Value == nil {
			op.OperationType = "delete"
		}
		ops = append(ops, op)
	}
	if err := s.Client.SaveStateTransactionally(ctx, s.ActorType, s.ActorID, ops); err != nil {
		return fmt.Errorf("save actor state %s/%s: %w", s.ActorType, s.ActorID, err)
	}
	return nil
}

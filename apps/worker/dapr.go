package main

import (
	"context"
	"encoding/json"
	"fmt"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/taskgrid/taskgrid/internal/task"
)

// storekeeperApp is the app id results are handed to.
const storekeeperApp = "storekeeper"

// invoker is the part of the Dapr client that calls another app.
type invoker interface {
	InvokeMethodWithContent(ctx context.Context, appID, methodName, verb string, content *dapr.DataContent) ([]byte, error)
}

// storeClient implements Results with service invocation of the storekeeper
// (POST /results with a task.StoreBatch).
type storeClient struct{ c invoker }

// Store sends reqs in one call and returns the storekeeper's outcome of each.
func (s storeClient) Store(ctx context.Context, reqs []task.StoreRequest) ([]task.StoreOutcome, error) {
	data, err := json.Marshal(task.StoreBatch{Results: reqs})
	if err != nil {
		return nil, fmt.Errorf("encode results: %w", err)
	}
	out, err := s.c.InvokeMethodWithContent(ctx, storekeeperApp, "results", "post",
		&dapr.DataContent{ContentType: "application/json", Data: data})
	if err != nil {
		return nil, fmt.Errorf("hand %d results to the storekeeper: %w", len(reqs), err)
	}
	var reply task.StoreReply
	if err := json.Unmarshal(out, &reply); err != nil {
		return nil, fmt.Errorf("decode the storekeeper's reply: %w", err)
	}
	if len(reply.Outcomes) != len(reqs) {
		return nil, fmt.Errorf("the storekeeper answered %d outcomes for %d results", len(reply.Outcomes), len(reqs))
	}
	return reply.Outcomes, nil
}

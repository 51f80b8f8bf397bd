// Package storekeeper calls the storekeeper app through Dapr service invocation: the
// worker hands it results (POST /results with a task.StoreBatch), the gateway reads a
// stored result back (GET /results/{id}).
package storekeeper

import (
	"context"
	"encoding/json"
	"fmt"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// AppID is the storekeeper's Dapr app id.
const AppID = "storekeeper"

// Invoker is the part of the Dapr client that calls another app.
type Invoker interface {
	InvokeMethodWithContent(ctx context.Context, appID, methodName, verb string, content *dapr.DataContent) ([]byte, error)
	InvokeMethod(ctx context.Context, appID, methodName, verb string) ([]byte, error)
}

// Client calls the storekeeper.
type Client struct{ Invoker Invoker }

// Store sends reqs in one call and returns the storekeeper's outcome of each, in order.
func (c Client) Store(ctx context.Context, reqs []task.StoreRequest) ([]task.StoreOutcome, error) {
	data, err := json.Marshal(task.StoreBatch{Results: reqs})
	if err != nil {
		return nil, fmt.Errorf("encode results: %w", err)
	}
	out, err := c.Invoker.InvokeMethodWithContent(ctx, AppID, "results", "post",
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

// Read returns the stored result JSON of task id.
func (c Client) Read(ctx context.Context, id uuid.UUID) ([]byte, error) {
	data, err := c.Invoker.InvokeMethod(ctx, AppID, "results/"+id.String(), "get")
	if err != nil {
		return nil, fmt.Errorf("read result of %s: %w", id, err)
	}
	return data, nil
}

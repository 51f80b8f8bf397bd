// Package recent calls the analytics app through Dapr service invocation for the recent
// activity the gateways' system overview shows (GET /overview): completions per minute
// and failure counts, from the analytics ledger in MySQL. It is the overview's durable
// source: the same on every gateway, and kept across their restarts.
package recent

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// AppID is the analytics app's Dapr app id; Method is its route (the access control
// lists in components/config.yaml and the chart allow the gateway GET on it).
const (
	AppID  = "analytics"
	Method = "overview"
)

// Window is how far back the failure counts go.
const Window = time.Hour

// Activity is the recent activity, from the ledger's events.
type Activity struct {
	// Since is where the counts start (Window before At).
	Since time.Time `json:"since"`
	At    time.Time `json:"at"`
	// Completed counts completions per minute (UTC minute starts), for the minutes of
	// the last Window that had any.
	Completed []Minute `json:"completed"`
	// Recovered attempts started again after a failure; AttemptsFailed failed in task
	// code (or their time limit); Failed tasks ran out of attempts; Cancelled tasks were
	// cancelled by their users.
	Recovered      int `json:"recovered"`
	AttemptsFailed int `json:"attempts_failed"`
	Failed         int `json:"failed"`
	Cancelled      int `json:"cancelled"`
}

// Minute is the completions of one minute.
type Minute struct {
	Start     time.Time `json:"start"`
	Completed int       `json:"completed"`
}

// Invoker is the part of the Dapr client that calls another app.
type Invoker interface {
	InvokeMethod(ctx context.Context, appID, methodName, verb string) ([]byte, error)
}

// Client reads the recent activity from the analytics app.
type Client struct{ Invoker Invoker }

// Get reads the recent activity.
func (c Client) Get(ctx context.Context) (Activity, error) {
	var a Activity
	data, err := c.Invoker.InvokeMethod(ctx, AppID, "overview", "get") // literal: the chart's tests read it
	if err != nil {
		return a, fmt.Errorf("read recent activity from analytics: %w", err)
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return a, fmt.Errorf("decode recent activity: %w", err)
	}
	return a, nil
}

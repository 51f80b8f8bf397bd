// Package components names the Dapr components and actor types the apps use. The names
// must match components/*.yaml; a test checks that they do.
package components

import (
	"fmt"
	"strconv"
	"strings"
)

// Component names (metadata.name in components/).
const (
	PubSub      = "pubsub"       // pubsub.kafka: lifecycle events
	StateStore  = "statestore"   // state.redis: task records, queue, actor state
	AnalyticsDB = "analytics-db" // bindings.mysql: analytics statistics
	Secrets     = "envsecrets"   // secretstores.local.env: addresses and credentials
	// Fanout is pubsub.kafka on the same topics with a consumer group per sidecar: every
	// gateway instance reads every event (for its SSE streams).
	Fanout = "fanout"
)

// Scopes says which apps may load each component.
var Scopes = map[string][]string{
	PubSub:      {"gateway", "worker", "storekeeper", "analytics"},
	StateStore:  {"gateway", "worker", "storekeeper"},
	AnalyticsDB: {"analytics"},
	Secrets:     {"gateway", "worker", "storekeeper", "analytics"},
	Fanout:      {"gateway"},
}

// Actor types.
//
// Each worker node hosts its own Worker actor type, "Worker.<node>", with one actor per
// slot: Dapr places an actor type only on the hosts that register it, so a slot always
// runs in its node's process and never moves to another node while it runs a task. The
// Watchdog type is hosted by every worker node: its reminders outlive any one node and
// fire on a survivor when a node dies.
const (
	QueueActor    = "TaskQueue" // hosted by the gateway: the task queue
	WatchdogActor = "Watchdog"  // hosted by every worker node: one per busy slot, a reminder that checks the slot

	// WorkerRun is the Worker actor method the queue calls to hand a slot its task.
	WorkerRun = "run"
	// WorkerCheck is the Worker actor method the watchdog calls to ask whether an
	// attempt still runs on the slot.
	WorkerCheck = "check"

	workerActorPrefix = "Worker."
)

// WorkerActor is the actor type of node's slots.
func WorkerActor(node string) string { return workerActorPrefix + node }

// Slot names slot i of node: "<node>-<i>".
func Slot(node string, i int) string { return node + "-" + strconv.Itoa(i) }

// SlotNode returns the node of a slot name made by Slot.
func SlotNode(slot string) (string, error) {
	i := strings.LastIndexByte(slot, '-')
	if i <= 0 {
		return "", fmt.Errorf("slot %q is not <node>-<number>", slot)
	}
	if _, err := strconv.ParseUint(slot[i+1:], 10, 16); err != nil {
		return "", fmt.Errorf("slot %q is not <node>-<number>", slot)
	}
	return slot[:i], nil
}

// SlotActor returns the actor type that hosts slot.
func SlotActor(slot string) (string, error) {
	node, err := SlotNode(slot)
	if err != nil {
		return "", err
	}
	return WorkerActor(node), nil
}

// ValidNode reports whether node can name a worker node: 1 to 100 letters, digits, '-',
// '_' or '.', starting with a letter or digit (it becomes part of an actor type name and
// of URL paths).
func ValidNode(node string) bool {
	if node == "" || len(node) > 100 || node[0] == '-' || node[0] == '.' || node[0] == '_' {
		return false
	}
	for _, c := range node {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

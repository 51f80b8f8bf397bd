// Package components names the Dapr components and actor types the apps use. The names
// must match components/*.yaml; a test checks that they do.
package components

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

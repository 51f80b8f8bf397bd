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
const (
	QueueActor  = "TaskQueue" // hosted by the gateway: the task queue
	WorkerActor = "Worker"    // hosted by the worker: one worker process (slot), one task at a time

	// WorkerRun is the Worker actor method the queue calls to hand a slot its task.
	WorkerRun = "run"
)

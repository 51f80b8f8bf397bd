// Package components names the Dapr components and actor types the apps use. The names
// must match components/*.yaml; a test checks that they do.
package components

// Component names (metadata.name in components/).
const (
	PubSub      = "pubsub"       // pubsub.kafka: lifecycle events
	StateStore  = "statestore"   // state.redis: task records, queue, actor state
	AnalyticsDB = "analytics-db" // bindings.mysql: analytics statistics
	Secrets     = "envsecrets"   // secretstores.local.env: addresses and credentials
)

// Scopes says which apps may load each component.
var Scopes = map[string][]string{
	PubSub:      {"gateway", "worker", "storekeeper", "analytics"},
	StateStore:  {"gateway", "worker", "storekeeper"},
	AnalyticsDB: {"analytics"},
	Secrets:     {"gateway", "worker", "storekeeper", "analytics"},
}

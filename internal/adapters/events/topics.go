// Package events defines the task lifecycle events: their kinds, the Kafka topic they
// go to, and their encoding. Every app that publishes or consumes them uses this
// package, so names are spelled in one place.
package events

// TopicEvents is the one lifecycle topic: every event of every task, its kind in the
// event itself. Each event is keyed by its task id, so a task's events stay in one
// partition, in the order they were published; and a consumer's bulk deliveries carry
// every kind at once (a topic per kind split them into as many smaller deliveries, and
// a publish of a batch into one call per kind).
const TopicEvents = "task-events"

// Topics lists every lifecycle topic (the local broker creates them at start).
func Topics() []string { return []string{TopicEvents} }

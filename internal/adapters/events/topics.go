// Package events defines the task lifecycle events: their kinds, the Kafka topic each
// goes to, and their encoding. Every app that publishes or consumes them uses this
// package, so names are spelled in one place.
package events

// Topics, one per lifecycle event kind.
const (
	TopicAccepted      = "task-accepted"       // gateway: task accepted and queued
	TopicStarted       = "task-started"        // worker: an attempt started
	TopicProgress      = "task-progress"       // worker: progress of a running attempt
	TopicAttemptFailed = "task-attempt-failed" // worker: an attempt failed (internal; never shown to the user)
	TopicCompleted     = "task-completed"      // storekeeper: result on disk
	TopicFailed        = "task-failed"         // worker: failed for good after the last attempt
)

// Topics lists every lifecycle topic (the local broker creates them at start).
func Topics() []string {
	return []string{TopicAccepted, TopicStarted, TopicProgress, TopicAttemptFailed, TopicCompleted, TopicFailed}
}

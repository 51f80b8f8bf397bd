package task

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// EventVersion is the version of the event encoding; consumers refuse events of a newer
// major version.
const EventVersion = 1

// Kinds of lifecycle events.
const (
	EventAccepted      = "accepted"
	EventStarted       = "started"
	EventProgress      = "progress"
	EventAttemptFailed = "attempt_failed"
	EventCompleted     = "completed"
	EventFailed        = "failed"
	EventCancelled     = "cancelled" // the user cancelled the task (DELETE); terminal
)

// EventKinds lists every kind.
var EventKinds = []string{EventAccepted, EventStarted, EventProgress, EventAttemptFailed, EventCompleted, EventFailed, EventCancelled}

// Event is one step of a task's life, as the state machine (lifecycle.go) emits it. Its
// ID is deterministic (EventID), so a step published twice is recognisably the same.
type Event struct {
	ID       string    `json:"id"`
	Version  int       `json:"version"`
	Kind     string    `json:"kind"`
	Time     time.Time `json:"time"`
	TaskID   uuid.UUID `json:"task_id"`
	Type     string    `json:"task"`
	Attempt  int       `json:"attempt"`
	Priority Priority  `json:"priority,omitempty"`
	Worker   string    `json:"worker,omitempty"`
	Progress float64   `json:"progress,omitempty"`
	Error    string    `json:"error,omitempty"`
	Result   *Location `json:"result,omitempty"`
	// StartedAt is when the task's current attempt started, on the events after it: the
	// topics are not ordered with one another, so a completion may reach a reader
	// before the start it follows.
	StartedAt *time.Time `json:"started_at,omitempty"`
}

func knownKind(k string) bool {
	for _, e := range EventKinds {
		if e == k {
			return true
		}
	}
	return false
}

// DecodeEvent parses an event and checks that it is one this code understands.
func DecodeEvent(data []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return e, fmt.Errorf("decode event: %w", err)
	}
	return e, e.Check()
}

// Check reports why e is not an event this code understands, if it is not.
func (e Event) Check() error {
	if e.Version < 1 || e.Version > EventVersion {
		return fmt.Errorf("decode event %s: version %d not supported", e.ID, e.Version)
	}
	if !knownKind(e.Kind) || e.ID == "" || e.TaskID == uuid.Nil {
		return fmt.Errorf("decode event %q: kind %q, task %s: incomplete event", e.ID, e.Kind, e.TaskID)
	}
	return nil
}

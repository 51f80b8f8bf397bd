package events

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/task"
)

// Version of the event encoding; consumers refuse events of a newer major version.
const Version = 1

// Kinds of lifecycle events, one per topic.
const (
	KindAccepted      = "accepted"
	KindStarted       = "started"
	KindProgress      = "progress"
	KindAttemptFailed = "attempt_failed"
	KindCompleted     = "completed"
	KindFailed        = "failed"
)

var topicOf = map[string]string{
	KindAccepted: TopicAccepted, KindStarted: TopicStarted, KindProgress: TopicProgress,
	KindAttemptFailed: TopicAttemptFailed, KindCompleted: TopicCompleted, KindFailed: TopicFailed,
}

// Topic returns the topic of an event kind.
func Topic(kind string) (string, error) {
	t, ok := topicOf[kind]
	if !ok {
		return "", fmt.Errorf("unknown event kind %q", kind)
	}
	return t, nil
}

// Event is one step of a task's life. Its ID is deterministic (task, kind, attempt), so
// a step published twice is recognisably the same event.
type Event struct {
	ID       string         `json:"id"`
	Version  int            `json:"version"`
	Kind     string         `json:"kind"`
	Time     time.Time      `json:"time"`
	TaskID   uuid.UUID      `json:"task_id"`
	Type     string         `json:"task"`
	Attempt  int            `json:"attempt"`
	Priority task.Priority  `json:"priority,omitempty"`
	Worker   string         `json:"worker,omitempty"`
	Progress float64        `json:"progress,omitempty"`
	Error    string         `json:"error,omitempty"`
	Result   *task.Location `json:"result,omitempty"`
	// StartedAt is when the task's current attempt started, on the events after it: the
	// topics are not ordered with one another, so a completion may reach a reader
	// before the start it follows.
	StartedAt *time.Time `json:"started_at,omitempty"`
}

// New returns an event of kind for rec's current attempt, stamped now.
func New(kind string, rec task.Record, now time.Time) Event {
	e := Event{
		Version: Version, Kind: kind, Time: now.UTC(), TaskID: rec.ID, Type: rec.Type,
		Attempt: rec.Attempts, Priority: rec.Priority, Worker: rec.Worker, StartedAt: rec.StartedAt,
	}
	e.ID = rec.ID.String() + ":" + kind + ":" + strconv.Itoa(rec.Attempts)
	return e
}

// Decode parses an event and checks that it is one this code understands.
func Decode(data []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return e, fmt.Errorf("decode event: %w", err)
	}
	if e.Version < 1 || e.Version > Version {
		return e, fmt.Errorf("decode event %s: version %d not supported", e.ID, e.Version)
	}
	if _, ok := topicOf[e.Kind]; !ok || e.ID == "" || e.TaskID == uuid.Nil {
		return e, fmt.Errorf("decode event %q: kind %q, task %s: incomplete event", e.ID, e.Kind, e.TaskID)
	}
	return e, nil
}

// Publisher is the part of the Dapr client that publishes.
type Publisher interface {
	PublishEvent(ctx context.Context, pubsubName, topicName string, data interface{}, opts ...dapr.PublishEventOption) error
}

// Publish sends e to its topic on pubsub. The CloudEvent id is the event's id.
func Publish(ctx context.Context, p Publisher, pubsub string, e Event) error {
	topic, err := Topic(e.Kind)
	if err != nil {
		return err
	}
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	if err := p.PublishEvent(ctx, pubsub, topic, data,
		dapr.PublishEventWithContentType("application/json"),
		dapr.PublishEventWithMetadata(map[string]string{"cloudevent.id": e.ID, "partitionKey": e.TaskID.String()})); err != nil {
		return fmt.Errorf("publish %s: %w", e.ID, err)
	}
	return nil
}

package events

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// Version of the event encoding.
const Version = task.EventVersion

// Kinds of lifecycle events.
const (
	KindAccepted      = task.EventAccepted
	KindStarted       = task.EventStarted
	KindProgress      = task.EventProgress
	KindAttemptFailed = task.EventAttemptFailed
	KindCompleted     = task.EventCompleted
	KindFailed        = task.EventFailed
	KindCancelled     = task.EventCancelled
)

// Topic returns the topic of an event kind: TopicEvents, for every kind this code knows.
func Topic(kind string) (string, error) {
	if !slices.Contains(task.EventKinds, kind) {
		return "", fmt.Errorf("unknown event kind %q", kind)
	}
	return TopicEvents, nil
}

// Event is a lifecycle event; the state machine in package task makes them.
type Event = task.Event

// Decode parses an event and checks that it is one this code understands.
func Decode(data []byte) (Event, error) {
	if e, ok := decodeEventFast(data); ok {
		return e, e.Check()
	}
	return task.DecodeEvent(data)
}

// Publisher is the part of the Dapr client that publishes.
type Publisher interface {
	PublishEvent(ctx context.Context, pubsubName, topicName string, data interface{}, opts ...dapr.PublishEventOption) error
}

// Publish sends e to its topic on pubsub, as a pack of one (see pack.go). The CloudEvent
// id is the event's id.
func Publish(ctx context.Context, p Publisher, pubsub string, e Event) error {
	oe, err := encode(e)
	if err != nil {
		return err
	}
	if err := p.PublishEvent(ctx, pubsub, oe.topic, encodePack([]outEvent{oe}, []int{0}),
		dapr.PublishEventWithContentType(PackContentType),
		dapr.PublishEventWithMetadata(packMetadata(e, 1))); err != nil {
		return fmt.Errorf("publish %s: %w", e.ID, err)
	}
	return nil
}

// BestEffort publishes events directly, once, bounded by OutboxTryTimeout, and only logs
// a failure: for progress, which is advisory and soon stale, never spooled.
type BestEffort struct {
	Logger    *slog.Logger
	Publisher Publisher
	PubSub    string
}

// Progress publishes e.
func (b BestEffort) Progress(ctx context.Context, e Event) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), OutboxTryTimeout)
	defer cancel()
	if err := Publish(ctx, b.Publisher, b.PubSub, e); err != nil {
		b.Logger.DebugContext(ctx, "progress not published", "event_id", e.ID, "error", err)
	}
}

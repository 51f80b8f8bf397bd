package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	dapr "github.com/dapr/go-sdk/client"
)

// Subscriber is the part of the Dapr client that opens streaming subscriptions.
type Subscriber interface {
	Subscribe(ctx context.Context, opts dapr.SubscriptionOptions) (*dapr.Subscription, error)
}

// ErrPoison marks an event that can never be handled: it is dropped, not retried.
var ErrPoison = errors.New("poison event")

// HandleFunc handles one event. nil acknowledges it; an error wrapping ErrPoison drops
// it; any other error has the sidecar deliver it again.
type HandleFunc func(ctx context.Context, e Event) error

// Subscribe streams topics from pubsub through the sidecar (a streaming subscription:
// the app needs no subscription route) and calls handle for each event, acknowledging
// only after handle returns. It runs until ctx ends, re-opening a stream that fails.
func Subscribe(ctx context.Context, logger *slog.Logger, s Subscriber, pubsub string, topics []string, handle HandleFunc) error {
	var wg sync.WaitGroup
	for _, topic := range topics {
		wg.Go(func() { subscribeTopic(ctx, logger.With("topic", topic), s, pubsub, topic, handle) })
	}
	wg.Wait()
	return nil
}

func subscribeTopic(ctx context.Context, logger *slog.Logger, s Subscriber, pubsub, topic string, handle HandleFunc) {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		sub, err := s.Subscribe(ctx, dapr.SubscriptionOptions{PubsubName: pubsub, Topic: topic})
		if err != nil {
			logger.WarnContext(ctx, "could not subscribe; retrying", "error", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(wait*2, 5*time.Second)
			continue
		}
		wait = 100 * time.Millisecond
		err = receive(ctx, logger, sub, handle)
		_ = sub.Close()
		if ctx.Err() == nil {
			logger.WarnContext(ctx, "subscription stream ended; re-opening", "error", err)
		}
	}
}

func receive(ctx context.Context, logger *slog.Logger, sub *dapr.Subscription, handle HandleFunc) error {
	stop := context.AfterFunc(ctx, func() { _ = sub.Close() })
	defer stop()
	for {
		msg, err := sub.Receive()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		e, err := Decode(msg.RawData)
		if err == nil {
			err = handle(ctx, e)
		} else {
			err = fmt.Errorf("%w: %w", ErrPoison, err)
		}
		switch {
		case err == nil:
			err = msg.Success()
		case errors.Is(err, ErrPoison):
			logger.ErrorContext(ctx, "dropping event that cannot be handled", "event_id", msg.ID, "error", err)
			err = msg.Drop()
		default:
			logger.WarnContext(ctx, "event not handled; the sidecar will deliver it again", "event_id", msg.ID, "error", err)
			err = msg.Retry()
		}
		if err != nil {
			return fmt.Errorf("acknowledge: %w", err)
		}
	}
}

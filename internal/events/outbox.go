package events

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	dapr "github.com/dapr/go-sdk/client"
)

// Sender sends lifecycle events (Outbox does).
type Sender interface {
	Send(ctx context.Context, e Event) error
}

// OutboxState is the part of the Dapr client the outbox keeps its events with.
type OutboxState interface {
	GetState(ctx context.Context, storeName, key string, meta map[string]string) (*dapr.StateItem, error)
	ExecuteStateTransaction(ctx context.Context, storeName string, meta map[string]string, ops []*dapr.StateOperation) error
}

// Bounds of the outbox.
const (
	// OutboxTryTimeout bounds one publish. The sidecar's own retries while the broker
	// is down take much longer; a task must not wait for them.
	OutboxTryTimeout = 2 * time.Second
	outboxWaitMax    = 5 * time.Second
)

// Outbox publishes lifecycle events and keeps the ones the broker does not take, in
// the state store, until it does: a Kafka outage neither stops tasks nor loses events.
//
// Send publishes at once while nothing is spooled; when a publish fails, or events wait
// already, it appends the event to the owner's spool (one transaction: the entry and
// the head/tail counters) and returns. Run drains the spool in order, an event removed
// only after the broker took it, so an event is published at least once; its id stays
// the same, so consumers can drop repeats. Each spool has one writer: owner must be
// unique to the process (app id and instance), and stable across its restarts so that
// a restarted process drains what its predecessor left.
type Outbox struct {
	logger *slog.Logger
	pub    Publisher
	state  OutboxState
	store  string
	pubsub string
	owner  string

	mu     sync.Mutex
	loaded bool
	head   uint64 // next entry to publish
	tail   uint64 // next entry to write
	wake   chan struct{}
}

// NewOutbox returns the outbox of owner, publishing to pubsub and spooling to store.
func NewOutbox(logger *slog.Logger, pub Publisher, state OutboxState, pubsub, store, owner string) *Outbox {
	return &Outbox{
		logger: logger.With("component", "outbox"), pub: pub, state: state,
		store: store, pubsub: pubsub, owner: owner, wake: make(chan struct{}, 1),
	}
}

type outboxMeta struct {
	Head uint64 `json:"head"`
	Tail uint64 `json:"tail"`
}

func (o *Outbox) metaKey() string { return "outbox-" + o.owner + "-meta" }
func (o *Outbox) entryKey(seq uint64) string {
	return "outbox-" + o.owner + "-" + strconv.FormatUint(seq, 10)
}

// load reads the counters once. Call with mu held.
func (o *Outbox) load(ctx context.Context) error {
	if o.loaded {
		return nil
	}
	item, err := o.state.GetState(ctx, o.store, o.metaKey(), nil)
	if err != nil {
		return fmt.Errorf("outbox %s: read counters: %w", o.owner, err)
	}
	var m outboxMeta
	if item != nil && len(item.Value) > 0 {
		if err := json.Unmarshal(item.Value, &m); err != nil {
			return fmt.Errorf("outbox %s: decode counters: %w", o.owner, err)
		}
	}
	o.head, o.tail, o.loaded = m.Head, m.Tail, true
	return nil
}

// Depth is how many events wait in the spool (as far as this process knows).
func (o *Outbox) Depth() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return int(o.tail - o.head)
}

// Send publishes e, or spools it when the broker does not take it. It returns an error
// only when the event could be neither published nor spooled.
func (o *Outbox) Send(ctx context.Context, e Event) error {
	o.mu.Lock()
	err := o.load(ctx)
	// Publish at once while nothing waits (keeping order), or when the spool cannot be
	// read at all (then spooling would fail too).
	direct := err != nil || o.head == o.tail
	o.mu.Unlock()
	if direct {
		tctx, cancel := context.WithTimeout(ctx, OutboxTryTimeout)
		err := Publish(tctx, o.pub, o.pubsub, e)
		cancel()
		if err == nil {
			return nil
		}
		o.logger.InfoContext(ctx, "broker did not take an event; spooling it", "event_id", e.ID, "error", err)
	}
	return o.spool(ctx, e)
}

func (o *Outbox) spool(ctx context.Context, e Event) error {
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("outbox: encode %s: %w", e.ID, err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.load(ctx); err != nil {
		return err
	}
	meta, _ := json.Marshal(outboxMeta{Head: o.head, Tail: o.tail + 1})
	err = o.state.ExecuteStateTransaction(ctx, o.store, nil, []*dapr.StateOperation{
		{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: o.entryKey(o.tail), Value: data}},
		{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: o.metaKey(), Value: meta}},
	})
	if err != nil {
		return fmt.Errorf("outbox %s: spool %s: %w", o.owner, e.ID, err)
	}
	o.tail++
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

// Run drains the spool until ctx ends: oldest first, each event removed once published.
func (o *Outbox) Run(ctx context.Context) {
	wait := time.Duration(0)
	for {
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		sent, err := o.drainOne(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			o.logger.WarnContext(ctx, "could not publish a spooled event; retrying", "error", err, "spooled", o.Depth())
			wait = min(max(2*wait, 100*time.Millisecond), outboxWaitMax)
		case sent:
			wait = 0
		default: // empty: sleep until something is spooled (or a second passes)
			wait = 0
			select {
			case <-ctx.Done():
				return
			case <-o.wake:
			case <-time.After(time.Second):
			}
		}
	}
}

// drainOne publishes and removes the oldest spooled event; sent=false when there is none.
func (o *Outbox) drainOne(ctx context.Context) (sent bool, err error) {
	o.mu.Lock()
	if err := o.load(ctx); err != nil {
		o.mu.Unlock()
		return false, err
	}
	head, tail := o.head, o.tail
	o.mu.Unlock()
	if head == tail {
		return false, nil
	}
	item, err := o.state.GetState(ctx, o.store, o.entryKey(head), nil)
	if err != nil {
		return false, fmt.Errorf("outbox %s: read entry %d: %w", o.owner, head, err)
	}
	if item != nil && len(item.Value) > 0 {
		e, derr := Decode(item.Value)
		if derr != nil {
			o.logger.ErrorContext(ctx, "dropping a spooled entry that is not an event", "seq", head, "error", derr)
		} else {
			tctx, cancel := context.WithTimeout(ctx, OutboxTryTimeout)
			err := Publish(tctx, o.pub, o.pubsub, e)
			cancel()
			if err != nil {
				return false, err
			}
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	meta, _ := json.Marshal(outboxMeta{Head: head + 1, Tail: o.tail})
	if err := o.state.ExecuteStateTransaction(ctx, o.store, nil, []*dapr.StateOperation{
		{Type: dapr.StateOperationTypeDelete, Item: &dapr.SetStateItem{Key: o.entryKey(head)}},
		{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: o.metaKey(), Value: meta}},
	}); err != nil {
		return false, fmt.Errorf("outbox %s: remove entry %d: %w", o.owner, head, err)
	}
	o.head = head + 1
	return true, nil
}

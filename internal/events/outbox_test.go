package events

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"
)

// fakeBroker records published event ids; while down it refuses them.
type fakeBroker struct {
	mu   sync.Mutex
	down bool
	got  []string
}

func (b *fakeBroker) PublishEvent(_ context.Context, _, _ string, data any, _ ...dapr.PublishEventOption) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return errors.New("kafka: client has run out of available brokers")
	}
	var e Event
	if err := json.Unmarshal(data.([]byte), &e); err != nil {
		return err
	}
	b.got = append(b.got, e.ID)
	return nil
}

func (b *fakeBroker) set(down bool) { b.mu.Lock(); b.down = down; b.mu.Unlock() }
func (b *fakeBroker) ids() []string { b.mu.Lock(); defer b.mu.Unlock(); return slices.Clone(b.got) }

// fakeState is a transactional key-value store.
type fakeState struct {
	mu   sync.Mutex
	data map[string][]byte
	down bool
}

func (s *fakeState) GetState(_ context.Context, _, key string, _ map[string]string) (*dapr.StateItem, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return nil, errors.New("redis down")
	}
	return &dapr.StateItem{Key: key, Value: s.data[key]}, nil
}

func (s *fakeState) ExecuteStateTransaction(_ context.Context, _ string, _ map[string]string, ops []*dapr.StateOperation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("redis down")
	}
	for _, op := range ops {
		if op.Type == dapr.StateOperationTypeDelete {
			delete(s.data, op.Item.Key)
		} else {
			s.data[op.Item.Key] = op.Item.Value
		}
	}
	return nil
}

func testEvent(i int) Event {
	return Event{ID: "t:" + string(rune('a'+i)), Version: Version, Kind: KindStarted, TaskID: uuid.New(), Type: "noop", Attempt: 1, Time: time.Unix(int64(i), 0)}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOutboxSpoolsWhileBrokerIsDownAndDrainsInOrder(t *testing.T) {
	t.Parallel()
	broker, state := &fakeBroker{}, &fakeState{data: map[string][]byte{}}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	o := NewOutbox(logger, broker, state, "pubsub", "statestore", "worker-node-1")
	ctx := t.Context()

	if err := o.Send(ctx, testEvent(0)); err != nil { // broker up: straight through
		t.Fatal(err)
	}
	broker.set(true)
	for i := 1; i <= 3; i++ {
		if err := o.Send(ctx, testEvent(i)); err != nil {
			t.Fatalf("Send while the broker is down = %v, want the event spooled", err)
		}
	}
	if d := o.Depth(); d != 3 {
		t.Fatalf("depth = %d, want 3", d)
	}
	broker.set(false)
	if err := o.Send(ctx, testEvent(4)); err != nil { // behind the spooled ones, not ahead
		t.Fatal(err)
	}
	if got := broker.ids(); !slices.Equal(got, []string{"t:a"}) {
		t.Fatalf("published %v before draining, want only t:a", got)
	}

	// A restarted process (new outbox, same owner) drains what the first one left.
	o2 := NewOutbox(logger, broker, state, "pubsub", "statestore", "worker-node-1")
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go o2.Run(rctx)
	want := []string{"t:a", "t:b", "t:c", "t:d", "t:e"}
	waitFor(t, "the spool drained", func() bool { return slices.Equal(broker.ids(), want) })
	waitFor(t, "entries removed", func() bool {
		state.mu.Lock()
		defer state.mu.Unlock()
		return len(state.data) == 1 // only the counters are left
	})
	if d := o2.Depth(); d != 0 {
		t.Fatalf("depth after draining = %d", d)
	}
}

// Owners do not share spools.
func TestOutboxOwnersAreSeparate(t *testing.T) {
	t.Parallel()
	broker, state := &fakeBroker{down: true}, &fakeState{data: map[string][]byte{}}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := NewOutbox(logger, broker, state, "pubsub", "statestore", "gateway-a")
	b := NewOutbox(logger, broker, state, "pubsub", "statestore", "gateway-b")
	if err := a.Send(t.Context(), testEvent(0)); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(t.Context(), testEvent(1)); err != nil {
		t.Fatal(err)
	}
	if a.Depth() != 1 || b.Depth() != 1 || len(state.data) != 4 {
		t.Fatalf("depths %d, %d and %d keys; want one event and counters each", a.Depth(), b.Depth(), len(state.data))
	}
}

// With both the broker and the state store down, Send says so.
func TestOutboxFailsWhenNothingTakesTheEvent(t *testing.T) {
	t.Parallel()
	broker, state := &fakeBroker{down: true}, &fakeState{data: map[string][]byte{}, down: true}
	o := NewOutbox(slog.New(slog.NewTextHandler(io.Discard, nil)), broker, state, "pubsub", "statestore", "x")
	if err := o.Send(t.Context(), testEvent(0)); err == nil {
		t.Fatal("Send = nil with broker and state store down")
	}
}

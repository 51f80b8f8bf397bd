package queueactor

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgrid/taskgrid/internal/adapters/actorhost"
	"github.com/taskgrid/taskgrid/internal/domain/queue"
	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// memActorState is the actor state API of a sidecar, in memory.
type memActorState struct {
	mu   sync.Mutex
	data map[string][]byte
	txns int
}

func (m *memActorState) GetActorState(_ context.Context, in *dapr.GetActorStateRequest) (*dapr.GetActorStateResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &dapr.GetActorStateResponse{Data: m.data[in.ActorType+"/"+in.ActorID+"/"+in.KeyName]}, nil
}

func (m *memActorState) SaveStateTransactionally(_ context.Context, typ, id string, ops []*dapr.ActorStateOperation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.txns++
	for _, op := range ops {
		k := typ + "/" + id + "/" + op.Key
		switch op.OperationType {
		case "upsert":
			m.data[k] = op.Value
		case "delete":
			delete(m.data, k)
		default:
			return errors.New("unknown operation " + op.OperationType)
		}
	}
	return nil
}

func invoke(t *testing.T, a *Actor, method string, in, out any) error {
	t.Helper()
	body, _ := json.Marshal(in)
	reply, err := a.Invoke(t.Context(), DefaultID, method, body)
	if err == nil && out != nil {
		if err := json.Unmarshal(reply, out); err != nil {
			t.Fatalf("%s reply %s: %v", method, reply, err)
		}
	}
	return err
}

// The actor decodes each method's request, runs the queue, keeps its state in actor
// state (one transaction a call), and exports its depth.
func TestActorMethods(t *testing.T) {
	t.Parallel()
	state := &memActorState{data: map[string][]byte{}}
	pushes := make(chan []queue.Grant, 1)
	a := NewActor(slog.New(slog.NewTextHandler(io.Discard, nil)), state, func(_ context.Context, node string, gs []queue.Grant) ([]task.AttemptID, error) {
		pushes <- gs
		return nil, nil
	})
	first := task.Assignment{TaskID: uuid.New(), Attempt: 1, Priority: task.PriorityNormal}
	var er EnqueueReply
	if err := invoke(t, a, MethodEnqueue, EnqueueRequest{Assignments: []task.Assignment{first}}, &er); err != nil || er.Dispatched != 0 {
		t.Fatalf("enqueue = %+v, %v", er, err)
	}
	var sr queue.SyncReply
	if err := invoke(t, a, MethodSync, queue.SyncRequest{Node: "vm", Incarnation: "i", Free: []string{"vm-0", "vm-1"}}, &sr); err != nil ||
		len(sr.Given) != 1 || sr.Given[0].Assignment.TaskID != first.TaskID {
		t.Fatalf("sync = %+v, %v", sr, err)
	}
	second := task.Assignment{TaskID: uuid.New(), Attempt: 1, Priority: task.PriorityNormal}
	if err := invoke(t, a, MethodEnqueue, EnqueueRequest{Assignments: []task.Assignment{second}}, &er); err != nil || er.Dispatched != 1 {
		t.Fatalf("enqueue to the idle slot = %+v, %v", er, err)
	}
	select { // pushed after the call, outside the actor's turn
	case pushed := <-pushes:
		if len(pushed) != 1 || pushed[0].Slot != "vm-1" || pushed[0].Assignment.TaskID != second.TaskID {
			t.Fatalf("pushed %+v, want the second task to vm-1", pushed)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing pushed to the idle slot")
	}
	var snap queue.Snapshot
	if err := invoke(t, a, MethodSnapshot, nil, &snap); err != nil || snap.Leased != 2 || snap.Idle != 0 {
		t.Fatalf("snapshot = %+v, %v", snap, err)
	}
	if state.txns != 3 {
		t.Errorf("%d state transactions for 3 writing calls", state.txns)
	}
	// Cancelling the second task releases its lease.
	var cr queue.CancelReply
	if err := invoke(t, a, MethodCancel, CancelRequest{Tasks: []uuid.UUID{second.TaskID}}, &cr); err != nil || len(cr.Leased) != 1 || cr.Leased[0] != second.ID() {
		t.Fatalf("cancel = %+v, %v", cr, err)
	}
	// A new actor over the same state (the actor moved) sees the same queue.
	moved := NewActor(slog.New(slog.NewTextHandler(io.Discard, nil)), state, nil)
	var d queue.Depth
	if err := invoke(t, moved, MethodDepth, nil, &d); err != nil || d.Leased != 1 {
		t.Fatalf("depth on a new host = %+v, %v", d, err)
	}
	// Metrics: the depth of the queue hosted here.
	reg := prometheus.NewRegistry()
	reg.MustRegister(a)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	if got := strings.Join(names, " "); !strings.Contains(got, "taskgrid_queue_leased") || !strings.Contains(got, "taskgrid_queue_depth") {
		t.Errorf("metrics %s", got)
	}
	// The backstop reminder sweeps; another reminder is cancelled.
	if cancel, err := a.Remind(t.Context(), DefaultID, SweepReminder, nil); cancel || err != nil {
		t.Errorf("sweep reminder = %v, %v", cancel, err)
	}
	if cancel, _ := a.Remind(t.Context(), DefaultID, "stray", nil); !cancel {
		t.Error("a stray reminder is not cancelled")
	}
}

func TestActorRefusals(t *testing.T) {
	t.Parallel()
	a := NewActor(slog.New(slog.NewTextHandler(io.Discard, nil)), &memActorState{data: map[string][]byte{}}, nil)
	for _, tt := range []struct {
		method string
		body   string
		want   error
	}{
		{MethodEnqueue, `{`, queue.ErrBadRequest},
		{MethodCancel, `{"tasks":["x"]}`, queue.ErrBadRequest},
		{MethodSync, `{"node":1}`, queue.ErrBadRequest},
		{MethodSync, `{"node":"vm"}`, queue.ErrBadRequest},
		{MethodEnqueue, `{"assignments":[{"task_id":"` + uuid.NewString() + `","attempt":1,"priority":"soon"}]}`, queue.ErrBadRequest},
		{"retire", `{}`, actorhost.ErrMethodNotFound},
	} {
		if _, err := a.Invoke(t.Context(), DefaultID, tt.method, []byte(tt.body)); !errors.Is(err, tt.want) {
			t.Errorf("%s %s = %v, want %v", tt.method, tt.body, err, tt.want)
		}
	}
}

// heldActorState is memActorState whose first transaction waits until release is
// closed (a write slow to land), telling saving when it has begun.
type heldActorState struct {
	memActorState
	saves           atomic.Int32
	saving, release chan struct{}
}

func (h *heldActorState) SaveStateTransactionally(ctx context.Context, typ, id string, ops []*dapr.ActorStateOperation) error {
	if h.saves.Add(1) == 1 {
		close(h.saving)
		<-h.release
	}
	return h.memActorState.SaveStateTransactionally(ctx, typ, id, ops)
}

// A sidecar deactivates an actor without waiting for its call in flight (daprd v1.18
// halts every actor when it loses placement: it cancels the call's context, then calls
// the app's deactivation at once). The turn still running in the app must end before
// the next activation's first turn reads the state: otherwise that turn works from the
// state before the old turn's write, and writes its entry on the key the old turn
// wrote, losing a task.
func TestActorTurnOutlivesDeactivation(t *testing.T) {
	t.Parallel()
	state := &heldActorState{memActorState: memActorState{data: map[string][]byte{}}, saving: make(chan struct{}), release: make(chan struct{})}
	a := NewActor(slog.New(slog.NewTextHandler(io.Discard, nil)), state, func(context.Context, string, []queue.Grant) ([]task.AttemptID, error) {
		return nil, nil
	})
	enqueue := func(id uuid.UUID) <-chan error {
		done := make(chan error, 1)
		go func() {
			body, _ := json.Marshal(EnqueueRequest{Assignments: []task.Assignment{{TaskID: id, Attempt: 1, Priority: task.PriorityNormal}}})
			_, err := a.Invoke(context.Background(), DefaultID, MethodEnqueue, body)
			done <- err
		}()
		return done
	}
	first := enqueue(uuid.New())
	<-state.saving // the first turn's write is on its way
	a.Deactivate(t.Context(), DefaultID)
	second := enqueue(uuid.New())
	var secondErr error
	ended := false
	select {
	case secondErr = <-second:
		ended = true
		t.Errorf("the next activation's turn ended (%v) while the deactivated one was still writing", secondErr)
	case <-time.After(100 * time.Millisecond):
	}
	close(state.release)
	if err := <-first; err != nil {
		t.Fatalf("first enqueue: %v", err)
	}
	if !ended {
		secondErr = <-second
	}
	if secondErr != nil {
		t.Fatalf("second enqueue: %v", secondErr)
	}
	a.Deactivate(t.Context(), DefaultID) // read what the store holds
	var d queue.Depth
	if err := invoke(t, a, MethodDepth, nil, &d); err != nil || d.Normal != 2 {
		t.Fatalf("depth = %+v, %v; want both tasks waiting", d, err)
	}
}

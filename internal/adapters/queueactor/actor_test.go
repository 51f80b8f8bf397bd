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

// refusingActorState is memActorState whose sidecar no longer has the actor active: it
// refuses writes, as daprd does (ErrActorInstanceMissing), while refuse is set.
type refusingActorState struct {
	memActorState
	refuse atomic.Bool
}

func (r *refusingActorState) SaveStateTransactionally(ctx context.Context, typ, id string, ops []*dapr.ActorStateOperation) error {
	if r.refuse.Load() {
		return errors.New("rpc error: code = Internal desc = actor instance is missing")
	}
	return r.memActorState.SaveStateTransactionally(ctx, typ, id, ops)
}

// An enqueue goes to the queue in this process only while the sidecar has the actor
// active here: from the first call it delivers until it deactivates the actor, or until
// a call made here fails (the sidecar refused its write); then the sidecar's path
// again, until it delivers a call. Each call made here takes a turn and is counted.
func TestEnqueueHere(t *testing.T) {
	t.Parallel()
	state := &refusingActorState{memActorState: memActorState{data: map[string][]byte{}}}
	a := NewActor(slog.New(slog.NewTextHandler(io.Discard, nil)), state, nil)
	one := func() []task.Assignment {
		return []task.Assignment{{TaskID: uuid.New(), Attempt: 1, Priority: task.PriorityNormal}}
	}
	here := func(step string, wantHosted, wantErr bool) {
		t.Helper()
		_, hosted, err := a.EnqueueHere(t.Context(), DefaultID, one())
		if hosted != wantHosted || (err != nil) != wantErr {
			t.Fatalf("%s: EnqueueHere hosted %v, error %v; want hosted %v, error %v", step, hosted, err, wantHosted, wantErr)
		}
	}
	depth := func() uint64 {
		t.Helper()
		var d queue.Depth
		if err := invoke(t, a, MethodDepth, nil, &d); err != nil {
			t.Fatal(err)
		}
		return d.Normal
	}

	here("before the sidecar delivered a call", false, false)
	if n := depth(); n != 0 { // the sidecar delivers its first call
		t.Fatalf("depth %d, want 0", n)
	}
	here("once the sidecar delivered a call", true, false)
	here("again", true, false)
	if n := depth(); n != 2 {
		t.Fatalf("depth %d after two enqueues here, want 2", n)
	}
	a.Deactivate(t.Context(), DefaultID)
	here("after the sidecar deactivated the actor", false, false)
	if n := depth(); n != 2 { // delivered again: active here once more
		t.Fatalf("depth %d, want 2", n)
	}
	state.refuse.Store(true) // the actor moved away without a deactivation seen yet
	here("while the sidecar refuses its writes", true, true)
	here("after a call here failed", false, false)
	state.refuse.Store(false)
	if n := depth(); n != 2 {
		t.Fatalf("depth %d: the refused enqueue changed the queue", n)
	}
	here("once the sidecar delivered a call again", true, false)

	reg := prometheus.NewRegistry()
	reg.MustRegister(a)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var calls float64
	for _, f := range families {
		if f.GetName() == "taskgrid_queue_enqueues_here_total" {
			calls = f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if calls != 4 {
		t.Errorf("taskgrid_queue_enqueues_here_total = %v, want 4 (the calls that took a turn here)", calls)
	}
}

// The client goes to the queue in this process when it is active here, and through the
// sidecar otherwise.
func TestClientEnqueueHere(t *testing.T) {
	t.Parallel()
	state := &memActorState{data: map[string][]byte{}}
	a := NewActor(slog.New(slog.NewTextHandler(io.Discard, nil)), state, nil)
	sidecar := &countingInvoker{a: a}
	c := Client{Invoker: sidecar, Here: a}
	as := []task.Assignment{{TaskID: uuid.New(), Attempt: 1, Priority: task.PriorityNormal}}
	if _, err := c.Enqueue(t.Context(), as...); err != nil || sidecar.calls != 1 {
		t.Fatalf("first enqueue: %v, %d sidecar calls; want it through the sidecar", err, sidecar.calls)
	}
	if _, err := c.Enqueue(t.Context(), as[0]); err != nil || sidecar.calls != 1 {
		t.Fatalf("second enqueue: %v, %d sidecar calls; want it here", err, sidecar.calls)
	}
}

// countingInvoker is a sidecar that delivers actor calls to a in this process.
type countingInvoker struct {
	a     *Actor
	calls int
}

func (c *countingInvoker) InvokeActor(ctx context.Context, in *dapr.InvokeActorRequest) (*dapr.InvokeActorResponse, error) {
	c.calls++
	out, err := c.a.Invoke(ctx, in.ActorID, in.Method, in.Data)
	if err != nil {
		return nil, err
	}
	return &dapr.InvokeActorResponse{Data: out}, nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/task"
)

// fakeSlots answers the watchdog's check calls.
type fakeSlots struct {
	reply func(in *dapr.InvokeActorRequest) (*dapr.InvokeActorResponse, error)
	calls []*dapr.InvokeActorRequest
}

func (f *fakeSlots) InvokeActor(_ context.Context, in *dapr.InvokeActorRequest) (*dapr.InvokeActorResponse, error) {
	f.calls = append(f.calls, in)
	return f.reply(in)
}

type fakeRecoverer struct {
	err       error
	recovered []task.Assignment
	reasons   []string
}

func (f *fakeRecoverer) Recover(_ context.Context, a task.Assignment, reason string) error {
	f.recovered = append(f.recovered, a)
	f.reasons = append(f.reasons, reason)
	return f.err
}

func answer(running bool) func(*dapr.InvokeActorRequest) (*dapr.InvokeActorResponse, error) {
	return func(*dapr.InvokeActorRequest) (*dapr.InvokeActorResponse, error) {
		data, _ := json.Marshal(CheckReply{Running: running})
		return &dapr.InvokeActorResponse{Data: data}, nil
	}
}

func fail(err error) func(*dapr.InvokeActorRequest) (*dapr.InvokeActorResponse, error) {
	return func(*dapr.InvokeActorRequest) (*dapr.InvokeActorResponse, error) { return nil, err }
}

func TestWatchdogRemind(t *testing.T) {
	t.Parallel()
	a := task.Assignment{TaskID: uuid.New(), Attempt: 2, Priority: task.PriorityHigh}
	data, _ := json.Marshal(a)
	noAddr := errors.New("rpc error: code = FailedPrecondition desc = did not find address for actor 'Worker.node-1/node-1-0'")
	refused := errors.New(`rpc error: code = Internal desc = error invoke actor method: Put "http://127.0.0.1:32865/actors/Worker.node-1/node-1-0/method/check": dial tcp 127.0.0.1:32865: connect: connection refused`)
	timeout := errors.New("rpc error: code = DeadlineExceeded desc = context deadline exceeded")

	tests := []struct {
		name        string
		data        []byte
		reply       func(*dapr.InvokeActorRequest) (*dapr.InvokeActorResponse, error)
		recoverErr  error
		fires       int // fires before the checked one, with the same reply
		wantCancel  bool
		wantErr     bool
		wantRecover string // reason mentions this; "" = no recovery
	}{
		{name: "attempt running: keep watching", data: data, reply: answer(true)},
		{name: "slot alive, attempt gone: re-queue", data: data, reply: answer(false), wantCancel: true, wantRecover: "process lost"},
		{name: "node gone: re-queue at once", data: data, reply: fail(noAddr), wantCancel: true, wantRecover: "node lost"},
		{name: "app gone, sidecar alive: re-queue at once", data: data, reply: fail(refused), wantCancel: true, wantRecover: "process lost"},
		{name: "node unreachable once: wait", data: data, reply: fail(timeout)},
		{name: "node unreachable too often: re-queue", data: data, reply: fail(timeout), fires: unreachableLimit - 1, wantCancel: true, wantRecover: "unreachable"},
		{name: "re-queue fails: fire again", data: data, reply: answer(false), recoverErr: errors.New("redis down"), wantErr: true, wantRecover: "process lost"},
		{name: "reminder without attempt: dropped", data: []byte(`{}`), reply: answer(false), wantCancel: true},

		{name: "reminder with garbage: dropped", data: []byte(`nope`), reply: answer(false), wantCancel: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			slots := &fakeSlots{reply: tt.reply}
			rec := &fakeRecoverer{err: tt.recoverErr}
			rem := &fakeReminders{}
			w := NewWatchdogActor(slog.New(slog.NewTextHandler(io.Discard, nil)), slots, rem, rec)
			name := watchName(a)
			for range tt.fires {
				if cancel, err := w.Remind(t.Context(), "node-1-0", name, tt.data); cancel || err != nil {
					t.Fatalf("earlier fire: cancel=%v err=%v", cancel, err)
				}
			}
			cancel, err := w.Remind(t.Context(), "node-1-0", name, tt.data)
			if cancel != tt.wantCancel || (err != nil) != tt.wantErr {
				t.Fatalf("Remind = %v, %v; want cancel=%v, error=%v", cancel, err, tt.wantCancel, tt.wantErr)
			}
			// A cancelled watchdog removes its reminder itself (daprd keeps it otherwise).
			if removed := len(rem.unregistered) == 1 && rem.unregistered[0].Name == name && rem.unregistered[0].ActorID == "node-1-0" && rem.unregistered[0].ActorType == "Watchdog"; removed != tt.wantCancel {
				t.Fatalf("reminders removed: %+v; want the fired one removed = %v", rem.unregistered, tt.wantCancel)
			}
			if tt.wantRecover == "" {
				if len(rec.recovered) != 0 {
					t.Fatalf("recovered %v, want nothing", rec.recovered)
				}
				return
			}
			if len(rec.recovered) != 1 || rec.recovered[0] != a || !strings.Contains(rec.reasons[0], tt.wantRecover) {
				t.Fatalf("recovered %v (%q), want %v for %q", rec.recovered, rec.reasons, a, tt.wantRecover)
			}
			last := slots.calls[len(slots.calls)-1]
			if last.ActorType != "Worker.node-1" || last.ActorID != "node-1-0" || last.Method != MethodCheck {
				t.Fatalf("checked %s/%s.%s, want Worker.node-1/node-1-0.check", last.ActorType, last.ActorID, last.Method)
			}
		})
	}
}

// A reachable slot resets the count of failed checks.
func TestWatchdogUnreachableCountResets(t *testing.T) {
	t.Parallel()
	a := task.Assignment{TaskID: uuid.New(), Attempt: 1}
	data, _ := json.Marshal(a)
	slots := &fakeSlots{}
	rec := &fakeRecoverer{}
	w := NewWatchdogActor(slog.New(slog.NewTextHandler(io.Discard, nil)), slots, &fakeReminders{}, rec)
	for i := range 3 * unreachableLimit {
		if i%unreachableLimit == unreachableLimit-1 {
			slots.reply = answer(true)
		} else {
			slots.reply = fail(errors.New("timeout"))
		}
		if cancel, err := w.Remind(t.Context(), "n-0", watchName(a), data); cancel || err != nil {
			t.Fatalf("fire %d: cancel=%v err=%v", i, cancel, err)
		}
	}
	if len(rec.recovered) != 0 {
		t.Fatalf("recovered %v although the slot answered every %d fires", rec.recovered, unreachableLimit)
	}
}

type fakeReminders struct {
	err          error
	registered   []*dapr.RegisterActorReminderRequest
	unregistered []*dapr.UnregisterActorReminderRequest
}

func (f *fakeReminders) RegisterActorReminder(_ context.Context, in *dapr.RegisterActorReminderRequest) error {
	f.registered = append(f.registered, in)
	return f.err
}

func (f *fakeReminders) UnregisterActorReminder(_ context.Context, in *dapr.UnregisterActorReminderRequest) error {
	f.unregistered = append(f.unregistered, in)
	return nil
}

// The slot refuses what it must not run, before arming any watchdog.
func TestSlotRunRefuses(t *testing.T) {
	t.Parallel()
	busyWith := task.Assignment{TaskID: uuid.New(), Attempt: 1}
	other := task.Assignment{TaskID: uuid.New(), Attempt: 1}
	delivering := task.Assignment{TaskID: uuid.New(), Attempt: 2} // done on node-1, result on its way
	tests := []struct {
		name     string
		slot     string
		a        task.Assignment
		draining bool
		armErr   error
		want     error // nil: accepted without starting anything new
		wantArm  bool
	}{
		{name: "slot of another node", slot: "other-0", a: other, want: ErrNotThisNode},
		{name: "busy with another attempt", slot: "node-0", a: other, want: ErrBusy},
		{name: "the same dispatch again", slot: "node-0", a: busyWith},
		{name: "the same dispatch again, its result on its way", slot: "node-1", a: delivering},
		{name: "draining", slot: "node-1", a: other, draining: true, want: ErrNotAccepting},
		{name: "watchdog cannot be armed", slot: "node-1", a: other, armErr: errors.New("scheduler down"), wantArm: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			runner := &Runner{running: map[string]task.Assignment{"node-0": busyWith}, draining: tt.draining,
				delivering: map[attemptKey]struct{}{keyOf(delivering): {}}}
			rem := &fakeReminders{err: tt.armErr}
			s := NewSlotActor(slog.New(slog.NewTextHandler(io.Discard, nil)), []string{"node-0", "node-1"}, runner, rem, "")
			body, _ := json.Marshal(tt.a)
			_, err := s.Invoke(t.Context(), tt.slot, MethodRun, body)
			switch {
			case tt.armErr != nil:
				if err == nil || !strings.Contains(err.Error(), "arm watchdog") {
					t.Fatalf("run = %v, want the arming error", err)
				}
			case !errors.Is(err, tt.want) || (tt.want == nil && err != nil):
				t.Fatalf("run = %v, want %v", err, tt.want)
			}
			if armed := len(rem.registered) > 0; armed != tt.wantArm {
				t.Fatalf("watchdog armed = %v, want %v", armed, tt.wantArm)
			}
			if tt.wantArm {
				r := rem.registered[0]
				var got task.Assignment
				if err := json.Unmarshal(r.Data, &got); err != nil || got != tt.a || r.ActorType != "Watchdog" || r.ActorID != tt.slot || r.Name != watchName(tt.a) || r.Period != WatchdogPeriodDefault {
					t.Fatalf("reminder %+v carries %+v (%v), want the attempt on Watchdog/%s every %s", r, got, err, tt.slot, WatchdogPeriodDefault)
				}
			}
			if n := len(runner.running); n != 1 {
				t.Fatalf("runner has %d attempts, want only the one it had", n)
			}
		})
	}
}

// check answers from the runner's memory.
func TestSlotCheck(t *testing.T) {
	t.Parallel()
	a := task.Assignment{TaskID: uuid.New(), Attempt: 3}
	stored := task.Assignment{TaskID: uuid.New(), Attempt: 1} // computed; its result on its way
	runner := &Runner{running: map[string]task.Assignment{"node-0": a}, delivering: map[attemptKey]struct{}{keyOf(stored): {}}}
	s := NewSlotActor(slog.New(slog.NewTextHandler(io.Discard, nil)), []string{"node-0", "node-1"}, runner, &fakeReminders{}, "")
	for _, tt := range []struct {
		slot string
		a    task.Assignment
		want bool
	}{
		{"node-0", a, true},
		{"node-0", task.Assignment{TaskID: a.TaskID, Attempt: 2}, false},
		{"node-1", a, false},
		{"node-1", stored, true}, // its slot runs something else now; the watchdog must wait for the store
		{"node-1", task.Assignment{TaskID: stored.TaskID, Attempt: 2}, false},
	} {
		body, _ := json.Marshal(tt.a)
		out, err := s.Invoke(t.Context(), tt.slot, MethodCheck, body)
		var reply CheckReply
		if err != nil || json.Unmarshal(out, &reply) != nil || reply.Running != tt.want {
			t.Errorf("check %s %s = %s, %v; want running=%v", tt.slot, tt.a, out, err, tt.want)
		}
	}
}

// Each attempt has its own watchdog: a slot's next attempt cannot overwrite the
// watchdog of one that was lost.
func TestWatchNameIsPerAttempt(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	names := map[string]bool{}
	for _, a := range []task.Assignment{{TaskID: id, Attempt: 1}, {TaskID: id, Attempt: 2}, {TaskID: uuid.New(), Attempt: 1}} {
		n := watchName(a)
		if names[n] || !strings.HasPrefix(n, watchPrefix) {
			t.Fatalf("watchName(%s) = %q: repeated or without the prefix", a, n)
		}
		names[n] = true
	}
}

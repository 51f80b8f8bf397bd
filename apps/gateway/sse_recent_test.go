package main

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/domain/task"
)

func TestRecentViewsApply(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 1, 0, 0, 1, 0, time.UTC)
	loc := &task.Location{Directory: "out", Path: "out/x.json"}
	ev := func(kind string, attempt int) Update {
		return updateFromEvent(events.Event{Kind: kind, Attempt: attempt, Priority: task.PriorityNormal, Time: at, Result: loc, Progress: 0.5, Error: "boom"})
	}
	tests := []struct {
		name         string
		updates      []Update
		wantStatus   task.Status
		wantAttempts int
		wantProgress float64
	}{
		{"nothing yet", nil, task.StatusPending, 0, 0},
		{"started", []Update{ev(events.KindStarted, 1)}, task.StatusRunning, 1, 0},
		{"progress", []Update{ev(events.KindStarted, 1), ev(events.KindProgress, 1)}, task.StatusRunning, 1, 0.5},
		{"completed", []Update{ev(events.KindStarted, 1), ev(events.KindCompleted, 1)}, task.StatusCompleted, 1, 1},
		{"terminal stays: a late start changes nothing", []Update{ev(events.KindCompleted, 1), ev(events.KindStarted, 1)}, task.StatusCompleted, 1, 1},
		{"accepted after the start is older", []Update{ev(events.KindStarted, 1), ev(events.KindAccepted, 0)}, task.StatusRunning, 1, 0},
		{"retried", []Update{ev(events.KindStarted, 1), ev(events.KindAttemptFailed, 1)}, task.StatusPending, 1, 0},
		{"the first attempt's start after the second's", []Update{ev(events.KindStarted, 2), ev(events.KindStarted, 1), ev(events.KindAttemptFailed, 1)}, task.StatusRunning, 2, 0},
		{"failed for good", []Update{ev(events.KindStarted, 1), ev(events.KindFailed, 1)}, task.StatusFailed, 1, 0},
		{"cancelled", []Update{ev(events.KindStarted, 1), ev(events.KindCancelled, 1)}, task.StatusCancelled, 1, 0},
		{"cancelled stays: a late completion changes nothing", []Update{ev(events.KindCancelled, 1), ev(events.KindCompleted, 1)}, task.StatusCancelled, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRecentViews(4)
			rec := pendingRecord()
			r.put(newTaskView(rec))
			for _, u := range tt.updates {
				u.TaskID = rec.ID
				r.apply(u)
			}
			v, ok := r.get(rec.ID)
			if !ok {
				t.Fatal("view forgotten")
			}
			if v.Status != tt.wantStatus || v.Attempts != tt.wantAttempts || v.Progress != tt.wantProgress {
				t.Errorf("view: status %s, attempts %d, progress %v; want %s, %d, %v", v.Status, v.Attempts, v.Progress, tt.wantStatus, tt.wantAttempts, tt.wantProgress)
			}
			if v.Directory != rec.Directory || !v.CreatedAt.Equal(rec.CreatedAt) {
				t.Errorf("view lost the record's fields: %+v", v)
			}
		})
	}
}

func TestRecentViewsBounded(t *testing.T) {
	t.Parallel()
	r := newRecentViews(3)
	var ids []uuid.UUID
	for range 5 {
		rec := pendingRecord()
		ids = append(ids, rec.ID)
		r.put(newTaskView(rec))
	}
	for i, id := range ids {
		if _, ok := r.get(id); ok != (i >= 2) {
			t.Errorf("view %d kept = %v; want only the last 3 kept", i, ok)
		}
	}
	if len(r.views) != 3 {
		t.Errorf("%d views held, want 3", len(r.views))
	}
	r.drop(ids[4])
	if _, ok := r.get(ids[4]); ok {
		t.Error("a dropped view is still there")
	}
	// An update of a task not remembered adds nothing.
	one := 1
	r.apply(Update{TaskID: uuid.New(), Kind: UpdateStatus, Patch: viewPatch{Status: task.StatusRunning, Attempts: &one}})
	if len(r.views) != 2 {
		t.Errorf("%d views held after an update of an unknown task, want 2", len(r.views))
	}
}

// submitOne submits a task through the API and returns its id.
func submitOne(t *testing.T, env *testEnv) uuid.UUID {
	t.Helper()
	resp := env.serve(newSubmit(validBody, "application/json"))
	if resp.Code != http.StatusAccepted {
		t.Fatalf("submit: %d %s", resp.Code, resp.Body)
	}
	v, _ := decodeView(t, resp.Body.Bytes())
	return uuid.MustParse(v.ID)
}

// A stream of a task this gateway accepted starts from the hub's view, with every update
// published since the submit, and reads no record.
func TestEventsStartFromRememberedView(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, &APIConfig{HeartbeatInterval: time.Hour})
	srv := sseServer(t, env)
	id := submitOne(t, env)
	startedAt := time.Date(2030, 1, 1, 0, 0, 1, 0, time.UTC)
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindStarted, TaskID: id, Attempt: 1, Priority: task.PriorityNormal, Time: startedAt}))

	c := openEvents(t, srv, id)
	first := c.nextEvent(t)
	if v := eventView(t, first); first.Event != "status" || v.Status != "running" || v.Directory != "results/run-1" ||
		v.StartedAt == nil || !v.StartedAt.Equal(startedAt) {
		t.Fatalf("first event %s: want the running view, with the submitted directory", first)
	}
	loc := &task.Location{Directory: "results/run-1", Path: "results/run-1/" + id.String() + ".json"}
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindCompleted, TaskID: id, Attempt: 1, Time: startedAt.Add(time.Second), Result: loc}))
	if done := c.nextEvent(t); done.Event != "completed" || eventView(t, done).Result == nil {
		t.Fatalf("second event %s, want completed with the result", done)
	}
	c.expectEnd(t)
	if n := env.backend.getCalls(); n != 0 {
		t.Errorf("the stream read the record %d times; want none (the hub knew the task)", n)
	}

	// A task the hub does not know is read from the record, as before.
	other := pendingRecord()
	env.backend.put(other)
	c2 := openEvents(t, srv, other.ID)
	if f := c2.nextEvent(t); eventView(t, f).ID != other.ID.String() {
		t.Fatalf("first event %s, want the other task's record", f)
	}
	if n := env.backend.getCalls(); n != 1 {
		t.Errorf("record read %d times, want 1 (the task the hub does not know)", n)
	}
}

// If the feed lost a task's completion, a stream started from the hub's view finds it
// in the record at its recheckAfter-th heartbeat.
func TestEventsRememberedViewRechecked(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, &APIConfig{HeartbeatInterval: 10 * time.Millisecond})
	srv := sseServer(t, env)
	id := submitOne(t, env)
	c := openEvents(t, srv, id)
	if f := c.nextEvent(t); eventView(t, f).Status != "pending" {
		t.Fatalf("first event %s, want pending", f)
	}
	rec, err := env.backend.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	rec.Status, rec.Attempts, rec.StartedAt, rec.FinishedAt = task.StatusCompleted, 1, &now, &now
	rec.Result = &task.Location{Directory: rec.Directory, Path: rec.Directory + "/" + id.String() + ".json"}
	env.backend.put(rec) // completed, and no update published
	deadline := time.Now().Add(5 * time.Second)
	pings := 0
	for {
		f, ok := c.next(t)
		if !ok {
			t.Fatal("stream ended without the completion")
		}
		if time.Now().After(deadline) {
			t.Fatal("no completion within 5 s of heartbeats")
		}
		if f.Comment != "" {
			pings++
			continue
		}
		if pings != recheckAfter {
			t.Errorf("the record was checked after %d heartbeats, want %d", pings, recheckAfter)
		}
		if f.Event != "completed" || eventView(t, f).Result == nil {
			t.Fatalf("event %s, want completed from the record", f)
		}
		break
	}
	c.expectEnd(t)
}

// A submission that failed leaves no view behind.
func TestSubmitFailureForgetsView(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil)
	env.backend.submitErr = errors.Join(ErrUnavailable, errors.New("queue down"))
	if resp := env.serve(newSubmit(validBody, "application/json")); resp.Code != http.StatusServiceUnavailable {
		t.Fatalf("submit: %d, want 503", resp.Code)
	}
	calls := env.backend.submitCalls()
	if len(calls) != 1 {
		t.Fatalf("%d submit calls", len(calls))
	}
	env.hub.mu.Lock()
	_, kept := env.hub.recent.get(calls[0].rec.ID)
	env.hub.mu.Unlock()
	if kept {
		t.Error("the hub kept the view of a task whose submission failed")
	}
}

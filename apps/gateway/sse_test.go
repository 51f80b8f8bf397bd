package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// sseFrame is one Server-Sent Event, or one comment (Comment set, the rest empty).
type sseFrame struct {
	ID      string
	Event   string
	Data    string
	Comment string
}

func (f sseFrame) String() string {
	if f.Comment != "" {
		return ": " + f.Comment
	}
	return fmt.Sprintf("{id %s, event %s, data %s}", f.ID, f.Event, f.Data)
}

// sseClient reads one event stream. Its frames channel is closed at the end of the stream.
type sseClient struct {
	resp   *http.Response
	frames chan sseFrame
	cancel context.CancelFunc
}

// sseServer serves env's API over HTTP.
func sseServer(t *testing.T, env *testEnv) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(env.handler)
	// Cleanups run last-in first-out: the hub closes (ending open streams) before the
	// server waits for its handlers.
	t.Cleanup(srv.Close)
	t.Cleanup(env.hub.Close)
	return srv
}

// openEvents opens the event stream of task id, with extra headers (name, value pairs).
func openEvents(t *testing.T, srv *httptest.Server, id uuid.UUID, header ...string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/tasks/"+id.String()+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatalf("open event stream: %v", err)
	}
	c := &sseClient{resp: resp, frames: make(chan sseFrame, 1024), cancel: cancel}
	t.Cleanup(c.close)
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("event stream: status %d, want 200; body %s", resp.StatusCode, body)
	}
	for name, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache"} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("event stream: %s = %q, want %q", name, got, want)
		}
	}
	go c.read()
	return c
}

// close disconnects the client.
func (c *sseClient) close() {
	c.cancel()
	_ = c.resp.Body.Close()
}

// read parses the stream into frames (the subset of the SSE format the server writes).
func (c *sseClient) read() {
	defer close(c.frames)
	sc := bufio.NewScanner(c.resp.Body)
	var f sseFrame
	pending := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if pending {
				c.frames <- f
			}
			f, pending = sseFrame{}, false
		case strings.HasPrefix(line, ":"):
			c.frames <- sseFrame{Comment: strings.TrimSpace(strings.TrimPrefix(line, ":"))}
		default:
			name, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch name {
			case "id":
				f.ID = value
			case "event":
				f.Event = value
			case "data":
				if f.Data != "" {
					f.Data += "\n"
				}
				f.Data += value
			default:
				f.Event = "unexpected field " + name
			}
			pending = true
		}
	}
	if pending {
		c.frames <- sseFrame{Event: "incomplete frame at end of stream: " + f.String()}
	}
}

const frameTimeout = 5 * time.Second

// next returns the next frame, comments included; ok is false at the end of the stream.
func (c *sseClient) next(t *testing.T) (f sseFrame, ok bool) {
	t.Helper()
	select {
	case f, ok = <-c.frames:
		return f, ok
	case <-time.After(frameTimeout):
		t.Fatal("timed out waiting for an event")
		return f, false
	}
}

// nextEvent returns the next event, skipping comments, and fails at the end of the stream.
func (c *sseClient) nextEvent(t *testing.T) sseFrame {
	t.Helper()
	for {
		f, ok := c.next(t)
		if !ok {
			t.Fatal("stream ended, want another event")
		}
		if f.Comment == "" {
			return f
		}
	}
}

// expectEnd checks that the stream ends with no other event (comments aside).
func (c *sseClient) expectEnd(t *testing.T) {
	t.Helper()
	for {
		f, ok := c.next(t)
		if !ok {
			return
		}
		if f.Comment == "" {
			t.Fatalf("got event %s, want the end of the stream", f)
		}
	}
}

// eventView decodes the data of a status, completed or failed event.
func eventView(t *testing.T, f sseFrame) submittedView {
	t.Helper()
	var v submittedView
	if err := json.Unmarshal([]byte(f.Data), &v); err != nil {
		t.Fatalf("event %s: data is not a task view: %v", f, err)
	}
	return v
}

func eventProgress(t *testing.T, f sseFrame) float64 {
	t.Helper()
	var p map[string]float64
	if err := json.Unmarshal([]byte(f.Data), &p); err != nil || len(p) != 1 {
		t.Fatalf("event %s: data is not {\"progress\": x}: %v", f, err)
	}
	v, ok := p["progress"]
	if !ok {
		t.Fatalf("event %s: no progress", f)
	}
	return v
}

// eventID parses a frame's id, which must be a positive integer.
func eventID(t *testing.T, f sseFrame) int64 {
	t.Helper()
	id, err := strconv.ParseInt(f.ID, 10, 64)
	if err != nil || id <= 0 {
		t.Fatalf("event %s: id is not a positive integer", f)
	}
	return id
}

// checkIDsIncrease checks that the frames' ids strictly increase, after lastID.
func checkIDsIncrease(t *testing.T, lastID int64, frames ...sseFrame) int64 {
	t.Helper()
	for _, f := range frames {
		id := eventID(t, f)
		if id <= lastID {
			t.Errorf("event %s: id %d is not above the previous id %d", f, id, lastID)
		}
		lastID = id
	}
	return lastID
}

func pendingRecord() task.Record {
	return task.Record{
		ID: uuid.New(), Type: "sleep", Payload: json.RawMessage(`{"ms":100}`), Directory: "out/sse",
		Status: task.StatusPending, Priority: task.PriorityNormal, MaxAttempts: 5,
		CreatedAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

func TestEventsPendingTaskUntilCompleted(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil)
	srv := sseServer(t, env)
	rec := pendingRecord()
	env.backend.put(rec)
	other := pendingRecord()
	env.backend.put(other)

	c := openEvents(t, srv, rec.ID)
	first := c.nextEvent(t)
	if first.Event != "status" {
		t.Fatalf("first event %s, want status", first)
	}
	if v := eventView(t, first); v.ID != rec.ID.String() || v.Status != "pending" || v.Directory != rec.Directory ||
		v.Task != "sleep" || !v.CreatedAt.Equal(rec.CreatedAt) {
		t.Errorf("first event view %+v, want the pending record %+v", v, rec)
	}

	// The stream has subscribed (it subscribes before reading the record it sent).
	startedAt := time.Date(2030, 1, 1, 0, 0, 1, 0, time.UTC)
	finishedAt := startedAt.Add(2 * time.Second)
	loc := &task.Location{Directory: "out/sse", Path: "out/sse/" + rec.ID.String() + ".json", Bytes: 17, SHA256: strings.Repeat("0f", 32)}
	started := events.Event{Kind: events.KindStarted, TaskID: rec.ID, Attempt: 1, Priority: task.PriorityNormal, Time: startedAt}
	env.hub.Publish(updateFromEvent(started))
	env.hub.Publish(updateFromEvent(started)) // a duplicate (at-least-once delivery) changes nothing: no event
	env.hub.Publish(progressUpdate(other.ID, 0.9))
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindProgress, TaskID: rec.ID, Attempt: 1, Progress: 0.25}))
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindProgress, TaskID: rec.ID, Attempt: 1, Progress: 0.5}))
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindCompleted, TaskID: rec.ID, Attempt: 1, Priority: task.PriorityNormal, Time: finishedAt, Result: loc}))
	// Updates after the terminal one are never sent.
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindProgress, TaskID: rec.ID, Attempt: 1, Progress: 0.75}))

	running := c.nextEvent(t)
	p1, p2 := c.nextEvent(t), c.nextEvent(t)
	done := c.nextEvent(t)
	c.expectEnd(t)

	if running.Event != "status" {
		t.Fatalf("second event %s, want status (running)", running)
	}
	if v := eventView(t, running); v.Status != "running" || v.Attempts != 1 || v.StartedAt == nil || !v.StartedAt.Equal(startedAt) ||
		v.Directory != rec.Directory || !v.CreatedAt.Equal(rec.CreatedAt) {
		t.Errorf("running view %+v: want running, 1 attempt, started %s, and the record's directory and created_at", v, startedAt)
	}
	if p1.Event != "progress" || p2.Event != "progress" {
		t.Fatalf("events 3 and 4 are %s, %s; want progress (a duplicate status is skipped, another task's update is not sent)", p1, p2)
	}
	if got1, got2 := eventProgress(t, p1), eventProgress(t, p2); got1 != 0.25 || got2 != 0.5 {
		t.Errorf("progress %v, %v; want 0.25, 0.5", got1, got2)
	}
	if done.Event != "completed" {
		t.Fatalf("last event %s, want completed", done)
	}
	v := eventView(t, done)
	if v.Status != "completed" || v.Progress != 1 || v.FinishedAt == nil || !v.FinishedAt.Equal(finishedAt) ||
		v.Result == nil || v.Result.Path != loc.Path || v.Result.SHA256 != loc.SHA256 || v.StartedAt == nil {
		t.Errorf("completed view %+v: want completed, progress 1, finished %s, result %+v, started kept", v, finishedAt, loc)
	}
	checkIDsIncrease(t, 0, first, running, p1, p2, done)

	waitFor(t, "the hub to drop the stream's subscription", func() bool { return env.hub.Clients() == 0 })
	for event, want := range map[string]float64{"status": 2, "progress": 2, "completed": 1, "failed": 0} {
		if n, _ := env.metric(t, "taskgrid_sse_events_sent_total", "event", event); n != want {
			t.Errorf("sse_events_sent{event=%s} = %v, want %v", event, n, want)
		}
	}
}

func TestEventsFailedAfterRetry(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil)
	srv := sseServer(t, env)
	rec := pendingRecord()
	env.backend.put(rec)

	c := openEvents(t, srv, rec.ID)
	if f := c.nextEvent(t); f.Event != "status" {
		t.Fatalf("first event %s, want status", f)
	}
	t0 := time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC)
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindStarted, TaskID: rec.ID, Attempt: 1, Priority: task.PriorityNormal, Time: t0}))
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindProgress, TaskID: rec.ID, Attempt: 1, Progress: 0.3}))
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindAttemptFailed, TaskID: rec.ID, Attempt: 1, Priority: task.PriorityHigh, Time: t0.Add(time.Second), Error: "crash"}))
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindFailed, TaskID: rec.ID, Attempt: 2, Priority: task.PriorityHigh, Time: t0.Add(time.Minute), Error: "gave up"}))

	running, progress, retry, failed := c.nextEvent(t), c.nextEvent(t), c.nextEvent(t), c.nextEvent(t)
	c.expectEnd(t)
	if running.Event != "status" || eventView(t, running).Status != "running" {
		t.Errorf("event 2 %s, want status running", running)
	}
	if progress.Event != "progress" || eventProgress(t, progress) != 0.3 {
		t.Errorf("event 3 %s, want progress 0.3", progress)
	}
	// A failed attempt is silent: the task is pending again, at high priority, with no
	// start time, progress or error.
	if v := eventView(t, retry); retry.Event != "status" || v.Status != "pending" || v.Priority != "high" || v.Attempts != 1 ||
		v.StartedAt != nil || v.Progress != 0 || v.Error != "" {
		t.Errorf("event 4 %s: want status pending, high priority, 1 attempt, no start, progress or error", retry)
	}
	if v := eventView(t, failed); failed.Event != "failed" || v.Status != "failed" || v.Error != "gave up" || v.Attempts != 2 ||
		v.FinishedAt == nil || !v.FinishedAt.Equal(t0.Add(time.Minute)) || v.Result != nil {
		t.Errorf("last event %s: want failed with error %q, 2 attempts, finished_at", failed, "gave up")
	}
	checkIDsIncrease(t, 0, running, progress, retry, failed)
}

// A cancel ends the stream with one cancelled event; nothing after it is sent.
func TestEventsCancelled(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil)
	srv := sseServer(t, env)
	rec := pendingRecord()
	env.backend.put(rec)

	c := openEvents(t, srv, rec.ID)
	if f := c.nextEvent(t); f.Event != "status" {
		t.Fatalf("first event %s, want status", f)
	}
	t0 := time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC)
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindStarted, TaskID: rec.ID, Attempt: 1, Priority: task.PriorityNormal, Time: t0}))
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindCancelled, TaskID: rec.ID, Attempt: 1, Time: t0.Add(time.Second)}))
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindCompleted, TaskID: rec.ID, Attempt: 1, Time: t0.Add(2 * time.Second)}))

	running, cancelled := c.nextEvent(t), c.nextEvent(t)
	c.expectEnd(t)
	if running.Event != "status" || eventView(t, running).Status != "running" {
		t.Errorf("event 2 %s, want status running", running)
	}
	if v := eventView(t, cancelled); cancelled.Event != "cancelled" || v.Status != "cancelled" || v.FinishedAt == nil || !v.FinishedAt.Equal(t0.Add(time.Second)) || v.Result != nil {
		t.Errorf("last event %s: want cancelled with finished_at", cancelled)
	}
}

func TestEventsFinishedTaskEndsAtOnce(t *testing.T) {
	t.Parallel()
	finished := time.Date(2030, 3, 1, 0, 0, 0, 0, time.UTC)
	loc := &task.Location{Directory: "out/sse", Path: "out/sse/r.json", Bytes: 3, SHA256: strings.Repeat("aa", 32)}
	for _, tt := range []struct {
		status task.Status
		check  func(v submittedView) bool
	}{
		{task.StatusCompleted, func(v submittedView) bool { return v.Result != nil && v.Result.Path == loc.Path && v.Error == "" }},
		{task.StatusFailed, func(v submittedView) bool { return v.Result == nil && v.Error == "boom" }},
	} {
		t.Run(string(tt.status), func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t, &APIConfig{HeartbeatInterval: time.Hour})
			srv := sseServer(t, env)
			rec := pendingRecord()
			rec.Status, rec.Attempts, rec.StartedAt, rec.FinishedAt, rec.Progress = tt.status, 1, &finished, &finished, 1
			rec.Result, rec.Error = loc, "boom"
			env.backend.put(rec)

			c := openEvents(t, srv, rec.ID)
			status, final := c.nextEvent(t), c.nextEvent(t)
			c.expectEnd(t) // without any update, and long before a heartbeat
			if status.Event != "status" || final.Event != string(tt.status) {
				t.Fatalf("events %s, %s; want status, then %s", status, final, tt.status)
			}
			for _, f := range []sseFrame{status, final} {
				if v := eventView(t, f); v.ID != rec.ID.String() || v.Status != string(tt.status) || !tt.check(v) ||
					v.FinishedAt == nil || !v.FinishedAt.Equal(finished) {
					t.Errorf("event %s does not show the %s record", f, tt.status)
				}
			}
			checkIDsIncrease(t, 0, status, final)
			waitFor(t, "the hub to drop the subscription", func() bool { return env.hub.Clients() == 0 })
		})
	}
}

// TestEventsLastEventIDResume reconnects with Last-Event-ID: the new stream starts with
// the current status and does not replay events the client has seen.
func TestEventsLastEventIDResume(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil)
	srv := sseServer(t, env)
	rec := pendingRecord()
	env.backend.put(rec)

	c := openEvents(t, srv, rec.ID)
	first := c.nextEvent(t)
	startedAt := time.Date(2030, 4, 1, 0, 0, 0, 0, time.UTC)
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindStarted, TaskID: rec.ID, Attempt: 1, Priority: task.PriorityNormal, Time: startedAt}))
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindProgress, TaskID: rec.ID, Attempt: 1, Progress: 0.4}))
	running, progress := c.nextEvent(t), c.nextEvent(t)
	if running.Event != "status" || progress.Event != "progress" {
		t.Fatalf("events %s, %s; want status, progress", running, progress)
	}
	lastID := checkIDsIncrease(t, 0, first, running, progress)
	seen := map[string]bool{first.ID: true, running.ID: true, progress.ID: true}
	c.close()
	waitFor(t, "the first stream to end", func() bool { return env.hub.Clients() == 0 })

	// Meanwhile the record has moved on.
	stored := rec
	stored.Status, stored.Attempts, stored.StartedAt, stored.Progress = task.StatusRunning, 1, &startedAt, 0.6
	env.backend.put(stored)

	c2 := openEvents(t, srv, rec.ID, "Last-Event-ID", progress.ID)
	snapshot := c2.nextEvent(t)
	if v := eventView(t, snapshot); snapshot.Event != "status" || v.Status != "running" || v.Progress != 0.6 {
		t.Fatalf("resumed stream starts with %s, want a status snapshot of the running task at 0.6", snapshot)
	}
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindProgress, TaskID: rec.ID, Attempt: 1, Progress: 0.8}))
	env.hub.Publish(updateFromEvent(events.Event{Kind: events.KindCompleted, TaskID: rec.ID, Attempt: 1, Time: startedAt.Add(time.Second),
		Result: &task.Location{Directory: "out/sse", Path: "out/sse/x.json"}}))
	p, done := c2.nextEvent(t), c2.nextEvent(t)
	c2.expectEnd(t)
	if p.Event != "progress" || eventProgress(t, p) != 0.8 || done.Event != "completed" {
		t.Errorf("resumed stream events %s, %s; want progress 0.8, completed", p, done)
	}
	for _, f := range []sseFrame{snapshot, p, done} {
		if seen[f.ID] {
			t.Errorf("resumed stream repeats event id %s: %s", f.ID, f)
		}
	}
	// Ids are the server's clock, so they keep increasing across the reconnection too.
	checkIDsIncrease(t, lastID, snapshot, p, done)
}

func TestEventsHeartbeat(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, &APIConfig{HeartbeatInterval: 10 * time.Millisecond})
	srv := sseServer(t, env)
	rec := pendingRecord()
	env.backend.put(rec)

	c := openEvents(t, srv, rec.ID)
	if f := c.nextEvent(t); f.Event != "status" {
		t.Fatalf("first event %s, want status", f)
	}
	for i := range 3 {
		f, ok := c.next(t)
		if !ok || f.Comment != "ping" {
			t.Fatalf("frame %d after the snapshot: %s (open %v), want a ping comment", i, f, ok)
		}
	}
	// The stream is still alive: an update still gets through.
	env.hub.Publish(progressUpdate(rec.ID, 0.5))
	if f := c.nextEvent(t); f.Event != "progress" {
		t.Errorf("event after pings %s, want progress", f)
	}
}

func TestEventsNoHeartbeatWithinInterval(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, &APIConfig{HeartbeatInterval: time.Hour})
	srv := sseServer(t, env)
	rec := pendingRecord()
	env.backend.put(rec)
	c := openEvents(t, srv, rec.ID)
	c.nextEvent(t)
	select {
	case f := <-c.frames:
		t.Errorf("got %s within 200ms, want nothing before the 1h heartbeat", f)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestEventsProgressUpdates checks clamping, and that a progress update without a
// progress (or not a number) is skipped, not fatal.
func TestEventsProgressUpdates(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil)
	srv := sseServer(t, env)
	rec := pendingRecord()
	env.backend.put(rec)
	c := openEvents(t, srv, rec.ID)
	c.nextEvent(t)

	env.hub.Publish(progressUpdate(rec.ID, 1.5))
	env.hub.Publish(Update{TaskID: rec.ID, Kind: UpdateProgress}) // no progress: skipped
	env.hub.Publish(progressUpdate(rec.ID, math.NaN()))           // skipped
	env.hub.Publish(progressUpdate(rec.ID, -2))
	env.hub.Publish(progressUpdate(rec.ID, 0.125))
	env.hub.Publish(Update{TaskID: rec.ID, Kind: UpdateStatus, Patch: viewPatch{Status: task.StatusRunning}})
	env.hub.Publish(Update{TaskID: rec.ID, Kind: UpdateCompleted})

	var got []string
	for range 5 {
		f := c.nextEvent(t)
		got = append(got, f.Event+" "+f.Data)
		if f.Event == "status" || f.Event == "completed" {
			if v := eventView(t, f); v.ID != rec.ID.String() {
				t.Errorf("event %s: id %s, want the task's %s (an update cannot change it)", f, v.ID, rec.ID)
			}
		}
	}
	c.expectEnd(t)
	want := []string{`progress {"progress":1}`, `progress {"progress":0}`, `progress {"progress":0.125}`}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("event %d = %s, want %s", i, got[i], w)
		}
	}
	if !strings.HasPrefix(got[3], `status {`) || !strings.Contains(got[3], `"status":"running"`) {
		t.Errorf("event 3 = %s, want status running", got[3])
	}
	if !strings.HasPrefix(got[4], `completed {`) || !strings.Contains(got[4], `"status":"completed"`) {
		t.Errorf("event 4 = %s, want completed", got[4])
	}
}

func TestEventsClientMetric(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil)
	srv := sseServer(t, env)
	rec := pendingRecord()
	env.backend.put(rec)
	gauge := func() float64 {
		n, ok := env.metric(t, "taskgrid_sse_clients")
		if !ok {
			t.Fatal("no taskgrid_sse_clients metric")
		}
		return n
	}
	if n := gauge(); n != 0 {
		t.Fatalf("sse_clients = %v before any stream, want 0", n)
	}
	c1 := openEvents(t, srv, rec.ID)
	c1.nextEvent(t)
	c2 := openEvents(t, srv, rec.ID)
	c2.nextEvent(t)
	if n, clients := gauge(), env.hub.Clients(); n != 2 || clients != 2 {
		t.Fatalf("with two streams: sse_clients = %v, hub clients = %d; want 2, 2", n, clients)
	}
	c1.close()
	waitFor(t, "sse_clients to drop to 1", func() bool { return gauge() == 1 })
	waitFor(t, "hub clients to drop to 1", func() bool { return env.hub.Clients() == 1 })

	// The other stream is unaffected.
	env.hub.Publish(progressUpdate(rec.ID, 0.5))
	if f := c2.nextEvent(t); f.Event != "progress" {
		t.Errorf("remaining stream got %s, want progress", f)
	}
	reason := "x"
	env.hub.Publish(Update{TaskID: rec.ID, Kind: UpdateFailed, Patch: viewPatch{Error: &reason}})
	if f := c2.nextEvent(t); f.Event != "failed" {
		t.Errorf("remaining stream got %s, want failed", f)
	}
	c2.expectEnd(t)
	waitFor(t, "sse_clients to drop to 0", func() bool { return gauge() == 0 })
	waitFor(t, "hub clients to drop to 0", func() bool { return env.hub.Clients() == 0 })
}

func TestEventsHubCloseEndsStreams(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil)
	srv := sseServer(t, env)
	rec1, rec2 := pendingRecord(), pendingRecord()
	env.backend.put(rec1)
	env.backend.put(rec2)
	c1, c2 := openEvents(t, srv, rec1.ID), openEvents(t, srv, rec2.ID)
	c1.nextEvent(t)
	c2.nextEvent(t)

	closed := make(chan struct{})
	go func() {
		env.hub.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(frameTimeout):
		t.Fatal("hub Close did not return")
	}
	c1.expectEnd(t)
	c2.expectEnd(t)
	waitFor(t, "sse_clients to drop to 0", func() bool { n, _ := env.metric(t, "taskgrid_sse_clients"); return n == 0 })
	if n := env.hub.Clients(); n != 0 {
		t.Errorf("hub clients after Close = %d, want 0", n)
	}

	// A stream opened after Close gets its snapshot and ends.
	c3 := openEvents(t, srv, rec1.ID)
	if f := c3.nextEvent(t); f.Event != "status" {
		t.Errorf("stream after Close: %s, want the status snapshot", f)
	}
	c3.expectEnd(t)
}

// flushCounter is a response writer that counts flushes (writes that reach the client).
type flushCounter struct {
	*httptest.ResponseRecorder
	flushes int
}

func (f *flushCounter) Flush() { f.flushes++; f.ResponseRecorder.Flush() }

// Updates that wait together (a start and a completion come in one delivery) go to the
// client in one write: every event is sent, in order, and when the last is terminal
// none is flushed on its own: the end of the response, which follows at once, carries
// them (one write instead of two).
func TestEventsWaitingUpdatesOneFlush(t *testing.T) {
	t.Parallel()
	rec := pendingRecord()
	w := &flushCounter{ResponseRecorder: httptest.NewRecorder()}
	s := &eventStream{w: w, rc: http.NewResponseController(w), logger: slog.New(slog.DiscardHandler),
		metrics: NewMetrics(prometheus.NewRegistry()), view: newTaskView(rec)}
	updates := make(chan Update, 3)
	at := time.Date(2030, 1, 1, 0, 0, 1, 0, time.UTC)
	updates <- updateFromEvent(events.Event{Kind: events.KindStarted, TaskID: rec.ID, Attempt: 1, Priority: task.PriorityNormal, Time: at})
	updates <- updateFromEvent(events.Event{Kind: events.KindProgress, TaskID: rec.ID, Attempt: 1, Progress: 0.5})
	updates <- updateFromEvent(events.Event{Kind: events.KindCompleted, TaskID: rec.ID, Attempt: 1, Priority: task.PriorityNormal, Time: at.Add(time.Second),
		Result: &task.Location{Directory: "out/sse", Path: "out/sse/" + rec.ID.String() + ".json", Bytes: 2, SHA256: strings.Repeat("0f", 32)}})
	if err := s.run(t.Context(), updates, time.Hour); err != nil {
		t.Fatalf("run = %v, want the stream to end at the completion", err)
	}
	var kinds []string
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if k, ok := strings.CutPrefix(line, "event: "); ok {
			kinds = append(kinds, k)
		}
	}
	if want := []string{"status", "status", "progress", "completed"}; !slices.Equal(kinds, want) || w.flushes != 1 {
		t.Errorf("events %v in %d flushes, want %v in 1 (the first view; the three waiting updates end the response)", kinds, w.flushes, want)
	}
}

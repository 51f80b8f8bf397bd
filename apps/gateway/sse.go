package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/platform/steps"
)

// errHubClosed ends the streams when the server shuts down.
var errHubClosed = errors.New("sse hub closed")

// handleEvents streams a task's life as Server-Sent Events:
//
//	event: status     data: the task view; first on every stream, then on each status change
//	event: progress   data: {"progress":0.42}
//	event: completed  data: the task view with its result location; last event
//	event: failed     data: the task view with its error; last event
//
// plus a ": ping" comment every HeartbeatInterval. Every stream has exactly one terminal
// event (completed or failed), then the server ends it; an unknown task is answered 404
// before the stream starts.
//
// Each event's id is the server's clock in Unix nanoseconds when it was sent, increasing
// within a stream. A reconnecting client's Last-Event-ID is accepted but nothing is
// replayed: progress is a level, not a log, so the status snapshot every stream starts
// with is all a reconnecting client needs.
func (a *API) handleEvents(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, err := parseTaskID(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	// A stream counts against the caps (StreamLimits) from here, before it costs a read.
	release, err := a.hub.Streams().Acquire(streamClient(r))
	if err != nil {
		a.writeStreamRefusal(w, r, err)
		return
	}
	defer release()
	// Subscribe before reading the record, so that no update falls between the two. A
	// task this gateway accepted lately needs no read: the hub keeps its view current.
	updates, cancel, view, remembered := a.hub.SubscribeView(id)
	defer cancel()
	if !remembered {
		rec, err := a.backend.Get(ctx, id)
		if err != nil {
			a.writeError(w, r, fmt.Errorf("get task %s: %w", id, err))
			return
		}
		view = newTaskView(rec)
	}
	if !a.visible(ctx, view.Owner) {
		a.writeError(w, r, fmt.Errorf("stream task %s of another key: %w", id, ErrNotFound))
		return
	}

	a.metrics.sseClientOpened()
	defer a.metrics.sseClientClosed()
	// A stream lasts as long as its task, past the server's write timeout: it lifts it,
	// and bounds each write instead (streamWriteTimeout). (The read timeout does not
	// reach it: once the request is read, net/http watches for the client's close with
	// no deadline.) A writer without deadlines (a test recorder) has none to lift.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	a.logger.DebugContext(ctx, "event stream started", "task_id", id, "last_event_id", r.Header.Get("Last-Event-ID"))
	s := &eventStream{w: w, rc: rc, logger: a.logger, metrics: a.metrics, view: view}
	if remembered {
		// The view came from the feed alone: check it against the record once, after
		// recheckAfter heartbeats, in case the feed lost an update of this task (its
		// sidecar restarted: the new one reads from the newest event on).
		s.recheck = func(ctx context.Context) (taskView, error) {
			rec, err := a.backend.Get(ctx, id)
			return newTaskView(rec), err
		}
	}
	err = s.run(ctx, updates, a.cfg.HeartbeatInterval)
	if err == nil && s.view.Status == task.StatusCompleted {
		steps.Mark(id, steps.Notified)
	}
	a.logger.DebugContext(ctx, "event stream ended", "task_id", id, "events", s.sent, "reason", endReason(err))
}

// endReason describes why a stream ended, for the log.
func endReason(err error) string {
	if err == nil {
		return "terminal event sent"
	}
	return err.Error()
}

// eventStream writes one task's events to one client.
type eventStream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	logger  *slog.Logger
	metrics *Metrics

	view     taskView // what the client has been told so far
	lastView []byte   // the last view sent, to skip repeated status updates
	lastID   int64
	sent     int

	// recheck, when set, reads the task's record; run calls it once, at the
	// recheckAfter-th heartbeat, and ends the stream if the record is terminal.
	recheck func(ctx context.Context) (taskView, error)
	beats   int // heartbeats sent
}

// streamWriteTimeout bounds each write of an event stream (an event or a heartbeat, and
// its flush): a client that stops reading, its connection's buffers full, is dropped
// then rather than held for as long as the task runs.
const streamWriteTimeout = 30 * time.Second

// recheckAfter is how many heartbeats a stream started from the hub's view waits before
// it checks the record: long enough that a task waiting in a busy queue does not cost a
// read per stream, short enough that a lost update is found within a minute (with the
// default 15 s heartbeat).
const recheckAfter = 4

// run sends the snapshot, then the updates, until a terminal event is sent (nil), the
// client goes away, a write fails or the hub closes.
//
// The terminal event is not flushed by itself: the handler returns right after it, and
// net/http writes what is buffered together with the end of the response, one write
// where a flush first would make two (and two wake-ups of the client).
func (s *eventStream) run(ctx context.Context, updates <-chan Update, heartbeat time.Duration) error {
	if err := s.sendView(UpdateStatus, s.view); err != nil {
		return err
	}
	if s.view.Status.Terminal() {
		return s.sendView(string(s.view.Status), s.view)
	}
	if err := s.flush(); err != nil {
		return err
	}
	ticker := time.NewTicker(heartbeat)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-ticker.C:
			if err := s.ping(); err != nil {
				return err
			}
			if done, err := s.checkRecord(ctx); err != nil || done {
				return err
			}
		case u, ok := <-updates:
			if !ok {
				return errHubClosed
			}
			done, err := s.applyWaiting(ctx, u, updates)
			if err != nil || done {
				return err
			}
		}
	}
}

// applyWaiting applies u and the updates that wait behind it (a start and a completion
// often arrive together), then flushes them in one write; after a terminal event it
// leaves them to the end of the response (see run).
func (s *eventStream) applyWaiting(ctx context.Context, u Update, updates <-chan Update) (done bool, err error) {
	for {
		if done, err = s.apply(ctx, u); err != nil {
			return done, s.flushAfter(err)
		}
		if done {
			return true, nil
		}
		var ok bool
		select {
		case u, ok = <-updates:
			if !ok {
				return false, errors.Join(s.flush(), errHubClosed)
			}
		default:
			return false, s.flush()
		}
	}
}

// checkRecord runs recheck once, if set, at the recheckAfter-th heartbeat: a terminal
// record is sent as the terminal event. A failed read is logged and the stream goes on.
func (s *eventStream) checkRecord(ctx context.Context) (done bool, err error) {
	s.beats++
	if s.recheck == nil || s.beats < recheckAfter {
		return false, nil
	}
	v, rerr := s.recheck(ctx)
	s.recheck = nil
	if rerr != nil {
		s.logger.WarnContext(ctx, "could not check the stream's view against the record", "task_id", s.view.ID, "error", rerr)
		return false, nil
	}
	if !v.Status.Terminal() {
		return false, nil
	}
	return true, s.sendView(string(v.Status), v) // flushed with the end of the response (see run)
}

// apply sends the event for u, if any, and reports whether it was the terminal one.
func (s *eventStream) apply(ctx context.Context, u Update) (done bool, err error) {
	if u.Kind == UpdateProgress {
		p, ok := progressOf(u)
		if !ok {
			s.logger.WarnContext(ctx, "progress update without a progress ignored", "task_id", s.view.ID)
			return false, nil
		}
		s.view.Progress = p
		data, err := json.Marshal(map[string]float64{"progress": s.view.Progress})
		if err != nil {
			return false, fmt.Errorf("encode progress: %w", err)
		}
		return false, s.send(UpdateProgress, data)
	}
	next := mergeView(s.view, u)
	if next.Status.Terminal() {
		return true, s.sendView(string(next.Status), next)
	}
	return false, s.sendView(UpdateStatus, next)
}

// progressOf is the progress a progress update carries, clamped to [0,1].
func progressOf(u Update) (float64, bool) {
	p := u.Patch.Progress
	if p == nil || math.IsNaN(*p) {
		return 0, false
	}
	return min(max(*p, 0), 1), true
}

// mergeView returns v with the fields u.Patch sets set over it. The status of a terminal
// update is its kind. What v points to is not changed: a patch's pointers are copied.
func mergeView(v taskView, u Update) taskView {
	p := u.Patch
	if p.Attempts != nil {
		v.Attempts = *p.Attempts
	}
	if p.Priority != "" {
		v.Priority = p.Priority
	}
	if p.Status != "" {
		v.Status = p.Status
	}
	if p.Progress != nil {
		v.Progress = *p.Progress
	}
	if p.StartedAt != nil {
		v.StartedAt = clonePtr(p.StartedAt)
	}
	if p.FinishedAt != nil {
		v.FinishedAt = clonePtr(p.FinishedAt)
	}
	if p.Worker != "" {
		v.Worker = p.Worker
	}
	if p.Result != nil {
		v.Result = clonePtr(p.Result)
	}
	if p.Error != nil {
		v.Error = *p.Error
	}
	switch u.Kind {
	case UpdateCompleted:
		v.Status = task.StatusCompleted
	case UpdateFailed:
		v.Status = task.StatusFailed
	case UpdateCancelled:
		v.Status = task.StatusCancelled
	}
	return v.sanitized()
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

// sendView sends v as event, and remembers it as what the client knows. A status event
// that would repeat the last view sent is skipped.
func (s *eventStream) sendView(event string, v taskView) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode task view: %w", err)
	}
	if event == UpdateStatus && bytes.Equal(data, s.lastView) {
		return nil
	}
	s.view, s.lastView = v, data
	return s.send(event, data)
}

// send writes one event; flush sends it to the client. data must be one line (compact
// JSON).
func (s *eventStream) send(event string, data []byte) error {
	now := time.Now()
	s.lastID = max(now.UnixNano(), s.lastID+1)
	_ = s.rc.SetWriteDeadline(now.Add(streamWriteTimeout))
	if _, err := fmt.Fprintf(s.w, "id: %d\nevent: %s\ndata: %s\n\n", s.lastID, event, data); err != nil {
		return fmt.Errorf("write %s event: %w", event, err)
	}
	s.sent++
	s.metrics.sseEventSent(event)
	return nil
}

// flush sends what was written.
func (s *eventStream) flush() error {
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("flush events: %w", err)
	}
	return nil
}

// flushAfter flushes what was written before err, which it returns (or the flush's).
func (s *eventStream) flushAfter(err error) error {
	if ferr := s.flush(); err == nil {
		return ferr
	}
	return err
}

// ping writes a heartbeat comment.
func (s *eventStream) ping() error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := s.w.Write([]byte(": ping\n\n")); err != nil {
		return fmt.Errorf("write heartbeat: %w", err)
	}
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("flush heartbeat: %w", err)
	}
	return nil
}

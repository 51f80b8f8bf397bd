package task

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The task state machine. Every change of a task record goes through one of these pure
// functions: each takes the stored record and what happened, and returns the new record
// and the lifecycle events the change emits, or an error saying why the change is
// refused (a late delivery, a duplicate, a step out of order). Apps store the record and
// publish the events; none changes a record by hand.
//
//	          Accept           Start                Complete
//	  (none) ───────▶ pending ───────▶ running ─────────────▶ completed
//	                     ▲                │ Fail (attempts left): silent, high priority
//	                     └────────────────┘
//	                    Fail or Start past MaxAttempts ─────────▶ failed
//	  pending or running ── Cancel (the user) ──────────────────▶ cancelled
//
// Completed, failed and cancelled are terminal: no step leaves them. Of a cancel and a
// completion that race, whichever is written first wins (each is a conditional write of
// the record): a completion after a cancel is refused (ErrStale; the result is not
// reported), a cancel after a completion is refused (ErrFinished).

// Refusals of a transition.
var (
	// ErrStale: the step belongs to an attempt the task has moved past (a duplicate
	// dispatch, a late report of an attempt that was re-queued, a step after the end).
	ErrStale = errors.New("stale step: the task has moved on")
	// ErrNoChange: the step was taken already (a repeat); nothing to store, but the
	// events may be published again (their ids are the same).
	ErrNoChange = errors.New("no change: step already taken")
	// ErrExhausted: the attempt to start is past the task's MaxAttempts (the last one
	// was lost); Start returns the task failed for good instead.
	ErrExhausted = errors.New("attempts exhausted")
	// ErrFinished: a cancel of a task that has ended already (completed, failed or
	// cancelled); nothing changes.
	ErrFinished = errors.New("task has finished")
)

// Worker names a worker slot as "<node>/<slot>" (the Worker field of records and events).
type Worker struct {
	Node string
	Slot string
}

func (w Worker) String() string {
	if w.Node == "" && w.Slot == "" {
		return ""
	}
	return w.Node + "/" + w.Slot
}

// ParseWorker reads a Worker from its String form.
func ParseWorker(s string) (Worker, error) {
	node, slot, ok := strings.Cut(s, "/")
	if !ok || node == "" || slot == "" {
		return Worker{}, fmt.Errorf("worker %q is not <node>/<slot>", s)
	}
	return Worker{Node: node, Slot: slot}, nil
}

// EventID is the one scheme of lifecycle event ids: deterministic, so a step published
// twice is recognisably the same event. A completion has one id per task whatever the
// attempt (a task completes once), and so has a cancellation; the others name the
// attempt.
func EventID(id uuid.UUID, kind string, attempt int) string {
	if kind == EventCompleted || kind == EventCancelled {
		return id.String() + ":" + kind
	}
	return id.String() + ":" + kind + ":" + strconv.Itoa(attempt)
}

func event(kind string, rec Record, now time.Time) Event {
	return Event{
		ID: EventID(rec.ID, kind, rec.Attempts), Version: EventVersion, Kind: kind, Time: now.UTC(),
		TaskID: rec.ID, Type: rec.Type, Attempt: rec.Attempts, Priority: rec.Priority,
		Worker: rec.Worker, StartedAt: rec.StartedAt,
	}
}

// Accept makes the record of a new task: pending, normal priority, no attempt yet.
func Accept(rec Record, now time.Time) (Record, Event) {
	rec.Status, rec.Priority, rec.Attempts, rec.Progress = StatusPending, PriorityNormal, 0, 0
	rec.CreatedAt = now.UTC()
	if rec.MaxAttempts < 1 {
		rec.MaxAttempts = MaxAttemptsDefault
	}
	return rec, Accepted(rec)
}

// Accepted is the accepted event of the task of rec, as Accept made it: the same id and
// fields whatever became of the task since. A task's first start (Start, also inside
// StartAndComplete) and a cancel before any start carry it again, ahead of their own
// event: its gateway publishes it a while after the task was accepted (out of the way of
// the task's first steps) and may die before it does, so the first step that follows
// publishes it too; consumers drop the repeat by its id.
func Accepted(rec Record) Event {
	rec.Status, rec.Priority, rec.Attempts, rec.Progress = StatusPending, PriorityNormal, 0, 0
	rec.Worker, rec.StartedAt = "", nil
	return event(EventAccepted, rec, rec.CreatedAt)
}

// withAcceptance puts the accepted event of rec ahead of evs when rec has had no attempt
// start yet: the step that evs come from is the first since the task was accepted.
func withAcceptance(rec Record, evs ...Event) []Event {
	if rec.Attempts > 0 {
		return evs
	}
	return append([]Event{Accepted(rec)}, evs...)
}

// Start records attempt a as running on w. A duplicate dispatch of an attempt that has
// started already, or of a task that ended, is ErrStale. An attempt past MaxAttempts
// (the previous, last one was lost) fails the task for good: the record and its failed
// event are returned with ErrExhausted.
func Start(rec Record, a Assignment, w Worker, now time.Time) (Record, []Event, error) {
	if rec.Status.Terminal() || rec.Attempts >= a.Attempt {
		return rec, nil, fmt.Errorf("start %s: %w (record: %s, attempt %d)", a, ErrStale, rec.Status, rec.Attempts)
	}
	now = now.UTC()
	first := rec
	if a.Attempt > rec.MaxAttempts {
		rec.Attempts = a.Attempt - 1
		rec = failForGood(rec, fmt.Sprintf("failed after %d attempts; last: worker lost", rec.Attempts), now)
		return rec, withAcceptance(first, failedEvent(rec, now)), ErrExhausted
	}
	rec.Status, rec.Attempts, rec.Priority = StatusRunning, a.Attempt, a.Priority
	rec.Worker, rec.StartedAt, rec.Progress, rec.Error = w.String(), &now, 0, ""
	if !a.Enqueued.IsZero() {
		q := a.Enqueued
		rec.QueuedAt = &q
	}
	if !a.Dispatched.IsZero() {
		d := a.Dispatched
		rec.DispatchedAt = &d
	}
	return rec, withAcceptance(first, event(EventStarted, rec, now)), nil
}

// Progress is the event of a running attempt's progress f (0..1). Its id names the
// level, so repeats of one level are one event.
func Progress(rec Record, f float64, now time.Time) Event {
	e := event(EventProgress, rec, now)
	e.Progress = f
	e.ID = fmt.Sprintf("%s:%.3f", e.ID, f)
	return e
}

// Fail records that attempt a failed in the task code with reason. With attempts left
// the task is pending again at high priority (requeue: the caller queues attempt+1, and
// the user is not told: the only event is attempt_failed); otherwise it fails for good
// and the user gets its failed event. A report of an attempt the task has moved past is
// ErrStale; a repeat of this very report is ErrNoChange (with requeue still reported,
// so a caller that crashed before queuing the next attempt queues it now).
func Fail(rec Record, a Assignment, reason string, now time.Time) (next Record, evs []Event, requeue bool, err error) {
	now = now.UTC()
	switch {
	case rec.Status.Terminal() || rec.Attempts > a.Attempt:
		return rec, nil, false, fmt.Errorf("fail %s: %w", a, ErrStale)
	case rec.Attempts == a.Attempt && rec.Status == StatusPending:
		return rec, nil, true, fmt.Errorf("fail %s: %w", a, ErrNoChange)
	}
	rec.Attempts = a.Attempt
	failed := event(EventAttemptFailed, rec, now)
	failed.Error = reason
	if a.Attempt >= rec.MaxAttempts {
		rec = failForGood(rec, fmt.Sprintf("failed after %d attempts; last: %s", a.Attempt, reason), now)
		return rec, []Event{failed, failedEvent(rec, now)}, false, nil
	}
	rec.Status, rec.Priority, rec.Progress = StatusPending, PriorityHigh, 0
	return rec, []Event{failed}, true, nil
}

// Retry is the assignment of the attempt after a (high priority), for a task that Fail
// put back to pending or that the queue found lost.
func Retry(a Assignment) Assignment {
	return Assignment{TaskID: a.TaskID, Attempt: a.Attempt + 1, Priority: PriorityHigh, Spec: a.Spec}
}

// Complete records the task completed with its result stored at loc by attempt (first
// result wins). A task completed already returns ErrNoChange with its completion event,
// to be published again (same id: consumers see one completion); a task that failed for
// good keeps failing (ErrStale, no event: the result stays on disk only).
func Complete(rec Record, attempt int, loc Location, w string, now time.Time) (Record, []Event, error) {
	now = now.UTC()
	switch rec.Status {
	case StatusCompleted:
		return rec, []Event{completedEvent(rec, *rec.FinishedAt, w)}, fmt.Errorf("complete %s: %w", rec.ID, ErrNoChange)
	case StatusFailed:
		return rec, nil, fmt.Errorf("complete %s: %w (failed for good)", rec.ID, ErrStale)
	case StatusCancelled:
		return rec, nil, fmt.Errorf("complete %s: %w (cancelled)", rec.ID, ErrStale)
	}
	rec.Status, rec.Result, rec.FinishedAt, rec.Progress, rec.Error = StatusCompleted, &loc, &now, 1, ""
	if attempt > rec.Attempts {
		rec.Attempts = attempt
	}
	return rec, []Event{completedEvent(rec, now, w)}, nil
}

// Cancel ends a pending or running task as cancelled, at the user's request. A task that
// has ended (completed, failed, or cancelled before) is refused with ErrFinished and
// returned unchanged; for a task cancelled before, the events are its cancellation again
// (same ids), so a caller that crashed before publishing them may publish them now. A
// cancel before any attempt started carries the task's accepted event too (Accepted).
func Cancel(rec Record, now time.Time) (Record, []Event, error) {
	if rec.Status.Terminal() {
		var evs []Event
		if rec.Status == StatusCancelled && rec.FinishedAt != nil {
			evs = withAcceptance(rec, event(EventCancelled, rec, *rec.FinishedAt))
		}
		return rec, evs, fmt.Errorf("cancel %s: %w (%s)", rec.ID, ErrFinished, rec.Status)
	}
	now = now.UTC()
	rec.Status, rec.FinishedAt, rec.Error = StatusCancelled, &now, ""
	return rec, withAcceptance(rec, event(EventCancelled, rec, now)), nil
}

func completedEvent(rec Record, at time.Time, w string) Event {
	e := event(EventCompleted, rec, at)
	e.Result = rec.Result
	if w != "" {
		e.Worker = w
	}
	return e
}

func failForGood(rec Record, reason string, now time.Time) Record {
	rec.Status, rec.Error, rec.FinishedAt = StatusFailed, reason, &now
	return rec
}

func failedEvent(rec Record, now time.Time) Event {
	e := event(EventFailed, rec, now)
	e.Error = rec.Error
	return e
}

// SlotName names slot i of node: "<node>-<i>".
func SlotName(node string, i int) string { return node + "-" + strconv.Itoa(i) }

// SlotNode returns the node of a slot name made by SlotName.
func SlotNode(slot string) (string, error) {
	i := strings.LastIndexByte(slot, '-')
	if i <= 0 {
		return "", fmt.Errorf("slot %q is not <node>-<number>", slot)
	}
	if _, err := strconv.ParseUint(slot[i+1:], 10, 16); err != nil {
		return "", fmt.Errorf("slot %q is not <node>-<number>", slot)
	}
	return slot[:i], nil
}

// ValidNode reports whether node can name a worker node: 1 to 100 letters, digits, '-',
// '_' or '.', starting with a letter or digit (it becomes part of an actor type name and
// of URL paths).
func ValidNode(node string) bool {
	if node == "" || len(node) > 100 || node[0] == '-' || node[0] == '.' || node[0] == '_' {
		return false
	}
	for _, c := range node {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// StartAndComplete records attempt a's start and its result at once, for an attempt that
// was done computing before its start was recorded (a short task: the worker saves a
// write). If the start is refused (the task moved on, or a was past MaxAttempts), the
// result is recorded as a late result would be. It returns the started event (when the
// start was recorded) and the completion event, as Start and Complete do.
func StartAndComplete(rec Record, a Assignment, w Worker, startedAt time.Time, loc Location, now time.Time) (Record, []Event, error) {
	started, evs, err := Start(rec, a, w, startedAt)
	if err != nil {
		started, evs = rec, nil
	}
	done, cevs, err := Complete(started, a.Attempt, loc, w.String(), now)
	if err != nil && !errors.Is(err, ErrNoChange) {
		return done, nil, err
	}
	return done, append(evs, cevs...), err
}

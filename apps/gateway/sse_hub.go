package main

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// Kinds of Update. Each is also the name of the Server-Sent Event it produces.
const (
	UpdateStatus    = "status"    // the task's status changed (e.g. pending → running)
	UpdateProgress  = "progress"  // the running attempt advanced
	UpdateCompleted = "completed" // terminal: the result is stored
	UpdateFailed    = "failed"    // terminal: the task failed for good
	UpdateCancelled = "cancelled" // terminal: the task was cancelled by its user
)

// Update is one change of a task, for the streams that watch it: Patch holds the fields
// of the task's view that it sets (for UpdateProgress, only Progress, a fraction in
// [0,1]). Each stream merges it into the view it has sent so far (mergeView), so a
// partial view (built from a lifecycle event, which lacks e.g. created_at) is enough. For
// UpdateCompleted, UpdateFailed and UpdateCancelled the status is implied by Kind;
// completed should carry Result (the Location) and failed Error.
type Update struct {
	TaskID uuid.UUID
	Kind   string
	Patch  viewPatch
}

// viewPatch is the part of a task's view an update sets: each field that is not nil (or
// not empty) replaces the view's.
type viewPatch struct {
	Attempts   *int
	Priority   task.Priority
	Status     task.Status
	Progress   *float64
	StartedAt  *time.Time
	FinishedAt *time.Time
	Worker     string
	Result     *task.Location
	Error      *string
}

// terminal reports whether u ends a stream.
func (u Update) terminal() bool {
	return u.Kind == UpdateCompleted || u.Kind == UpdateFailed || u.Kind == UpdateCancelled
}

func validUpdateKind(kind string) bool {
	switch kind {
	case UpdateStatus, UpdateProgress, UpdateCompleted, UpdateFailed, UpdateCancelled:
		return true
	}
	return false
}

// SubscriberBufferSize is how many updates a subscriber that does not keep up can fall
// behind before the hub drops some.
const SubscriberBufferSize = 64

// SSEHub fans task updates out to the event streams that watch each task. It is safe for
// concurrent use.
//
// Publish never blocks: each subscriber has a buffer of SubscriberBufferSize updates.
// When a slow subscriber's buffer is full, the hub drops the oldest progress update in it
// (progress is a level: a later value supersedes it). A completed or failed update is
// never dropped: if the buffer holds no progress update, a new progress update is dropped
// instead, or, for a terminal update, the oldest status update. Once a subscriber has a
// terminal update queued, later updates for it are dropped, so duplicates of the terminal
// update (the bus delivers at least once) never reach it.
//
// The hub also keeps the views of the tasks this gateway accepted most recently
// (RecentViews of them), kept current by every update it publishes: a stream opened on
// one of them starts from that view instead of reading the record from the state store
// (a sidecar call per stream, most streams being opened right after the submit).
type SSEHub struct {
	logger *slog.Logger

	mu     sync.Mutex
	subs   map[uuid.UUID]map[*subscriber]struct{}
	count  int
	closed bool
	recent recentViews

	streams *StreamLimiter // caps the event streams (see Streams)
}

// RecentViews is how many views of recently accepted tasks the hub keeps.
const RecentViews = 32_768

// NewSSEHub returns an empty hub.
func NewSSEHub(logger *slog.Logger) *SSEHub {
	return &SSEHub{
		logger: logger.With("component", "sse_hub"), subs: map[uuid.UUID]map[*subscriber]struct{}{},
		recent: newRecentViews(RecentViews), streams: NewStreamLimiter(DefaultStreamLimits()),
	}
}

// Streams returns the limiter of the event streams of this hub's subscribers: set its
// limits (SetLimits) and register it (a prometheus.Collector) when the gateway starts.
func (h *SSEHub) Streams() *StreamLimiter { return h.streams }

// Remember keeps v, the view of a task being accepted, for the streams that will watch
// it. Call it before the task can have any update (before it is queued): an update the
// hub publishes before it remembers the view is not applied to it.
func (h *SSEHub) Remember(v taskView) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recent.put(v)
}

// Forget drops the view of task id (its submission failed).
func (h *SSEHub) Forget(id uuid.UUID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recent.drop(id)
}

// Publish queues u for every subscriber of u.TaskID, without blocking. Updates of an
// unknown kind are ignored.
func (h *SSEHub) Publish(u Update) {
	if !validUpdateKind(u.Kind) || u.TaskID == uuid.Nil {
		h.logger.WarnContext(context.Background(), "update ignored", "task_id", u.TaskID, "kind", u.Kind)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recent.apply(u)
	for s := range h.subs[u.TaskID] {
		if dropped, ok := s.push(u); ok {
			h.logger.DebugContext(context.Background(), "slow stream: update dropped", "task_id", u.TaskID, "kind", dropped.Kind)
		}
	}
}

// Subscribe returns a channel of taskID's updates, in publish order, and a cancel func
// that ends the subscription. The channel is closed after cancel is called or the hub is
// closed; a subscription to a closed hub gets a closed channel. cancel may be called more
// than once; it returns once the subscription's goroutine has ended.
func (h *SSEHub) Subscribe(taskID uuid.UUID) (ch <-chan Update, cancel func()) {
	ch, cancel, _, _ = h.SubscribeView(taskID)
	return ch, cancel
}

// SubscribeView is Subscribe, and also returns the task's view if the hub remembers it
// (ok): the view holds every update published before the subscription, and the channel
// every one after it.
func (h *SSEHub) SubscribeView(taskID uuid.UUID) (ch <-chan Update, cancel func(), view taskView, ok bool) {
	s := newSubscriber()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		close(s.out)
		return s.out, func() {}, taskView{}, false
	}
	view, ok = h.recent.get(taskID)
	if h.subs[taskID] == nil {
		h.subs[taskID] = map[*subscriber]struct{}{}
	}
	h.subs[taskID][s] = struct{}{}
	h.count++
	h.mu.Unlock()

	go s.run()
	return s.out, func() {
		h.remove(taskID, s)
		<-s.exited
	}, view, ok
}

// recentViews is a bounded map of task views; the oldest is dropped when it is full.
// Not safe for concurrent use (the hub's lock guards it).
type recentViews struct {
	views map[uuid.UUID]taskView
	order []uuid.UUID // a ring: order[next] is the oldest once the ring is full
	next  int
}

func newRecentViews(n int) recentViews {
	return recentViews{views: make(map[uuid.UUID]taskView, n), order: make([]uuid.UUID, 0, n)}
}

func (r *recentViews) put(v taskView) {
	if _, ok := r.views[v.ID]; ok {
		r.views[v.ID] = v
		return
	}
	if len(r.order) < cap(r.order) {
		r.order = append(r.order, v.ID)
	} else {
		delete(r.views, r.order[r.next])
		r.order[r.next] = v.ID
		r.next = (r.next + 1) % len(r.order)
	}
	r.views[v.ID] = v
}

// drop forgets id's view; its slot in the ring stays until it comes round.
func (r *recentViews) drop(id uuid.UUID) { delete(r.views, id) }

func (r *recentViews) get(id uuid.UUID) (taskView, bool) {
	v, ok := r.views[id]
	return v, ok
}

// apply merges u into the view of its task, if remembered. A terminal view stays as it
// is (a duplicate or a late update of a finished task), and so does a view whose
// attempt is later than u's (a task's events come from several publishers, so an
// earlier step may arrive after a later one: a start after the next attempt's).
func (r *recentViews) apply(u Update) {
	v, ok := r.views[u.TaskID]
	if !ok || v.Status.Terminal() {
		return
	}
	if u.Kind == UpdateProgress {
		if p, ok := progressOf(u); ok {
			v.Progress = p
			r.views[u.TaskID] = v
		}
		return
	}
	// An update without attempts keeps the view's, so only an earlier attempt's update
	// has fewer.
	if next := mergeView(v, u); next.Attempts >= v.Attempts {
		r.views[u.TaskID] = next
	}
}

func (h *SSEHub) remove(taskID uuid.UUID, s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[taskID][s]; !ok {
		return // cancelled before, or the hub is closed
	}
	delete(h.subs[taskID], s)
	if len(h.subs[taskID]) == 0 {
		delete(h.subs, taskID)
	}
	h.count--
	close(s.done)
}

// Clients returns the number of current subscriptions.
func (h *SSEHub) Clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count
}

// Close ends every subscription (so every event stream ends) and refuses new ones. Queued
// updates are discarded. It returns once every subscription's goroutine has ended. Call it
// when the HTTP server shuts down (http.Server.RegisterOnShutdown), or the shutdown waits
// for the streams.
func (h *SSEHub) Close() {
	h.mu.Lock()
	var ended []*subscriber
	for _, set := range h.subs {
		for s := range set {
			close(s.done)
			ended = append(ended, s)
		}
	}
	h.subs, h.count, h.closed = map[uuid.UUID]map[*subscriber]struct{}{}, 0, true
	h.mu.Unlock()
	for _, s := range ended {
		<-s.exited
	}
}

// subscriber is one subscription: a bounded queue, and a goroutine that hands the queue
// to out in order.
type subscriber struct {
	out    chan Update   // unbuffered; closed by run when it returns
	wake   chan struct{} // capacity 1: the queue is not empty
	done   chan struct{} // closed when the subscription ends
	exited chan struct{} // closed when run has returned

	mu       sync.Mutex
	queue    []Update
	terminal bool // a terminal update has been queued
}

func newSubscriber() *subscriber {
	return &subscriber{
		out: make(chan Update), wake: make(chan struct{}, 1),
		done: make(chan struct{}), exited: make(chan struct{}),
		queue: make([]Update, 0, SubscriberBufferSize),
	}
}

// push queues u without blocking. It returns the update it dropped, if any.
func (s *subscriber) push(u Update) (dropped Update, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.terminal {
		return u, true
	}
	if len(s.queue) >= SubscriberBufferSize {
		i := slices.IndexFunc(s.queue, func(q Update) bool { return q.Kind == UpdateProgress })
		if i < 0 { // only status updates are queued: none is terminal, as s.terminal is false
			if u.Kind == UpdateProgress {
				return u, true
			}
			i = 0
		}
		dropped, ok = s.queue[i], true
		s.queue = slices.Delete(s.queue, i, i+1)
	}
	s.queue = append(s.queue, u)
	s.terminal = u.terminal()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return dropped, ok
}

// pop takes the oldest queued update.
func (s *subscriber) pop() (Update, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return Update{}, false
	}
	u := s.queue[0]
	s.queue = slices.Delete(s.queue, 0, 1)
	return u, true
}

// run hands queued updates to out until the subscription ends.
func (s *subscriber) run() {
	defer close(s.exited)
	defer close(s.out)
	for {
		u, ok := s.pop()
		if !ok {
			select {
			case <-s.wake:
				continue
			case <-s.done:
				return
			}
		}
		select {
		case s.out <- u:
		case <-s.done:
			return
		}
	}
}

// updateFromEvent turns a lifecycle event from the bus into the update the hub publishes.
// Its Patch is a partial task view: an event lacks e.g. the directory and creation time,
// which each stream keeps from the record it read. A failed attempt is silent: the task
// is pending again. Events of other kinds give an Update with no Kind, which Publish
// ignores.
func updateFromEvent(e events.Event) Update {
	u := Update{TaskID: e.TaskID}
	at, attempt := e.Time, e.Attempt
	p := viewPatch{Attempts: &attempt, Priority: e.Priority}
	switch e.Kind {
	case events.KindProgress:
		progress := e.Progress
		u.Kind, p = UpdateProgress, viewPatch{Progress: &progress}
	case events.KindAccepted, events.KindAttemptFailed:
		u.Kind, p.Status = UpdateStatus, task.StatusPending
	case events.KindStarted:
		u.Kind, p.Status, p.StartedAt, p.Progress = UpdateStatus, task.StatusRunning, &at, new(float64)
	case events.KindCompleted:
		done := 1.0
		u.Kind, p.Status, p.FinishedAt, p.Progress, p.Result = UpdateCompleted, task.StatusCompleted, &at, &done, e.Result
		withStart(&p, e)
	case events.KindFailed:
		reason := e.Error
		u.Kind, p.Status, p.FinishedAt, p.Error = UpdateFailed, task.StatusFailed, &at, &reason
		withStart(&p, e)
	case events.KindCancelled:
		u.Kind, p.Status, p.FinishedAt = UpdateCancelled, task.StatusCancelled, &at
		withStart(&p, e)
	default:
		return u
	}
	u.Patch = p
	return u
}

// withStart adds when the last attempt started, and where, to a terminal update: its
// event may arrive before the start event (they come from different publishers).
func withStart(p *viewPatch, e events.Event) {
	p.StartedAt, p.Worker = e.StartedAt, e.Worker
}

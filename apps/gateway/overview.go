package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/adapters/events"
	"github.com/taskgrid/taskgrid/internal/adapters/recent"
	"github.com/taskgrid/taskgrid/internal/domain/queue"
	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// Overview bounds.
const (
	// ThroughputMinutes is how many minutes of completions the overview shows, the
	// current one included.
	ThroughputMinutes = 10
	// recentEvents is how many event ids (and finished tasks) are remembered to recognise
	// an event delivered again (delivery is at least once).
	recentEvents = 1 << 16
	// snapshotTTL is how long a queue snapshot is reused: however many pages poll the
	// overview, a gateway asks the queue actor (and takes a turn from it) at most once
	// per snapshotTTL.
	snapshotTTL = time.Second
)

// Overview aggregates, from the lifecycle events this gateway reads, what the system
// overview shows besides the queue's depth: which worker slots run an attempt,
// completions per minute, and failed and retried attempts. It is safe for concurrent use.
//
// Busy and idle slots come from two sources, each truthful about one thing:
//   - The queue's idle list names the slots waiting for work. The queue hands all work
//     out, so a slot in that list runs nothing.
//   - A started event names the slot an attempt runs on. The slot is busy until that
//     task's completed, failed or attempt_failed event, or until the task starts on
//     another slot (the watchdog re-queued it because its node died).
//
// A slot in the idle list counts as idle whatever the events say: events come through
// the broker, later than the queue knows. Asking the worker nodes instead is not possible
// through Dapr (all nodes share the app id "worker", and service invocation picks one
// instance), and a method on each slot actor would cost a call per slot and per poll.
// What this cannot know: attempts that started before this gateway did (their slots are
// busy only once a later event names them); a slot that is between attempts or on a node
// that died is neither busy nor idle; the queue keeps a dead node's idle slots listed
// until a push to one of them fails.
type Overview struct {
	mu        sync.Mutex
	since     time.Time
	seen      *recentSet[string]    // event ids handled
	finished  *recentSet[uuid.UUID] // tasks completed or failed for good
	running   map[string]slotRun    // slot → the attempt it runs
	slotOf    map[uuid.UUID]string  // task → the slot in running that runs it
	completed map[int64]int         // completions by minute (Unix time / 60) of the event
	counts    failuresView
}

// slotRun is the attempt a slot runs, from its started event.
type slotRun struct {
	task    uuid.UUID
	attempt int
	at      time.Time
}

// NewOverview returns an empty overview that counts from since.
func NewOverview(since time.Time) *Overview {
	return &Overview{
		since: since.UTC(), seen: newRecentSet[string](recentEvents), finished: newRecentSet[uuid.UUID](recentEvents),
		running: map[string]slotRun{}, slotOf: map[uuid.UUID]string{}, completed: map[int64]int{},
	}
}

// overviewView is the JSON of GET /api/v1/overview.
type overviewView struct {
	Queue      queueView    `json:"queue"`
	Nodes      []nodeView   `json:"nodes"`      // by node name
	Throughput []minuteView `json:"throughput"` // ThroughputMinutes minutes, oldest first; the last is the current one
	Failures   failuresView `json:"failures"`
	// Since is where the throughput and failure counts start: recent.Window ago when they
	// come from analytics (Source "analytics": the same on every gateway, kept across
	// restarts), or this gateway's start when analytics cannot be reached (Source
	// "gateway": counted from the events this gateway read).
	Since  time.Time `json:"since"`
	Source string    `json:"source"`
	At     time.Time `json:"at"`
}

// withActivity replaces the throughput and failure counts of v by the durable ones of a.
func (v overviewView) withActivity(a recent.Activity) overviewView {
	perMinute := map[int64]int{}
	for _, m := range a.Completed {
		perMinute[m.Start.Unix()/60] = m.Completed
	}
	for i := range v.Throughput {
		v.Throughput[i].Completed = perMinute[v.Throughput[i].Start.Unix()/60]
	}
	v.Failures = failuresView{Recovered: a.Recovered, AttemptsFailed: a.AttemptsFailed, Failed: a.Failed, Cancelled: a.Cancelled}
	v.Since, v.Source = a.Since, sourceAnalytics
	return v
}

// Sources of the overview's counts.
const (
	sourceAnalytics = "analytics"
	sourceGateway   = "gateway"
)

type queueView struct {
	High   uint64 `json:"high"`
	Normal uint64 `json:"normal"`
}

type nodeView struct {
	Node string `json:"node"`
	Busy int    `json:"busy"`
	Idle int    `json:"idle"`
}

type minuteView struct {
	Start     time.Time `json:"start"`
	Completed int       `json:"completed"`
}

// failuresView counts failed attempts, and tasks cancelled, since Since. Recovered
// attempts are those that started again after a failure of any kind (an error, a time
// limit, a lost worker found by the watchdog); attempt failures are those a worker
// reported; failed tasks ran out of attempts; cancelled tasks were cancelled by their
// users (not a failure, but a task that ended without a result all the same).
type failuresView struct {
	Recovered      int `json:"recovered"`
	AttemptsFailed int `json:"attempts_failed"`
	Failed         int `json:"failed"`
	Cancelled      int `json:"cancelled"`
}

// Observe takes one lifecycle event into account. An event seen before is ignored.
func (o *Overview) Observe(e events.Event) {
	switch e.Kind {
	case events.KindStarted, events.KindAttemptFailed, events.KindCompleted, events.KindFailed, events.KindCancelled:
	default:
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.seen.add(e.ID) {
		return
	}
	switch e.Kind {
	case events.KindStarted:
		if e.Attempt > 1 {
			o.counts.Recovered++
		}
		o.start(e)
	case events.KindAttemptFailed:
		o.counts.AttemptsFailed++
		o.stop(e.TaskID, e.Attempt)
	case events.KindCompleted:
		o.completed[e.Time.Unix()/60]++
		o.prune(e.Time)
		o.finished.add(e.TaskID)
		o.stop(e.TaskID, 0)
	case events.KindFailed:
		o.counts.Failed++
		o.finished.add(e.TaskID)
		o.stop(e.TaskID, 0)
	case events.KindCancelled:
		o.counts.Cancelled++
		o.finished.add(e.TaskID) // its slot is free: the node stops the attempt
		o.stop(e.TaskID, 0)
	}
}

// start marks the slot of a started event busy with its attempt.
func (o *Overview) start(e events.Event) {
	_, slot, _ := strings.Cut(e.Worker, "/") // "<node>/<slot>"
	if _, err := task.SlotNode(slot); err != nil || o.finished.has(e.TaskID) {
		return // no slot named, or a late start of a task that is over
	}
	if cur, ok := o.running[slot]; ok {
		if cur.at.After(e.Time) {
			return // an earlier start that arrived late: the slot has moved on
		}
		delete(o.slotOf, cur.task)
	}
	o.stop(e.TaskID, 0) // the task moved here from another slot
	o.running[slot] = slotRun{task: e.TaskID, attempt: e.Attempt, at: e.Time}
	o.slotOf[e.TaskID] = slot
}

// stop frees the slot that runs task id; with attempt > 0, only if it runs that attempt
// or an earlier one (a late failure of attempt 1 does not stop attempt 2).
func (o *Overview) stop(id uuid.UUID, attempt int) {
	slot, ok := o.slotOf[id]
	if !ok || attempt > 0 && o.running[slot].attempt > attempt {
		return
	}
	delete(o.slotOf, id)
	delete(o.running, slot)
}

// prune forgets completions older than the window that ends at now, which it keeps
// bounded however long the gateway runs.
func (o *Overview) prune(now time.Time) {
	oldest := now.Unix()/60 - ThroughputMinutes
	maps.DeleteFunc(o.completed, func(m int64, _ int) bool { return m <= oldest })
}

// view returns the overview at now, with the queue as snapshot shows it.
func (o *Overview) view(now time.Time, snapshot queue.Snapshot) overviewView {
	now = now.UTC()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.prune(now)
	v := overviewView{
		Queue:    queueView{High: snapshot.High, Normal: snapshot.Normal},
		Failures: o.counts, Since: o.since, Source: sourceGateway, At: now,
		Throughput: make([]minuteView, 0, ThroughputMinutes),
	}
	current := now.Unix() / 60
	for m := current - ThroughputMinutes + 1; m <= current; m++ {
		v.Throughput = append(v.Throughput, minuteView{Start: time.Unix(m*60, 0).UTC(), Completed: o.completed[m]})
	}
	nodes := map[string]*nodeView{}
	count := func(slot string, busy bool) {
		node, err := task.SlotNode(slot)
		if err != nil {
			return
		}
		n := nodes[node]
		if n == nil {
			n = &nodeView{Node: node}
			nodes[node] = n
		}
		if busy {
			n.Busy++
		} else {
			n.Idle++
		}
	}
	idle := map[string]bool{}
	for _, slot := range snapshot.IdleSlots {
		if !idle[slot] {
			idle[slot] = true
			count(slot, false)
		}
	}
	for slot := range o.running {
		if !idle[slot] {
			count(slot, true)
		}
	}
	v.Nodes = make([]nodeView, 0, len(nodes))
	for _, n := range nodes {
		v.Nodes = append(v.Nodes, *n)
	}
	slices.SortFunc(v.Nodes, func(a, b nodeView) int { return cmp.Compare(a.Node, b.Node) })
	return v
}

// recentSet remembers the last n keys added.
type recentSet[K comparable] struct {
	ring []K
	next int
	set  map[K]struct{}
}

func newRecentSet[K comparable](n int) *recentSet[K] {
	return &recentSet[K]{ring: make([]K, 0, n), set: make(map[K]struct{}, n)}
}

// add reports whether k is new, and remembers it; once the set is full, the oldest key
// is forgotten.
func (s *recentSet[K]) add(k K) bool {
	if s.has(k) {
		return false
	}
	if len(s.ring) < cap(s.ring) {
		s.ring = append(s.ring, k)
	} else {
		delete(s.set, s.ring[s.next])
		s.ring[s.next] = k
		s.next = (s.next + 1) % len(s.ring)
	}
	s.set[k] = struct{}{}
	return true
}

func (s *recentSet[K]) has(k K) bool {
	_, ok := s.set[k]
	return ok
}

// readCache reuses a read (the queue's snapshot, the recent activity), or the failure
// of it, for snapshotTTL: a source that is slow to answer is not asked again by every
// waiting request.
type readCache[T any] struct {
	mu  sync.Mutex
	at  time.Time
	val T
	err error
}

// get returns the outcome of a read at most snapshotTTL old, reading it with read when
// the cached one is older. Callers wait for one read at a time.
func (c *readCache[T]) get(ctx context.Context, now time.Time, read func(context.Context) (T, error)) (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || now.Sub(c.at) >= snapshotTTL {
		c.val, c.err = read(ctx)
		c.at = now
	}
	return c.val, c.err
}

// handleOverview answers the system overview: the queue's depth by priority, busy and
// idle slots per worker node, completions per minute and failures recovered.
func (a *API) handleOverview(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	snap, err := a.snapshots.get(r.Context(), now, a.backend.QueueSnapshot)
	if err != nil {
		a.writeError(w, r, fmt.Errorf("read the queue for the overview: %w", err))
		return
	}
	v := a.overview.view(now, snap)
	// Throughput and failures from analytics' ledger when it answers in time; else this
	// gateway's own counts (Source says which).
	actx, cancel := context.WithTimeout(r.Context(), activityTimeout)
	defer cancel()
	if act, err := a.activity.get(actx, now, a.backend.Activity); err == nil {
		v = v.withActivity(act)
	} else {
		a.logger.DebugContext(r.Context(), "overview from this gateway's counts: analytics unavailable", "error", err)
	}
	writeJSON(w, http.StatusOK, v)
}

// activityTimeout bounds the read of the recent activity from analytics.
const activityTimeout = 2 * time.Second

// Observe takes a lifecycle event into the overview.
func (a *API) Observe(e events.Event) { a.overview.Observe(e) }

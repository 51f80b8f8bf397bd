// Package queueactor hosts the task queue (package queue) as the TaskQueue Dapr actor,
// whose turn-based concurrency makes it the single writer, and calls it through the
// sidecar.
package queueactor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgrid/taskgrid/internal/adapters/actorhost"
	"github.com/taskgrid/taskgrid/internal/adapters/components"
	"github.com/taskgrid/taskgrid/internal/domain/queue"
	"github.com/taskgrid/taskgrid/internal/domain/task"
	"github.com/taskgrid/taskgrid/internal/platform/retry"
)

// DefaultID is the id of the (single) queue actor.
const DefaultID = "default"

// Actor methods, and the backstop reminder.
const (
	MethodEnqueue  = "enqueue"
	MethodSync     = "sync"
	MethodDepth    = "depth"
	MethodSnapshot = "snapshot" // read-only: depth and the idle slots by name
	MethodCancel   = "cancel"   // tasks cancelled by their users: see queue.Queue.Cancel
	// SweepReminder is a long-lived reminder on the queue actor that sweeps the leases
	// when nothing else calls the queue. It is a backstop: dispatch and failure
	// detection do not wait for it (every call sweeps), so a scheduler outage pauses
	// nothing but it.
	SweepReminder = "lease-sweep"
	SweepPeriod   = "5s"
)

// EnqueueRequest adds assignments to the queue.
type EnqueueRequest struct {
	Assignments []task.Assignment `json:"assignments"`
}

// CancelRequest names tasks cancelled by their users.
type CancelRequest struct {
	Tasks []uuid.UUID `json:"tasks"`
}

// EnqueueReply says how many went to idle slots at once.
type EnqueueReply struct {
	Dispatched int `json:"dispatched"`
}

// Actor hosts TaskQueue actors (one queue.Queue per actor id) through actorhost.
type Actor struct {
	logger *slog.Logger
	state  actorhost.StateClient
	push   queue.PushFunc

	mu     sync.Mutex
	queues map[string]*queue.Queue
	depths map[string]queue.Depth // last known depth per queue, for metrics
	lost   map[string]int         // leases found lost per queue (by this process's queue.Queue)
	// turns holds, per queue id, the turn running in this process. The sidecar's actor
	// lock does not cover a turn the sidecar gave up on: daprd v1.18 halts every actor
	// when it loses placement (and those placed elsewhere after a dissemination) by
	// cancelling the call in flight and deactivating the actor at once, while the app
	// may still be writing that turn's state (a queue's write is not cut short). The
	// next activation's first turn waits here for it: started earlier, it would work from
	// the state before that write and put its entries on the keys the write uses, losing
	// tasks. Kept across deactivations (one per queue id). Calls made in this process
	// (EnqueueHere) take their turns here too.
	turns map[string]*sync.Mutex
	// hosted holds the queue ids the sidecar has active in this process: set by a call
	// it delivered, cleared when it deactivates the actor or a call made here fails.
	hosted map[string]bool
	here   map[string]int // enqueue calls made in this process, per queue id (metrics)
}

// NewActor returns the TaskQueue actor type; push hands attempts to worker nodes.
func NewActor(logger *slog.Logger, state actorhost.StateClient, push queue.PushFunc) *Actor {
	return &Actor{
		logger: logger.With("component", "queue"), state: state, push: push,
		queues: map[string]*queue.Queue{}, depths: map[string]queue.Depth{}, lost: map[string]int{},
		turns: map[string]*sync.Mutex{}, hosted: map[string]bool{}, here: map[string]int{},
	}
}

type storeAdapter struct{ s actorhost.State }

func (a storeAdapter) Get(ctx context.Context, key string) ([]byte, error) { return a.s.Get(ctx, key) }

func (a storeAdapter) Apply(ctx context.Context, ops []queue.Op) error {
	ws := make([]actorhost.Write, len(ops))
	for i, op := range ops {
		ws[i] = actorhost.Write{Key: op.Key, Value: op.Value}
	}
	return a.s.Apply(ctx, ws...)
}

// turn waits for the turn of queue id running in this process, if any, and returns
// the function that ends the caller's (see Actor.turns).
func (a *Actor) turn(id string) (end func()) {
	a.mu.Lock()
	l, ok := a.turns[id]
	if !ok {
		l = &sync.Mutex{}
		a.turns[id] = l
	}
	a.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (a *Actor) get(id string) *queue.Queue {
	a.mu.Lock()
	defer a.mu.Unlock()
	q, ok := a.queues[id]
	if !ok {
		q = queue.New(storeAdapter{actorhost.State{Client: a.state, ActorType: components.QueueActor, ActorID: id}}, a.push)
		a.queues[id] = q
	}
	return q
}

// Invoke runs one queue method, called through the sidecar.
func (a *Actor) Invoke(ctx context.Context, id, method string, body []byte) ([]byte, error) {
	defer a.turn(id)()
	a.setHosted(id, true)
	q := a.get(id)
	var reply any
	var err error
	switch method {
	case MethodEnqueue:
		var req EnqueueRequest
		if err = json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: %v", queue.ErrBadRequest, err)
		}
		var n int
		n, err = q.Enqueue(ctx, req.Assignments)
		reply = EnqueueReply{Dispatched: n}
	case MethodSync:
		var req queue.SyncRequest
		if err = json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: %v", queue.ErrBadRequest, err)
		}
		reply, err = q.Sync(ctx, req)
	case MethodCancel:
		var req CancelRequest
		if err = json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: %v", queue.ErrBadRequest, err)
		}
		reply, err = q.Cancel(ctx, req.Tasks)
	case MethodDepth:
		reply, err = q.Depth(ctx)
	case MethodSnapshot:
		reply, err = q.Snapshot(ctx)
	default:
		return nil, actorhost.ErrMethodNotFound
	}
	a.observe(id, q)
	if err != nil {
		return nil, err
	}
	return json.Marshal(reply)
}

// EnqueueHere adds assignments to queue id in this process, without the sidecar's two
// legs of an actor call (app → sidecar → app), when the sidecar has the actor active
// here (hosted is false otherwise: call through the sidecar then). The turn is taken
// as for a call the sidecar delivers, and what makes it safe is the queue's write: the
// sidecar refuses an actor-state transaction of an actor it does not have active
// (daprd checks its actor table, under the placement lock that a move of the actor
// takes), so a turn here after the actor moved elsewhere writes nothing and fails. A
// failed call here leaves the next ones to the sidecar until it delivers a call again.
func (a *Actor) EnqueueHere(ctx context.Context, id string, as []task.Assignment) (n int, hosted bool, err error) {
	if !a.isHosted(id) {
		return 0, false, nil
	}
	defer a.turn(id)()
	if !a.isHosted(id) { // deactivated while this call waited for its turn
		return 0, false, nil
	}
	q := a.get(id)
	n, err = q.Enqueue(ctx, as)
	a.observe(id, q)
	a.mu.Lock()
	a.here[id]++
	if err != nil {
		a.hosted[id] = false
	}
	a.mu.Unlock()
	return n, true, err
}

func (a *Actor) isHosted(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hosted[id]
}

func (a *Actor) setHosted(id string, on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hosted[id] = on
}

// observe keeps the queue's depth and lost leases for metrics, from what the queue
// keeps in memory after the call (no store read).
func (a *Actor) observe(id string, q *queue.Queue) {
	d, ok := q.Kept()
	a.mu.Lock()
	defer a.mu.Unlock()
	if ok {
		a.depths[id] = d
	}
	a.lost[id] = q.Lost
}

// Remind runs the backstop sweep.
func (a *Actor) Remind(ctx context.Context, id, name string, _ []byte) (bool, error) {
	if name != SweepReminder {
		return true, nil
	}
	defer a.turn(id)()
	a.setHosted(id, true)
	q := a.get(id)
	err := q.Sweep(ctx)
	a.observe(id, q)
	return false, err
}

// Deactivate drops the cached state of queue id.
func (a *Actor) Deactivate(_ context.Context, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.queues, id)
	delete(a.depths, id)
	delete(a.hosted, id)
}

// Describe implements prometheus.Collector.
func (a *Actor) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(a, ch) }

var (
	depthDesc  = prometheus.NewDesc("taskgrid_queue_depth", "Tasks waiting in the queue, by priority (queues hosted by this process).", []string{"queue", "priority"}, nil)
	leasedDesc = prometheus.NewDesc("taskgrid_queue_leased", "Attempts handed to worker slots and not reported finished.", []string{"queue"}, nil)
	lostDesc   = prometheus.NewDesc("taskgrid_queue_leases_lost_total", "Leases found lost (node dead, restarted or silent) and their tasks queued again, by this process.", []string{"queue"}, nil)
	hereDesc   = prometheus.NewDesc("taskgrid_queue_enqueues_here_total", "Enqueue calls this process made to the queue it hosts, without its sidecar (see EnqueueHere).", []string{"queue"}, nil)
	idleDesc   = prometheus.NewDesc("taskgrid_queue_idle_slots", "Worker slots waiting for work, as the queue sees them.", []string{"queue"}, nil)
	roomDesc   = prometheus.NewDesc("taskgrid_queue_room", "Attempts the queue may push into worker nodes' buffers until their next syncs (their room).", []string{"queue"}, nil)
)

// Collect implements prometheus.Collector: the depth of each queue hosted here.
func (a *Actor) Collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, d := range a.depths {
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(d.High), id, string(task.PriorityHigh))
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(d.Normal), id, string(task.PriorityNormal))
		ch <- prometheus.MustNewConstMetric(idleDesc, prometheus.GaugeValue, float64(d.Idle), id)
		ch <- prometheus.MustNewConstMetric(roomDesc, prometheus.GaugeValue, float64(d.Room), id)
		ch <- prometheus.MustNewConstMetric(leasedDesc, prometheus.GaugeValue, float64(d.Leased), id)
	}
	for id, n := range a.lost {
		ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(n), id)
	}
	for id, n := range a.here {
		ch <- prometheus.MustNewConstMetric(hereDesc, prometheus.CounterValue, float64(n), id)
	}
}

// Client calls the queue actor through the sidecar.
type Client struct {
	Invoker actorhost.Invoker
	ID      string // queue actor id; DefaultID when empty
	// Here, when set, is the queue actor type of this process: an enqueue goes to it
	// directly while the actor is active here (see Actor.EnqueueHere).
	Here *Actor
}

func (c Client) id() string {
	if c.ID == "" {
		return DefaultID
	}
	return c.ID
}

// Enqueue adds assignments.
func (c Client) Enqueue(ctx context.Context, as ...task.Assignment) (int, error) {
	if c.Here != nil {
		if n, hosted, err := c.Here.EnqueueHere(ctx, c.id(), as); hosted {
			if err != nil {
				return n, fmt.Errorf("enqueue in this process: %w", err)
			}
			return n, nil
		}
	}
	var reply EnqueueReply
	err := actorhost.Call(ctx, c.Invoker, components.QueueActor, c.id(), MethodEnqueue, EnqueueRequest{Assignments: as}, &reply)
	return reply.Dispatched, err
}

// Sync sends a worker node's sync (see queue.SyncRequest).
func (c Client) Sync(ctx context.Context, req queue.SyncRequest) (queue.SyncReply, error) {
	var reply queue.SyncReply
	err := actorhost.Call(ctx, c.Invoker, components.QueueActor, c.id(), MethodSync, req, &reply)
	return reply, err
}

// Cancel takes cancelled tasks out of the queue and has their running attempts
// stopped (see queue.Queue.Cancel).
func (c Client) Cancel(ctx context.Context, ids ...uuid.UUID) (queue.CancelReply, error) {
	var reply queue.CancelReply
	err := actorhost.Call(ctx, c.Invoker, components.QueueActor, c.id(), MethodCancel, CancelRequest{Tasks: ids}, &reply)
	return reply, err
}

// Snapshot reads the queue's depth and its idle slots.
func (c Client) Snapshot(ctx context.Context) (queue.Snapshot, error) {
	var s queue.Snapshot
	err := actorhost.Call(ctx, c.Invoker, components.QueueActor, c.id(), MethodSnapshot, nil, &s)
	return s, err
}

// Reminders is the part of the Dapr client that registers actor reminders.
type Reminders interface {
	RegisterActorReminder(ctx context.Context, in *dapr.RegisterActorReminderRequest) error
}

// ArmSweep registers the queue's backstop reminder (SweepReminder) once, retrying
// while the scheduler cannot be reached, until ctx ends. Nothing waits for it: dispatch
// and failure detection work without it. Register it through a sidecar that hosts the
// queue actor type (daprd refuses it elsewhere).
func ArmSweep(ctx context.Context, r Reminders) error {
	return retry.Do(ctx, 5*time.Second, func(ctx context.Context) error {
		return r.RegisterActorReminder(ctx, &dapr.RegisterActorReminderRequest{
			ActorType: components.QueueActor, ActorID: DefaultID, Name: SweepReminder,
			DueTime: SweepPeriod, Period: SweepPeriod,
		})
	})
}

package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgrid/taskgrid/internal/actorhost"
	"github.com/taskgrid/taskgrid/internal/components"
	"github.com/taskgrid/taskgrid/internal/task"
)

// DefaultID is the id of the (single) queue actor.
const DefaultID = "default"

// Actor methods.
const (
	MethodEnqueue  = "enqueue"
	MethodIdle     = "idle"
	MethodRetire   = "retire"
	MethodDepth    = "depth"
	MethodSnapshot = "snapshot" // read-only: depth and the idle slots by name
)

// EnqueueRequest adds assignments to the queue.
type EnqueueRequest struct {
	Assignments []task.Assignment `json:"assignments"`
}

// EnqueueReply says how many went to idle slots at once.
type EnqueueReply struct {
	Dispatched int `json:"dispatched"`
}

// IdleRequest says worker slots are free: several (Slots) at once, as workers send it,
// or one (Slot), as workers of earlier versions did.
type IdleRequest struct {
	Slot  string   `json:"slot,omitempty"`
	Slots []string `json:"slots,omitempty"`
}

// IdleReply names the assignments the slots were given, if any (Assigned: the first),
// and why slots refused the task pushed to them (those are not idle now; their
// workers offer them again).
type IdleReply struct {
	Assigned *task.Assignment `json:"assigned,omitempty"`
	Given    []Given          `json:"given,omitempty"`
	Refused  []string         `json:"refused,omitempty"`
}

// RetireRequest removes slots from the idle list.
type RetireRequest struct {
	Slots []string `json:"slots"`
}

// Actor hosts TaskQueue actors (one Queue per actor id) through actorhost.
type Actor struct {
	logger   *slog.Logger
	state    actorhost.StateClient
	dispatch DispatchFunc

	mu     sync.Mutex
	queues map[string]*Queue
	depths map[string]Depth // last known depth per queue, for metrics
}

// NewActor returns the TaskQueue actor type; dispatch pushes assignments to workers.
func NewActor(logger *slog.Logger, state actorhost.StateClient, dispatch DispatchFunc) *Actor {
	return &Actor{
		logger: logger.With("component", "queue"), state: state, dispatch: dispatch,
		queues: map[string]*Queue{}, depths: map[string]Depth{},
	}
}

type storeAdapter struct{ s actorhost.State }

func (a storeAdapter) Get(ctx context.Context, key string) ([]byte, error) { return a.s.Get(ctx, key) }

func (a storeAdapter) Apply(ctx context.Context, ops []Op) error {
	ws := make([]actorhost.Write, len(ops))
	for i, op := range ops {
		ws[i] = actorhost.Write{Key: op.Key, Value: op.Value}
	}
	return a.s.Apply(ctx, ws...)
}

func (a *Actor) queue(id string) *Queue {
	a.mu.Lock()
	defer a.mu.Unlock()
	q, ok := a.queues[id]
	if !ok {
		q = New(storeAdapter{actorhost.State{Client: a.state, ActorType: components.QueueActor, ActorID: id}}, a.dispatch)
		a.queues[id] = q
	}
	return q
}

// Invoke runs one queue method.
func (a *Actor) Invoke(ctx context.Context, id, method string, body []byte) ([]byte, error) {
	q := a.queue(id)
	var reply any
	var err error
	switch method {
	case MethodEnqueue:
		var req EnqueueRequest
		if err = json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		var n int
		n, err = q.Enqueue(ctx, req.Assignments)
		reply = EnqueueReply{Dispatched: n}
	case MethodIdle:
		var req IdleRequest
		if err = json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		reply, err = offer(ctx, q, req)
	case MethodRetire:
		var req RetireRequest
		if err = json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		err = q.Retire(ctx, req.Slots)
	case MethodDepth:
		reply, err = q.Depth(ctx)
	case MethodSnapshot:
		reply, err = q.Snapshot(ctx)
	default:
		return nil, actorhost.ErrMethodNotFound
	}
	if d, derr := q.Depth(ctx); derr == nil {
		a.mu.Lock()
		a.depths[id] = d
		a.mu.Unlock()
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(reply)
}

// offer runs an idle request. A request for one Slot fails when its push fails (the
// caller may retry); one for several Slots lists refusals in the reply.
func offer(ctx context.Context, q *Queue, req IdleRequest) (IdleReply, error) {
	slots := req.Slots
	if req.Slot != "" {
		slots = append([]string{req.Slot}, slots...)
	}
	given, refused, err := q.Offer(ctx, slots)
	r := IdleReply{Given: given}
	if len(given) > 0 {
		r.Assigned = &given[0].Assignment
	}
	if err == nil && req.Slot != "" && len(req.Slots) == 0 {
		err = errors.Join(refused...)
	}
	for _, e := range refused {
		r.Refused = append(r.Refused, e.Error())
	}
	return r, err
}

// Remind is unused: the queue registers no reminders.
func (a *Actor) Remind(context.Context, string, string, []byte) (bool, error) { return true, nil }

// Deactivate drops the cached state of queue id.
func (a *Actor) Deactivate(_ context.Context, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.queues, id)
	delete(a.depths, id)
}

// Describe implements prometheus.Collector.
func (a *Actor) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(a, ch) }

var (
	depthDesc = prometheus.NewDesc("taskgrid_queue_depth", "Tasks waiting in the queue, by priority (queues hosted by this process).", []string{"queue", "priority"}, nil)
	idleDesc  = prometheus.NewDesc("taskgrid_queue_idle_slots", "Worker slots waiting for work, as the queue sees them.", []string{"queue"}, nil)
)

// Collect implements prometheus.Collector: the depth of each queue hosted here.
func (a *Actor) Collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, d := range a.depths {
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(d.High), id, string(task.PriorityHigh))
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(d.Normal), id, string(task.PriorityNormal))
		ch <- prometheus.MustNewConstMetric(idleDesc, prometheus.GaugeValue, float64(d.Idle), id)
	}
}

// Client calls the queue actor through the sidecar.
type Client struct {
	Invoker actorhost.Invoker
	ID      string // queue actor id; DefaultID when empty
}

func (c Client) id() string {
	if c.ID == "" {
		return DefaultID
	}
	return c.ID
}

// Enqueue adds assignments.
func (c Client) Enqueue(ctx context.Context, as ...task.Assignment) (int, error) {
	var reply EnqueueReply
	err := actorhost.Call(ctx, c.Invoker, components.QueueActor, c.id(), MethodEnqueue, EnqueueRequest{Assignments: as}, &reply)
	return reply.Dispatched, err
}

// Offer reports several slots free in one call. The reply says which got a task and
// why slots refused theirs; err is a failed call or a failure of the queue's state.
func (c Client) Offer(ctx context.Context, slots ...string) (IdleReply, error) {
	var reply IdleReply
	err := actorhost.Call(ctx, c.Invoker, components.QueueActor, c.id(), MethodIdle, IdleRequest{Slots: slots}, &reply)
	return reply, err
}

// Retire removes slots from the idle list.
func (c Client) Retire(ctx context.Context, slots ...string) error {
	return actorhost.Call(ctx, c.Invoker, components.QueueActor, c.id(), MethodRetire, RetireRequest{Slots: slots}, nil)
}

// Depth reads the queue's depth.
func (c Client) Depth(ctx context.Context) (Depth, error) {
	var d Depth
	err := actorhost.Call(ctx, c.Invoker, components.QueueActor, c.id(), MethodDepth, nil, &d)
	return d, err
}

// Snapshot reads the queue's depth and its idle slots.
func (c Client) Snapshot(ctx context.Context) (Snapshot, error) {
	var s Snapshot
	err := actorhost.Call(ctx, c.Invoker, components.QueueActor, c.id(), MethodSnapshot, nil, &s)
	return s, err
}

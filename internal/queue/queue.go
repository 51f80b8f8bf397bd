// Package queue is the task queue: two priorities (high before normal), FIFO within a
// priority, durable, with idle worker slots that get work pushed to them the moment it
// is queued.
//
// A Queue lives inside one Dapr actor (TaskQueue), so its calls never overlap and one
// process owns it at a time. Its state is kept as separate keys in actor state: one key
// per entry ("h:<seq>", "n:<seq>") and a small "meta" key with the head and tail of each
// priority and the idle slots. Every operation reads or writes a constant number of
// keys, so enqueue and dequeue cost the same at 1,000 and at 1,000,000 waiting tasks.
package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/taskgrid/taskgrid/internal/task"
)

// Op is one write of a transaction: Value nil deletes Key.
type Op struct {
	Key   string
	Value []byte
}

// Store is the queue's durable state: the actor state of one TaskQueue actor.
type Store interface {
	// Get returns the value of key, or nil when it does not exist.
	Get(ctx context.Context, key string) ([]byte, error)
	// Apply writes ops atomically.
	Apply(ctx context.Context, ops []Op) error
}

// DispatchFunc hands assignment a to worker slot. It returns once the worker has
// durably taken the task; an error means the slot did not take it.
type DispatchFunc func(ctx context.Context, slot string, a task.Assignment) error

// PushBudget bounds the time one Enqueue spends on failed pushes to idle slots.
const PushBudget = time.Second

// ErrBadRequest marks a call with invalid arguments.
var ErrBadRequest = errors.New("bad queue request")

type meta struct {
	Head map[task.Priority]uint64 `json:"head"` // next seq to dequeue
	Tail map[task.Priority]uint64 `json:"tail"` // next seq to enqueue
	Idle []string                 `json:"idle"` // slots waiting for work, oldest first
}

// Depth is the number of waiting tasks by priority and of idle slots.
type Depth struct {
	High   uint64 `json:"high"`
	Normal uint64 `json:"normal"`
	Idle   int    `json:"idle"`
}

// Queue is one queue's logic over its Store. It is not safe for concurrent use: the
// actor runtime gives it one call at a time.
type Queue struct {
	store    Store
	dispatch DispatchFunc
	now      func() time.Time
	m        *meta // loaded on first use
}

// New returns a queue over store that pushes work with dispatch.
func New(store Store, dispatch DispatchFunc) *Queue {
	return &Queue{store: store, dispatch: dispatch, now: time.Now}
}

var priorities = []task.Priority{task.PriorityHigh, task.PriorityNormal}

func entryKey(p task.Priority, seq uint64) string {
	return string(p[0]) + ":" + strconv.FormatUint(seq, 10)
}

func (q *Queue) load(ctx context.Context) error {
	if q.m != nil {
		return nil
	}
	data, err := q.store.Get(ctx, "meta")
	if err != nil {
		return fmt.Errorf("load queue meta: %w", err)
	}
	m := &meta{}
	if data != nil {
		if err := json.Unmarshal(data, m); err != nil {
			return fmt.Errorf("decode queue meta: %w", err)
		}
	}
	if m.Head == nil {
		m.Head = map[task.Priority]uint64{}
	}
	if m.Tail == nil {
		m.Tail = map[task.Priority]uint64{}
	}
	q.m = m
	return nil
}

func (q *Queue) metaOp(m *meta) Op {
	data, _ := json.Marshal(m) // a map and a slice of strings always encode
	return Op{Key: "meta", Value: data}
}

// commit applies ops plus the new meta, and adopts the new meta only on success, so a
// failed write leaves the queue as it was.
// commitTimeout bounds one write of the queue's state.
const commitTimeout = 10 * time.Second

// commit writes ops and the new meta in one transaction. The write is not cut short
// when the caller gives up (an actor call that timed out): a write cancelled halfway
// leaves its outcome unknown. When it fails all the same, its outcome is unknown (it
// may have been applied), so the cached meta is dropped and the next operation reads
// the stored one: writing on from a stale cache would put a new entry on the key of
// one already stored, and lose that task.
func (q *Queue) commit(ctx context.Context, next *meta, ops ...Op) error {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := q.store.Apply(wctx, append(ops, q.metaOp(next))); err != nil {
		q.m = nil
		return fmt.Errorf("write queue state: %w", err)
	}
	q.m = next
	return nil
}

func (m *meta) clone() *meta {
	c := &meta{Head: map[task.Priority]uint64{}, Tail: map[task.Priority]uint64{}, Idle: slices.Clone(m.Idle)}
	for k, v := range m.Head {
		c.Head[k] = v
	}
	for k, v := range m.Tail {
		c.Tail[k] = v
	}
	return c
}

// Depth reports how many tasks wait and how many slots are idle.
func (q *Queue) Depth(ctx context.Context) (Depth, error) {
	if err := q.load(ctx); err != nil {
		return Depth{}, err
	}
	return Depth{
		High:   q.m.Tail[task.PriorityHigh] - q.m.Head[task.PriorityHigh],
		Normal: q.m.Tail[task.PriorityNormal] - q.m.Head[task.PriorityNormal],
		Idle:   len(q.m.Idle),
	}, nil
}

// Snapshot is the queue's depth with the idle slots themselves, oldest first.
type Snapshot struct {
	Depth
	IdleSlots []string `json:"idle_slots"`
}

// Snapshot reports the depth and the idle slots. It only reads.
func (q *Queue) Snapshot(ctx context.Context) (Snapshot, error) {
	d, err := q.Depth(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	return Snapshot{Depth: d, IdleSlots: slices.Clone(q.m.Idle)}, nil
}

// Enqueue adds assignments in order. Each goes straight to an idle slot when there is
// one (and nothing of its priority or higher waits); otherwise it waits its turn. It
// returns how many were dispatched at once.
func (q *Queue) Enqueue(ctx context.Context, as []task.Assignment) (dispatched int, err error) {
	if err := q.load(ctx); err != nil {
		return 0, err
	}
	for _, a := range as {
		if a.Priority != task.PriorityHigh && a.Priority != task.PriorityNormal {
			return dispatched, fmt.Errorf("%w: priority %q (want high or normal)", ErrBadRequest, a.Priority)
		}
	}
	// Stamped here, in the queue's turn, so that enqueue and dispatch times of all
	// tasks come from one clock and order exactly.
	as = slices.Clone(as)
	now := q.now().UTC()
	for i := range as {
		as[i].Enqueued = now
	}
	rest, dispatched, err := q.dispatchToIdle(ctx, as)
	if err != nil || len(rest) == 0 {
		return dispatched, err
	}
	// No idle slot (left): store the rest of the batch in one transaction.
	next := q.m.clone()
	ops := make([]Op, 0, len(rest)+1)
	for _, b := range rest {
		data, err := json.Marshal(b)
		if err != nil {
			return dispatched, fmt.Errorf("encode queue entry: %w", err)
		}
		ops = append(ops, Op{Key: entryKey(b.Priority, next.Tail[b.Priority]), Value: data})
		next.Tail[b.Priority]++
	}
	return dispatched, q.commit(ctx, next, ops...)
}

// dispatchToIdle hands the leading assignments of as to the longest-idle slots, one
// each, pushed concurrently, as long as nothing waits ahead of them. It returns the
// assignments left to queue, in order: the ones no slot took come first (they were
// ahead of the rest). Slots that fail to take one are dropped from the idle list (their
// workers offer them again). It goes on with the next idle slots only while failed
// pushes have taken less than PushBudget: a slot that refuses at once (busy, gone)
// costs nothing, but while the actor placement changes pushes time out, and the turn
// must stay short.
func (q *Queue) dispatchToIdle(ctx context.Context, as []task.Assignment) (rest []task.Assignment, dispatched int, err error) {
	rest = as
	start := time.Now()
	for len(rest) > 0 && len(q.m.Idle) > 0 && !q.waiting(rest[0].Priority) && time.Since(start) < PushBudget {
		n := min(len(rest), len(q.m.Idle))
		errs := q.pushAll(ctx, q.m.Idle[:n], rest[:n])
		next := q.m.clone()
		next.Idle = next.Idle[n:]
		var failed []task.Assignment
		for i, perr := range errs {
			if perr != nil {
				failed = append(failed, rest[i])
			}
		}
		dispatched += n - len(failed)
		rest = append(failed, rest[n:]...)
		if err := q.commit(ctx, next); err != nil {
			return rest, dispatched, err
		}
	}
	return rest, dispatched, nil
}

// pushAll pushes as[i] to slots[i], all at once, and returns each push's error.
func (q *Queue) pushAll(ctx context.Context, slots []string, as []task.Assignment) []error {
	errs := make([]error, len(as))
	if len(as) == 1 {
		_, errs[0] = q.push(ctx, slots[0], as[0])
		return errs
	}
	var wg sync.WaitGroup
	for i := range as {
		wg.Go(func() { _, errs[i] = q.push(ctx, slots[i], as[i]) })
	}
	wg.Wait()
	return errs
}

// push hands a to slot, stamped with the dispatch time, and returns what it sent.
func (q *Queue) push(ctx context.Context, slot string, a task.Assignment) (task.Assignment, error) {
	a.Dispatched = q.now().UTC()
	return a, q.dispatch(ctx, slot, a)
}

// waiting reports whether a task of priority p or higher is queued.
func (q *Queue) waiting(p task.Priority) bool {
	for _, pr := range priorities {
		if q.m.Tail[pr] > q.m.Head[pr] {
			return true
		}
		if pr == p {
			return false
		}
	}
	return false
}

// Idle tells the queue slot is free. It gets the next waiting task at once, or joins
// the idle list (once, however often it asks). It returns the assignment dispatched,
// if any.
func (q *Queue) Idle(ctx context.Context, slot string) (*task.Assignment, error) {
	given, refused, err := q.Offer(ctx, []string{slot})
	if err == nil {
		err = errors.Join(refused...)
	}
	if len(given) > 0 {
		return &given[0].Assignment, err
	}
	return nil, err
}

// Given is an assignment handed to a slot.
type Given struct {
	Slot       string          `json:"slot"`
	Assignment task.Assignment `json:"assignment"`
}

// Offer tells the queue that slots are free (a worker node offers all its free slots
// in one call). Each gets the next waiting task, pushed to the slots concurrently;
// slots left over join the idle list (once, however often they ask). It returns what
// was handed out, and why slots refused: a slot whose push fails is not made idle and
// its task stays queued; the others keep what they got. err is a failure of the
// queue's own state (then nothing changed, but pushes may have happened: at least once).
func (q *Queue) Offer(ctx context.Context, slots []string) (given []Given, refused []error, err error) {
	if len(slots) == 0 || slices.Contains(slots, "") {
		return nil, nil, fmt.Errorf("%w: no slot, or an empty one", ErrBadRequest)
	}
	if err := q.load(ctx); err != nil {
		return nil, nil, err
	}
	var uniq []string
	for _, s := range slots {
		if !slices.Contains(uniq, s) {
			uniq = append(uniq, s)
		}
	}
	slots = uniq
	next := q.m.clone()
	// Take up to one entry per slot, highest priority first, FIFO within it.
	type taken struct {
		p   task.Priority
		seq uint64
		a   task.Assignment
	}
	var take []taken
	var ops []Op
	for _, p := range priorities {
		for len(take) < len(slots) && next.Tail[p] > next.Head[p] {
			seq := next.Head[p]
			key := entryKey(p, seq)
			data, err := q.store.Get(ctx, key)
			if err != nil {
				return nil, nil, fmt.Errorf("read queue entry %s: %w", key, err)
			}
			next.Head[p]++
			var a task.Assignment
			if data == nil || json.Unmarshal(data, &a) != nil {
				// A missing or corrupt entry cannot be run; skip it rather than block the queue.
				ops = append(ops, Op{Key: key})
				continue
			}
			take = append(take, taken{p, seq, a})
		}
	}
	// Dispatch before removing: a crash in between dispatches them again (at least
	// once); workers drop attempts that are already done.
	as := make([]task.Assignment, len(take))
	for i, t := range take {
		as[i] = t.a
	}
	errs := q.pushAll(ctx, slots[:len(take)], as)
	for i, t := range take {
		if errs[i] != nil {
			refused = append(refused, fmt.Errorf("dispatch %s to %s: %w", t.a, slots[i], errs[i]))
			continue
		}
		given = append(given, Given{Slot: slots[i], Assignment: t.a})
		ops = append(ops, Op{Key: entryKey(t.p, t.seq)})
	}
	// A task whose push failed stays where it was: the head moves back to the first of
	// them (entries after it that were handed out are deleted, and skipped when reached).
	for i, t := range take {
		if errs[i] != nil && t.seq < next.Head[t.p] {
			next.Head[t.p] = t.seq
		}
	}
	// Slots that were handed a task (or failed to take one) are not idle; the others
	// are, keeping their place if they were already.
	busy := slots[:len(take)]
	next.Idle = slices.DeleteFunc(next.Idle, func(s string) bool { return slices.Contains(busy, s) })
	for _, slot := range slots[len(take):] {
		if !slices.Contains(next.Idle, slot) {
			next.Idle = append(next.Idle, slot)
		}
	}
	if err := q.commit(ctx, next, ops...); err != nil {
		return given, refused, err
	}
	return given, refused, nil
}

// Retire removes slots from the idle list (a worker node shutting down).
func (q *Queue) Retire(ctx context.Context, slots []string) error {
	if err := q.load(ctx); err != nil {
		return err
	}
	next := q.m.clone()
	next.Idle = slices.DeleteFunc(next.Idle, func(s string) bool { return slices.Contains(slots, s) })
	if len(next.Idle) == len(q.m.Idle) {
		return nil
	}
	return q.commit(ctx, next)
}

// Forget drops the cached state (the actor was deactivated); the next call reloads it.
func (q *Queue) Forget() { q.m = nil }

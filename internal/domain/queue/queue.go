// Package queue is the task queue: two priorities (high before normal), FIFO within a
// priority, durable, with leases on what it hands out, and idle worker slots, and the
// room worker nodes keep in their buffers between two syncs, that get work pushed to
// them the moment it is queued.
//
// A Queue lives inside one Dapr actor (TaskQueue), so its calls never overlap and one
// process owns it at a time. Its state is kept as separate keys in actor state: one key
// per entry ("h:<seq>", "n:<seq>"), one key per worker node with the leases of that
// node ("lease:<node>"), and a small "meta" key with the head and tail of each priority,
// the idle slots, the nodes' room and the nodes that hold leases. Every operation reads or writes a
// number of keys that does not grow with the depth, so enqueue and dequeue cost the same
// at 1,000 and at 1,000,000 waiting tasks.
//
// Leases replace a failure detector per attempt. Handing out an assignment writes its
// lease in the same transaction that takes it off the queue. Each worker node syncs with
// the queue (Sync: a heartbeat that also returns finished attempts and asks for work for
// its free slots) at least every HeartbeatInterval; a lease is lost, and its task queued
// again at high priority, when its node stops syncing for LeaseTTL, when a new process of
// the node (another incarnation) does not hold it, or when the node has seen it and no
// longer holds it. No timer, reminder or scheduler is involved: every call of the queue
// sweeps the leases first, so detection runs as long as anything calls the queue.
package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/domain/task"
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

// Grant is an assignment handed to a node under a lease: to one of its slots (a push,
// or a free slot of a sync), or to its buffer (Slot empty).
type Grant struct {
	Slot       string          `json:"slot,omitempty"`
	Seq        uint64          `json:"seq"` // the lease's number on its node, increasing
	Assignment task.Assignment `json:"assignment"`
}

// AttemptIDs names the attempts of grants (for logs).
func AttemptIDs(grants []Grant) []task.AttemptID {
	ids := make([]task.AttemptID, len(grants))
	for i, g := range grants {
		ids[i] = g.Assignment.ID()
	}
	return ids
}

// PushFunc hands grants to the worker node, all for its slots, in one call. It returns
// the attempts the node refused (a slot busy, the node draining); an error means the
// node took none of them.
type PushFunc func(ctx context.Context, node string, grants []Grant) (refused []task.AttemptID, err error)

// Bounds of the queue.
const (
	// PushSuspend is how long a node whose push failed gets work only from its syncs.
	PushSuspend = 30 * time.Second
	// HeartbeatInterval is how often a worker node syncs when nothing else makes it.
	HeartbeatInterval = 500 * time.Millisecond
	// LeaseTTL is how long a node may stay silent before its leases are lost, and how
	// long a lease may wait for its node to report it.
	LeaseTTL = 2 * time.Second
	// sweepEvery bounds how often a call sweeps the leases of silent nodes.
	sweepEvery = 100 * time.Millisecond
	// TrustWindow is how long after its last call a host trusts the state it keeps
	// without reading the store's revision (see Queue.load).
	TrustWindow = 100 * time.Millisecond
	// seqBase is where the entry counters of a new queue start, so that an entry put
	// back at the head (a failed push) has a key below the first one.
	seqBase = 1 << 40
)

// ErrBadRequest marks a call with invalid arguments.
var ErrBadRequest = errors.New("bad queue request")

type meta struct {
	Head  map[task.Priority]uint64 `json:"head"`  // next seq to dequeue
	Tail  map[task.Priority]uint64 `json:"tail"`  // next seq to enqueue
	Idle  []string                 `json:"idle"`  // slots waiting for work, oldest first
	Nodes []string                 `json:"nodes"` // nodes with a lease key
	// Room: node → how many more attempts the queue may push to it beyond its idle
	// slots, into its buffer, until its next sync (SyncRequest.Room).
	Room map[string]int `json:"room,omitempty"`
	// Rev counts the writes. A host reads it at every call and drops what it keeps in
	// memory when another host wrote since (the actor moved away and back).
	Rev uint64 `json:"rev"`
}

// Lease is an attempt handed to a slot and not reported finished yet.
type Lease struct {
	Grant
	Incarnation string    `json:"incarnation,omitempty"` // the node process it went to, when known
	Granted     time.Time `json:"granted"`
	// Pushed marks a lease pushed to its node (outside the queue's turns) that no sync
	// has reported yet. Its number says nothing about when it arrives: a sync reply given
	// later, with a higher number, may overtake the push, so the node's Seen does not
	// cover it. It is judged by its push's outcome (takeBack), its node's reports, and
	// LeaseTTL; once a sync reports it held, it is judged like any other.
	Pushed bool `json:"pushed,omitempty"`
}

// nodeState is the lease key of one node.
type nodeState struct {
	Incarnation string  `json:"incarnation,omitempty"` // the node's process, as of its last sync
	Seq         uint64  `json:"seq"`                   // the last lease number given
	Seen        uint64  `json:"seen"`                  // the highest lease number the node reported
	Leases      []Lease `json:"leases"`
	// enc is the key as last written or read: a turn that changed nothing of it (most
	// syncs of a node with work on its way) is found without encoding it twice.
	enc []byte
}

// Depth is the number of waiting tasks by priority, of idle slots, of leases, and the
// nodes' room.
type Depth struct {
	High   uint64 `json:"high"`
	Normal uint64 `json:"normal"`
	Idle   int    `json:"idle"`
	Leased int    `json:"leased"`
	Room   int    `json:"room"` // attempts the queue may push into nodes' buffers (SyncRequest.Room)
}

// Queue is one queue's logic over its Store. It is not safe for concurrent use: the
// actor runtime gives it one call at a time.
type Queue struct {
	store Store
	push  PushFunc
	now   func() time.Time

	m     *meta                       // loaded on first use
	cache map[string][]byte           // entries this host wrote near the head: read without a store call
	ended map[task.AttemptID]struct{} // attempts that ended lately (memory only): their duplicates are skipped
	nodes map[string]*nodeState       // lease keys, loaded with m
	seen  map[string]time.Time        // node → its last sync (memory only: a new host gives grace)
	// pushFailed: node → when a push to it last failed (memory only): see pushable.
	pushFailed map[string]time.Time
	// roomTurn is the node the last push into the nodes' room started with (see byRoom).
	roomTurn string
	since    time.Time // when this host loaded the state: no lease is judged older
	swept    time.Time
	// active is when this host last read or wrote the state; while calls keep coming
	// within TrustWindow of each other, the state it keeps is current (see load).
	active time.Time

	// goPush runs a push outside the queue's turn (go f(); tests run it in place).
	goPush func(func())
	// returned holds grants whose push failed or was refused, for the next turn to put
	// back (see takeBack). Pushes run outside the turns: guarded by returnedMu.
	returnedMu sync.Mutex
	returned   []returned
	// pushing holds the attempts whose push has not returned yet (guarded by returnedMu):
	// their leases wait for the push's outcome, not for LeaseTTL (a push to a node that
	// hangs takes up to its timeout, and then takeBack puts the same attempt back).
	pushing map[task.AttemptID]struct{}

	// cancelled are the tasks cancelled lately, oldest first (the "cancelled" key, at
	// most CancelledMax): their waiting entries are skipped, and their held attempts
	// are named in SyncReply.Cancel. Loaded with m.
	cancelled    []uuid.UUID
	cancelledSet map[uuid.UUID]struct{}

	// Lost counts leases found lost (for metrics); it only grows.
	Lost int
}

// returned is a grant whose push did not get it to its node.
type returned struct {
	handed
	failed bool // the push failed (outcome unknown) rather than being refused
}

// handed is a grant with the node it went to (a grant for a node's buffer names no slot).
type handed struct {
	node  string
	grant Grant
}

// New returns a queue over store that pushes work with push.
func New(store Store, push PushFunc) *Queue {
	return &Queue{store: store, push: push, now: time.Now, goPush: func(f func()) { go f() }}
}

var priorities = []task.Priority{task.PriorityHigh, task.PriorityNormal}

func entryKey(p task.Priority, seq uint64) string {
	return string(p[0]) + ":" + strconv.FormatUint(seq, 10)
}

func leaseKey(node string) string { return "lease:" + node }

// load makes the state this host keeps current. A host that has the state and was
// called within TrustWindow uses it as it is: the actor cannot have been hosted
// elsewhere meanwhile, since moving away and back takes two placement dissemination
// rounds (each locks the actor type in every sidecar, and a sidecar deactivates an
// actor it loses, which drops this Queue), and no call reached this host in between.
// Otherwise it reads the revision of the stored meta key (one store read), and reloads
// everything when another host wrote since.
func (q *Queue) load(ctx context.Context) error {
	now := q.now()
	if q.m != nil && now.Sub(q.active) < TrustWindow {
		q.active = now
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
	if q.m != nil && m.Rev == q.m.Rev {
		q.active = now
		return nil // nobody else wrote: what this host keeps is current
	}
	q.cache = nil
	if m.Head == nil {
		m.Head, m.Tail = map[task.Priority]uint64{}, map[task.Priority]uint64{}
		for _, p := range priorities {
			m.Head[p], m.Tail[p] = seqBase, seqBase
		}
	}
	nodes := map[string]*nodeState{}
	for _, n := range m.Nodes {
		data, err := q.store.Get(ctx, leaseKey(n))
		if err != nil {
			return fmt.Errorf("load leases of %s: %w", n, err)
		}
		ns := &nodeState{enc: data}
		if data != nil {
			if err := json.Unmarshal(data, ns); err != nil {
				return fmt.Errorf("decode leases of %s: %w", n, err)
			}
		}
		nodes[n] = ns
	}
	// Nodes get a full TTL from now: this host has not heard from any of them yet.
	q.seen, q.since, q.active = map[string]time.Time{}, now, now
	for n := range nodes {
		q.seen[n] = now
	}
	for _, s := range m.Idle {
		if n, err := task.SlotNode(s); err == nil {
			q.seen[n] = now
		}
	}
	for n := range m.Room {
		q.seen[n] = now
	}
	data, err = q.store.Get(ctx, cancelledKey)
	if err != nil {
		return fmt.Errorf("load cancelled tasks: %w", err)
	}
	var cancelled []uuid.UUID
	if data != nil {
		if err := json.Unmarshal(data, &cancelled); err != nil {
			return fmt.Errorf("decode cancelled tasks: %w", err)
		}
	}
	q.m, q.nodes = m, nodes
	q.setCancelled(cancelled)
	return nil
}

// cancelledKey holds the tasks cancelled lately (see Queue.cancelled).
const cancelledKey = "cancelled"

// CancelledMax bounds the cancelled tasks the queue remembers. One forgotten is still
// not run: its worker's start is refused by the task's record, which says cancelled.
const CancelledMax = 4096

func (q *Queue) setCancelled(ids []uuid.UUID) {
	q.cancelled, q.cancelledSet = ids, make(map[uuid.UUID]struct{}, len(ids))
	for _, id := range ids {
		q.cancelledSet[id] = struct{}{}
	}
}

// isCancelled reports whether task id was cancelled lately (one map lookup: the
// normal path pays nothing more).
func (q *Queue) isCancelled(id uuid.UUID) bool {
	_, ok := q.cancelledSet[id]
	return ok
}

// txn is one change of the queue's state, applied by commit all at once.
type txn struct {
	m     *meta
	nodes map[string]*nodeState // changed lease keys (a copy each)
	ops   []Op
	added map[string][]byte // entries written by this txn, not yet in the store
	now   time.Time
}

func (q *Queue) begin() *txn {
	c := &meta{Head: maps.Clone(q.m.Head), Tail: maps.Clone(q.m.Tail), Idle: slices.Clone(q.m.Idle), Nodes: slices.Clone(q.m.Nodes), Room: maps.Clone(q.m.Room), Rev: q.m.Rev}
	return &txn{m: c, nodes: map[string]*nodeState{}, added: map[string][]byte{}, now: q.now()}
}

// put writes entry key within t.
func (t *txn) put(key string, data []byte) {
	t.ops = append(t.ops, Op{Key: key, Value: data})
	t.added[key] = data
}

// node returns the lease key of node for writing within t.
func (t *txn) node(q *Queue, node string) *nodeState {
	if ns, ok := t.nodes[node]; ok {
		return ns
	}
	ns := &nodeState{}
	if cur, ok := q.nodes[node]; ok {
		*ns = *cur
		ns.Leases = slices.Clone(cur.Leases)
	}
	if !slices.Contains(t.m.Nodes, node) {
		t.m.Nodes = append(t.m.Nodes, node)
	}
	t.nodes[node] = ns
	return ns
}

// add appends a to the tail of its priority, stamped with the queue's time when it
// has none (a re-queued attempt).
func (t *txn) add(a task.Assignment) error {
	if a.Enqueued.IsZero() {
		a.Enqueued = t.now.UTC()
	}
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode queue entry: %w", err)
	}
	t.put(entryKey(a.Priority, t.m.Tail[a.Priority]), data)
	t.m.Tail[a.Priority]++
	return nil
}

// unshift puts as back at the head of their priorities, in order.
func (t *txn) unshift(as []task.Assignment) error {
	for i := len(as) - 1; i >= 0; i-- {
		a := as[i]
		if t.m.Head[a.Priority] == 0 {
			if err := t.add(a); err != nil { // a queue of an older layout: no room before the head
				return err
			}
			continue
		}
		data, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("encode queue entry: %w", err)
		}
		t.m.Head[a.Priority]--
		t.put(entryKey(a.Priority, t.m.Head[a.Priority]), data)
	}
	return nil
}

// take removes the next entry of the highest priority that has one; ok=false when the
// queue is empty.
func (q *Queue) take(ctx context.Context, t *txn) (a task.Assignment, ok bool, err error) {
	for _, p := range priorities {
		for t.m.Tail[p] > t.m.Head[p] {
			key := entryKey(p, t.m.Head[p])
			data, ok := t.added[key]
			if !ok {
				data, ok = q.cache[key]
			}
			if !ok {
				var err error
				if data, err = q.store.Get(ctx, key); err != nil {
					return a, false, fmt.Errorf("read queue entry %s: %w", key, err)
				}
			}
			t.m.Head[p]++
			t.ops = append(t.ops, Op{Key: key})
			if data == nil || json.Unmarshal(data, &a) != nil {
				continue // a missing or corrupt entry cannot be run; skip it rather than block the queue
			}
			if q.handedOut(t, a.ID()) {
				continue // a second entry of one attempt (a retried enqueue): it runs once
			}
			if q.isCancelled(a.TaskID) {
				continue // the task was cancelled while it waited: it leaves the queue here
			}
			return a, true, nil
		}
	}
	return a, false, nil
}

// handedOut reports whether attempt id is leased now, or ended lately on this host.
func (q *Queue) handedOut(t *txn, id task.AttemptID) bool {
	if _, ok := q.ended[id]; ok {
		return true
	}
	leased := func(ns *nodeState) bool {
		return slices.ContainsFunc(ns.Leases, func(l Lease) bool { return l.Assignment.ID() == id })
	}
	for node, ns := range q.nodes {
		if cur, ok := t.nodes[node]; ok {
			ns = cur
		}
		if leased(ns) {
			return true
		}
	}
	for node, ns := range t.nodes {
		if _, known := q.nodes[node]; !known && leased(ns) {
			return true
		}
	}
	return false
}

// endedMax bounds the attempts remembered as ended (for handedOut).
const endedMax = 1 << 16

// remember that attempt id ended (done, or lost and re-queued as the next attempt).
func (q *Queue) endedNow(id task.AttemptID) {
	if q.ended == nil || len(q.ended) >= endedMax {
		q.ended = map[task.AttemptID]struct{}{}
	}
	q.ended[id] = struct{}{}
}

// lease records a handed to node (to its slot, or to its buffer when slot is "") under
// a new lease.
func (q *Queue) lease(t *txn, node, slot string, a task.Assignment, now time.Time) Grant {
	a.Dispatched = now.UTC()
	ns := t.node(q, node)
	ns.Seq++
	g := Grant{Slot: slot, Seq: ns.Seq, Assignment: a}
	// The lease keeps the assignment without its spec: a node's lease key is written at
	// every sync that changes it, with all of the node's leases (up to its slots and
	// PrefetchMax), and a spec may be 4 KiB. An attempt queued again from a lease
	// (lost, refused) has its worker read the task's record instead.
	l := Lease{Grant: g, Incarnation: ns.Incarnation, Granted: now}
	l.Assignment.Spec = nil
	ns.Leases = append(ns.Leases, l)
	return g
}

// lose queues the next attempt of every lease of node that lost says is lost, and
// drops those leases.
func (q *Queue) lose(t *txn, node string, lost func(Lease) bool) error {
	cur, ok := q.nodes[node]
	if pending, inTxn := t.nodes[node]; inTxn {
		cur, ok = pending, true
	}
	if !ok || !slices.ContainsFunc(cur.Leases, lost) {
		return nil
	}
	ns := t.node(q, node)
	var keep []Lease
	for _, l := range ns.Leases {
		if !lost(l) {
			keep = append(keep, l)
			continue
		}
		if err := t.add(task.Retry(l.Assignment)); err != nil {
			return err
		}
		q.endedNow(l.Assignment.ID())
		q.Lost++
	}
	ns.Leases = keep
	return nil
}

// sweep loses the leases of nodes that have not synced for LeaseTTL, and of leases
// that waited LeaseTTL for their node to report them, and drops the idle slots of
// silent nodes.
func (q *Queue) sweep(t *txn, now time.Time) error {
	if now.Sub(q.swept) < sweepEvery {
		return nil
	}
	q.swept = now
	for _, node := range slices.Sorted(maps.Keys(q.nodes)) {
		if _, ok := q.seen[node]; !ok {
			q.seen[node] = now
		}
		silent := now.Sub(q.seen[node]) > LeaseTTL
		seen := q.nodes[node].Seen
		// A lease the node has not reported seeing within the TTL never reached it; but
		// one whose push is still on its way is judged by the push's outcome.
		if err := q.lose(t, node, func(l Lease) bool {
			if l.Pushed && q.inFlight(l.Assignment.ID()) {
				return false
			}
			return silent || (l.Pushed || l.Seq > seen) && now.Sub(later(l.Granted, q.since)) > LeaseTTL
		}); err != nil {
			return err
		}
	}
	silent := func(n string) bool { seen, known := q.seen[n]; return known && now.Sub(seen) > LeaseTTL }
	t.m.Idle = slices.DeleteFunc(t.m.Idle, func(s string) bool {
		n, err := task.SlotNode(s)
		return err != nil || silent(n)
	})
	maps.DeleteFunc(t.m.Room, func(n string, _ int) bool { return silent(n) })
	return nil
}

// sameJSON reports whether v encodes as data (maps encode in key order).
func sameJSON(v any, data []byte) bool {
	cur, err := json.Marshal(v)
	return err == nil && bytes.Equal(cur, data)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// commitTimeout bounds one write of the queue's state.
const commitTimeout = 10 * time.Second

// commit writes t in one transaction. The write is not cut short when the caller gives
// up (an actor call that timed out): a write cancelled halfway leaves its outcome
// unknown. When it fails all the same, its outcome is unknown (it may have been
// applied), so the cached state is dropped and the next operation reads the stored one:
// writing on from a stale cache would put a new entry on the key of one already stored,
// and lose that task.
func (q *Queue) commit(ctx context.Context, t *txn) error {
	ops := t.ops
	for _, node := range slices.Sorted(maps.Keys(t.nodes)) {
		ns := t.nodes[node]
		if len(ns.Leases) == 0 && ns.Incarnation == "" {
			ops = append(ops, Op{Key: leaseKey(node)})
			t.m.Nodes = slices.DeleteFunc(t.m.Nodes, func(n string) bool { return n == node })
			continue
		}
		data, err := json.Marshal(ns)
		if err != nil {
			return fmt.Errorf("encode leases of %s: %w", node, err)
		}
		ns.enc = data
		if cur, ok := q.nodes[node]; ok && bytes.Equal(cur.enc, data) {
			continue // a heartbeat that changed nothing writes nothing
		}
		ops = append(ops, Op{Key: leaseKey(node), Value: data})
	}
	// The meta key is written with every other write (its revision moves), and on its
	// own only when it changed: only then is it compared, encoded as it stands.
	changed := len(ops) > 0
	if !changed {
		data, err := json.Marshal(t.m)
		if err != nil {
			return fmt.Errorf("encode queue meta: %w", err)
		}
		changed = !sameJSON(q.m, data)
	}
	if changed {
		t.m.Rev = q.m.Rev + 1
		data, err := json.Marshal(t.m)
		if err != nil {
			return fmt.Errorf("encode queue meta: %w", err)
		}
		ops = append(ops, Op{Key: "meta", Value: data})
	}
	if len(ops) > 0 {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		defer cancel()
		if err := q.store.Apply(wctx, ops); err != nil {
			q.m, q.nodes, q.cache = nil, nil, nil
			return fmt.Errorf("write queue state: %w", err)
		}
	}
	q.m = t.m
	q.remember(t.ops)
	for node, ns := range t.nodes {
		if slices.Contains(t.m.Nodes, node) {
			q.nodes[node] = ns
		} else {
			delete(q.nodes, node)
		}
	}
	return nil
}

// Depth reports how many tasks wait, how many slots are idle and how many attempts are
// leased.
func (q *Queue) Depth(ctx context.Context) (Depth, error) {
	if err := q.load(ctx); err != nil {
		return Depth{}, err
	}
	return q.depth(), nil
}

// Kept is the depth as this host last saw it, without reading the store; false when it
// keeps no state (nothing loaded yet, or dropped after a failed write). For metrics.
func (q *Queue) Kept() (Depth, bool) {
	if q.m == nil {
		return Depth{}, false
	}
	return q.depth(), true
}

func (q *Queue) depth() Depth {
	d := Depth{
		High:   q.m.Tail[task.PriorityHigh] - q.m.Head[task.PriorityHigh],
		Normal: q.m.Tail[task.PriorityNormal] - q.m.Head[task.PriorityNormal],
		Idle:   len(q.m.Idle),
	}
	for _, ns := range q.nodes {
		d.Leased += len(ns.Leases)
	}
	for _, n := range q.m.Room {
		d.Room += n
	}
	return d
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

// Sweep runs the lease sweep on its own (the backstop reminder calls it).
func (q *Queue) Sweep(ctx context.Context) error {
	if err := q.load(ctx); err != nil {
		return err
	}
	t := q.begin()
	if err := q.takeBack(t); err != nil {
		return err
	}
	q.swept = time.Time{}
	if err := q.sweep(t, q.now()); err != nil {
		return err
	}
	return q.commit(ctx, t)
}

// Enqueue adds assignments in order. Each goes straight to an idle slot when there is
// one (and nothing of its priority or higher waits); otherwise it waits its turn. It
// returns how many were dispatched at once.
func (q *Queue) Enqueue(ctx context.Context, as []task.Assignment) (dispatched int, err error) {
	for _, a := range as {
		if a.Priority != task.PriorityHigh && a.Priority != task.PriorityNormal {
			return 0, fmt.Errorf("%w: priority %q (want high or normal)", ErrBadRequest, a.Priority)
		}
	}
	if err := q.load(ctx); err != nil {
		return 0, err
	}
	// Stamped here, in the queue's turn, so that enqueue and dispatch times of all
	// tasks come from one clock and order exactly.
	now := q.now()
	as = slices.Clone(as)
	for i := range as {
		as[i].Enqueued = now.UTC()
	}
	t := q.begin()
	if err := q.takeBack(t); err != nil {
		return 0, err
	}
	if err := q.sweep(t, now); err != nil {
		return 0, err
	}
	// An attempt handed out already (a retried enqueue whose first try got through) is
	// not queued again.
	// Nor is an attempt of a task cancelled meanwhile.
	as = slices.DeleteFunc(as, func(a task.Assignment) bool { return q.handedOut(t, a.ID()) || q.isCancelled(a.TaskID) })
	// Idle slots, then the room nodes keep for pushed work, get the first attempts at
	// once (those that waited first, then the new ones): leased in this turn's
	// transaction, and pushed outside the turn (a push is a call to another sidecar: the
	// queue's turns do not wait for it). What a push does not deliver comes back with the
	// next turn (takeBack), or, if this host is gone by then, through the lease.
	grants, as, err := q.dispatch(ctx, t, as, now)
	if err != nil {
		return 0, err
	}
	for _, a := range as {
		if err := t.add(a); err != nil {
			return 0, err
		}
	}
	// The pushes go out as the turn writes its leases, not after: a push is a call
	// through two sidecars and the write a call through this one, so the work reaches
	// its node a write's round trip sooner (submit → started at 10 tasks/s: see
	// docs/benchmarks-history.md, "The thirteenth session"). No sync of the node can act on a push before the write
	// has ended: a sync is a turn, and this turn holds the queue until then. A write
	// that fails (or whose outcome is unknown) leaves the pushed attempts without
	// durable leases: the enqueue fails and is tried again, the waiting attempts taken
	// are still queued in the stored state, and a node's next sync drops what it holds
	// without a lease; an attempt may then run twice, as at-least-once allows, and the
	// storekeeper keeps its first result. A crash after the write finds the leases and
	// re-queues what no node reports.
	if len(grants) > 0 {
		q.startPush(grants)
		q.goPush(func() { q.pushAll(grants) })
	}
	if err := q.commit(ctx, t); err != nil {
		return 0, err
	}
	return len(grants), nil
}

// dispatch leases attempts to the idle slots and then to the nodes' room, in t: what
// waits in the queue first (in order), then the new attempts as. It returns the grants
// to push and the new attempts left over, to be queued.
func (q *Queue) dispatch(ctx context.Context, t *txn, as []task.Assignment, now time.Time) ([]handed, []task.Assignment, error) {
	next := func() (task.Assignment, bool, error) {
		if len(as) == 0 || q.waiting(t.m, as[0].Priority) {
			a, ok, err := q.take(ctx, t)
			if err != nil || ok || len(as) == 0 {
				return a, ok, err
			}
		}
		a := as[0]
		as = as[1:]
		return a, true, nil
	}
	var grants []handed
	if len(t.m.Idle) > 0 {
		taken := map[int]bool{}
		for _, k := range q.pushable(t.m.Idle, now) {
			node, err := task.SlotNode(t.m.Idle[k])
			if err != nil {
				return nil, nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
			}
			a, ok, err := next()
			if err != nil || !ok {
				break
			}
			grants = append(grants, handed{node, q.pushLease(t, node, t.m.Idle[k], a, now)})
			taken[k] = true
		}
		idle := t.m.Idle[:0:0]
		for k, slot := range t.m.Idle {
			if !taken[k] {
				idle = append(idle, slot)
			}
		}
		t.m.Idle = idle
	}
	// The room: one node takes what it can, then the next, so that one turn's attempts
	// go to as few nodes (push calls) as they need; each turn starts with the node after
	// the one the last turn started with, so that the nodes share the work.
	for _, node := range q.byRoom(t.m.Room, now) {
		for t.m.Room[node] > 0 {
			a, ok, err := next()
			if err != nil {
				return nil, nil, err
			}
			if !ok {
				return grants, as, nil
			}
			grants = append(grants, handed{node, q.pushLease(t, node, "", a, now)})
			t.m.Room[node]--
		}
	}
	return grants, as, nil
}

// pushLease leases a to slot of node (or to its buffer when slot is ""), marked as
// pushed.
func (q *Queue) pushLease(t *txn, node, slot string, a task.Assignment, now time.Time) Grant {
	g := q.lease(t, node, slot, a, now)
	ls := t.node(q, node).Leases
	ls[len(ls)-1].Pushed = true
	return g
}

// byRoom returns the nodes with room that the queue may push to, in turns: by name,
// starting after the node the last call started with.
func (q *Queue) byRoom(room map[string]int, now time.Time) []string {
	var nodes []string
	for node, n := range room {
		if n > 0 && !q.suspended(node, now) {
			nodes = append(nodes, node)
		}
	}
	if len(nodes) == 0 {
		return nil
	}
	slices.Sort(nodes)
	i, _ := slices.BinarySearch(nodes, q.roomTurn+"\x00")
	i %= len(nodes)
	q.roomTurn = nodes[i]
	return append(nodes[i:], nodes[:i]...)
}

// unlease puts refused grants back at the head of the queue and drops their leases. A
// grant whose lease is gone already (released, or lost and re-queued) is skipped.
func (q *Queue) unlease(t *txn, refused []handed) error {
	var back []task.Assignment
	for _, h := range refused {
		g := h.grant
		ns := t.node(q, h.node)
		i := slices.IndexFunc(ns.Leases, func(l Lease) bool { return l.Seq == g.Seq && l.Assignment.ID() == g.Assignment.ID() })
		if i < 0 {
			continue
		}
		ns.Leases = slices.Delete(ns.Leases, i, i+1)
		a := g.Assignment
		a.Dispatched = time.Time{}
		back = append(back, a)
	}
	return t.unshift(back)
}

// inFlight reports whether attempt id's push has not returned yet.
func (q *Queue) inFlight(id task.AttemptID) bool {
	q.returnedMu.Lock()
	defer q.returnedMu.Unlock()
	_, ok := q.pushing[id]
	return ok
}

// startPush records grants as being pushed, until pushAll has their outcome.
func (q *Queue) startPush(grants []handed) {
	q.returnedMu.Lock()
	defer q.returnedMu.Unlock()
	if q.pushing == nil {
		q.pushing = map[task.AttemptID]struct{}{}
	}
	for _, h := range grants {
		q.pushing[h.grant.Assignment.ID()] = struct{}{}
	}
}

// pushAll pushes grants to their nodes, one call per node, all nodes at once, outside
// the queue's turn, and keeps the grants that did not reach their node for the next
// turn (takeBack).
func (q *Queue) pushAll(grants []handed) {
	byNode := map[string][]int{} // node → indexes of its grants
	for i, h := range grants {
		byNode[h.node] = append(byNode[h.node], i)
	}
	outcome := make([]*returned, len(grants)) // nil: delivered
	var wg sync.WaitGroup
	for node, idx := range byNode {
		wg.Go(func() {
			gs := make([]Grant, len(idx))
			for j, i := range idx {
				gs[j] = grants[i].grant
			}
			no, err := q.push(context.Background(), node, gs)
			for _, i := range idx {
				if err != nil || slices.Contains(no, grants[i].grant.Assignment.ID()) {
					outcome[i] = &returned{handed: grants[i], failed: err != nil}
				}
			}
		})
	}
	wg.Wait()
	q.returnedMu.Lock()
	defer q.returnedMu.Unlock()
	for _, h := range grants {
		delete(q.pushing, h.grant.Assignment.ID())
	}
	for _, r := range outcome { // in grant order, so that takeBack keeps FIFO
		if r != nil {
			q.returned = append(q.returned, *r)
		}
	}
}

// takeBack puts the grants whose push did not deliver them back at the head of the
// queue, in t. A push that failed may have delivered all the same (a call that timed
// out): its attempt is marked, so whoever gets it next checks the task's record before
// computing, and its node gets work only from its own syncs for PushSuspend. A grant
// its node has reported meanwhile (refused, or taken after all) is left as the report
// made it.
func (q *Queue) takeBack(t *txn) error {
	q.returnedMu.Lock()
	back := q.returned
	q.returned = nil
	q.returnedMu.Unlock()
	if len(back) == 0 {
		return nil
	}
	grants := make([]handed, len(back))
	for i, r := range back {
		grants[i] = r.handed
		if r.failed {
			grants[i].grant.Assignment.Redispatched = true
			if q.pushFailed == nil {
				q.pushFailed = map[string]time.Time{}
			}
			q.pushFailed[r.node] = t.now
		}
	}
	return q.unlease(t, grants)
}

// pushable returns the indexes of the idle slots the queue may push to: those of nodes
// no push failed to within PushSuspend. A node whose push failed (its outcome unknown:
// a sidecar whose route to the node hangs, say) gets work only from its own syncs for a
// while, so that the queue's turns are not each held for a push's whole timeout.
func (q *Queue) pushable(idle []string, now time.Time) []int {
	var out []int
	for k, slot := range idle {
		if node, err := task.SlotNode(slot); err == nil && q.suspended(node, now) {
			continue
		}
		out = append(out, k)
	}
	return out
}

// suspended reports whether a push to node failed within PushSuspend.
func (q *Queue) suspended(node string, now time.Time) bool {
	failed, ok := q.pushFailed[node]
	return ok && now.Sub(failed) < PushSuspend
}

// waiting reports whether a task of priority p or higher is queued.
func (q *Queue) waiting(m *meta, p task.Priority) bool {
	for _, pr := range priorities {
		if m.Tail[pr] > m.Head[pr] {
			return true
		}
		if pr == p {
			return false
		}
	}
	return false
}

// SyncRequest is a worker node's sync: who it is, what it holds, what finished, and
// which of its slots are free. A node sends one at a time.
type SyncRequest struct {
	Node string `json:"node"`
	// Incarnation names the node's process (new at every start): leases given to an
	// earlier process that this one does not hold are lost.
	Incarnation string `json:"incarnation"`
	// Seen is the highest lease number the process has received.
	Seen uint64 `json:"seen"`
	// Held are the attempts the process holds: running, or their result on its way.
	Held []task.AttemptID `json:"held,omitempty"`
	// Done are attempts that ended: their result stored, or failed and (Requeue) to be
	// run again at high priority, or given up.
	Done []Done `json:"done,omitempty"`
	// Free are the node's slots that can take an attempt now (all of them, every time:
	// the idle list heals from any lost message).
	Free []string `json:"free,omitempty"`
	// Prefetch asks for up to this many attempts beyond the free slots, for the node's
	// buffer, from what waits now (at most PrefetchMax).
	Prefetch int `json:"prefetch,omitempty"`
	// Room is how many attempts beyond the free slots the node takes until its next
	// sync (at most PrefetchMax): this sync gives its buffer what waits of them, and the
	// queue pushes new work into the rest as it arrives.
	Room int `json:"room,omitempty"`
	// Draining says the node takes nothing more: its slots leave the idle list.
	Draining bool `json:"draining,omitempty"`
}

// PrefetchMax bounds what one sync takes for a node's buffer.
const PrefetchMax = 256

// Done is an attempt that ended on its node.
type Done struct {
	task.AttemptID
	// Requeue queues the next attempt at high priority (the attempt failed and the task
	// has attempts left, or the node gave it up).
	Requeue bool `json:"requeue,omitempty"`
	// Refused puts the attempt itself back at the head of the queue (the node could
	// not take a grant of its sync reply, or could not start it).
	Refused bool `json:"refused,omitempty"`
}

// SyncReply hands the free slots their next attempts and names held attempts the
// node should stop: Drop, their leases were lost (the node was taken for dead), and
// the task is queued again; Cancel, their task was cancelled by its user (the node
// cancels the computation, frees the slot and reports nothing more of them).
type SyncReply struct {
	Given []Grant `json:"given,omitempty"`
	// Room is the room the queue keeps for the node after this sync (see
	// SyncRequest.Room): what it may push to it beyond its idle slots.
	Room int `json:"room,omitempty"`
	// Idle are the node's slots the queue holds idle after this sync: it pushes the next
	// work to them (or to another node's) as it arrives. A node the queue does not push
	// to now (a push to it failed within PushSuspend) is told of neither idle slots nor
	// room, so that it asks for its work.
	Idle   []string         `json:"idle,omitempty"`
	Drop   []task.AttemptID `json:"drop,omitempty"`
	Cancel []task.AttemptID `json:"cancel,omitempty"`
}

// Sync takes a node's report (see SyncRequest) and hands its free slots their next
// tasks, highest priority first, FIFO within it; free slots left over join the idle
// list (once, however often they are reported).
func (q *Queue) Sync(ctx context.Context, req SyncRequest) (SyncReply, error) {
	if req.Node == "" || req.Incarnation == "" || slices.Contains(req.Free, "") || req.Prefetch < 0 || req.Room < 0 {
		return SyncReply{}, fmt.Errorf("%w: sync needs node, incarnation and non-empty slot names", ErrBadRequest)
	}
	for _, s := range req.Free {
		if n, err := task.SlotNode(s); err != nil || n != req.Node {
			return SyncReply{}, fmt.Errorf("%w: slot %q is not of node %q", ErrBadRequest, s, req.Node)
		}
	}
	if err := q.load(ctx); err != nil {
		return SyncReply{}, err
	}
	now := q.now()
	q.seen[req.Node] = now
	t := q.begin()
	if err := q.takeBack(t); err != nil {
		return SyncReply{}, err
	}
	reply, err := q.reconcile(t, req)
	if err != nil {
		return SyncReply{}, err
	}
	if err := q.sweep(t, now); err != nil {
		return SyncReply{}, err
	}
	// Slots of leases on their way to the node are busy, whatever the report says; the
	// pushes to its buffer on their way use up its room.
	var inFlight []string
	toBuffer := 0
	for _, l := range t.node(q, req.Node).Leases {
		switch {
		case (l.Pushed || l.Seq > req.Seen) && l.Slot != "":
			inFlight = append(inFlight, l.Slot)
		case l.Pushed && l.Slot == "":
			toBuffer++
		}
	}
	var free []string
	for _, s := range req.Free {
		if !slices.Contains(free, s) && !slices.Contains(inFlight, s) {
			free = append(free, s)
		}
	}
	if req.Draining {
		t.m.Idle = slices.DeleteFunc(t.m.Idle, func(s string) bool { n, _ := task.SlotNode(s); return n == req.Node })
		free = nil
	}
	for _, slot := range free {
		a, ok, err := q.take(ctx, t)
		if err != nil {
			return SyncReply{}, err
		}
		if !ok {
			if !slices.Contains(t.m.Idle, slot) {
				t.m.Idle = append(t.m.Idle, slot)
			}
			continue
		}
		reply.Given = append(reply.Given, q.lease(t, req.Node, slot, a, now))
		t.m.Idle = slices.DeleteFunc(t.m.Idle, func(s string) bool { return s == slot })
	}
	// Attempts ahead of need: the node keeps them in its buffer and starts one the
	// moment a slot frees, without waiting for a sync. Only from what waits already:
	// the buffer never keeps a task from an idle slot elsewhere. What waits goes into
	// the node's room now rather than at the next push.
	for range min(max(req.Prefetch, req.Room), PrefetchMax) {
		if req.Draining || len(reply.Given) < len(free) {
			break // the queue ran dry
		}
		a, ok, err := q.take(ctx, t)
		if err != nil {
			return SyncReply{}, err
		}
		if !ok {
			break
		}
		reply.Given = append(reply.Given, q.lease(t, req.Node, "", a, now))
	}
	// The room left: what the node asked for, less what this reply gave its buffer and
	// the pushes to its buffer still on their way (not reported held).
	reply.Room = min(req.Room, PrefetchMax) - max(0, len(reply.Given)-len(free)) - toBuffer
	if req.Draining || reply.Room <= 0 {
		reply.Room = 0
		delete(t.m.Room, req.Node)
	} else {
		if t.m.Room == nil {
			t.m.Room = map[string]int{}
		}
		t.m.Room[req.Node] = reply.Room
	}
	if q.suspended(req.Node, now) {
		reply.Room = 0
	} else {
		for _, s := range t.m.Idle {
			if n, _ := task.SlotNode(s); n == req.Node {
				reply.Idle = append(reply.Idle, s)
			}
		}
	}
	if err := q.commit(ctx, t); err != nil {
		return SyncReply{}, err
	}
	return reply, nil
}

// reconcile holds the node's report against its leases: finished ones are released
// (and re-queued when asked), held ones renewed, and lost ones re-queued. It returns
// the held attempts the queue no longer leases to the node.
func (q *Queue) reconcile(t *txn, req SyncRequest) (reply SyncReply, err error) {
	ns := t.node(q, req.Node)
	if req.Seen > ns.Seq {
		ns.Seq = req.Seen // the lease key was lost: never give a number the node has seen
	}
	ns.Seen = req.Seen
	leased := func(id task.AttemptID) bool {
		return slices.ContainsFunc(ns.Leases, func(l Lease) bool { return l.Assignment.ID() == id })
	}
	var back []handed
	for _, d := range req.Done {
		i := slices.IndexFunc(ns.Leases, func(l Lease) bool { return l.Assignment.ID() == d.AttemptID })
		if i < 0 {
			continue // released already (a repeated report), or taken for lost and re-queued
		}
		switch {
		case d.Refused:
			back = append(back, handed{req.Node, ns.Leases[i].Grant})
			continue // unlease drops it
		case d.Requeue:
			if err := t.add(task.Retry(ns.Leases[i].Assignment)); err != nil {
				return reply, err
			}
		}
		q.endedNow(d.AttemptID)
		ns.Leases = slices.DeleteFunc(ns.Leases, func(l Lease) bool { return l.Assignment.ID() == d.AttemptID })
	}
	if err := q.unlease(t, back); err != nil {
		return reply, err
	}
	for _, h := range req.Held {
		switch {
		case leased(h):
		case q.isCancelled(h.TaskID):
			reply.Cancel = append(reply.Cancel, h)
		default:
			reply.Drop = append(reply.Drop, h)
		}
	}
	for i := range ns.Leases {
		if slices.Contains(req.Held, ns.Leases[i].Assignment.ID()) {
			ns.Leases[i].Incarnation = req.Incarnation // a lease pushed to a new process is adopted
			ns.Leases[i].Pushed = false                // reported: the node's Seen covers it from now on
		}
	}
	if err := q.lose(t, req.Node, func(l Lease) bool {
		if slices.Contains(req.Held, l.Assignment.ID()) {
			return false
		}
		if l.Pushed {
			return false // its push may still be on its way (to this process, maybe)
		}
		return l.Incarnation != "" && l.Incarnation != req.Incarnation || // given to an earlier process
			l.Seq <= req.Seen // seen by this process, and no longer held
	}); err != nil {
		return reply, err
	}
	ns = t.node(q, req.Node)
	ns.Incarnation = req.Incarnation
	for i := range ns.Leases {
		if ns.Leases[i].Incarnation == "" {
			ns.Leases[i].Incarnation = req.Incarnation
		}
	}
	return reply, nil
}

// cacheMax bounds the entries kept in memory: the head of a short queue (where every
// dispatch happens under load) costs no read; a deep queue reads what is not cached.
const cacheMax = 16384

// remember keeps the entries ops wrote, while the cache has room, and forgets the ones
// they removed.
func (q *Queue) remember(ops []Op) {
	if q.cache == nil {
		q.cache = map[string][]byte{}
	}
	for _, op := range ops {
		switch {
		case op.Value == nil:
			delete(q.cache, op.Key)
		case len(op.Key) > 2 && op.Key[1] == ':' && len(q.cache) < cacheMax:
			q.cache[op.Key] = op.Value
		}
	}
}

// CancelReply says which of the cancelled tasks had an attempt leased (running on a
// node, or in its buffer): those nodes are told at their next sync (SyncReply.Cancel).
type CancelReply struct {
	Leased []task.AttemptID `json:"leased,omitempty"`
}

// Cancel takes tasks out of the queue for good, at their user's request: their leases
// are released (the node holding one is told to stop at its next sync, and nothing is
// queued again), and their waiting entries are skipped when they come up (the queue
// cannot find an entry without walking it, so the entry stays counted in the depth
// until then). The tasks are remembered durably (the "cancelled" key, the latest
// CancelledMax), so a new host of the queue keeps skipping them; the task's record,
// cancelled before this call, is what makes it final: a worker that gets an attempt of
// a cancelled task anyway has its start refused and drops it.
func (q *Queue) Cancel(ctx context.Context, ids []uuid.UUID) (CancelReply, error) {
	var reply CancelReply
	if err := q.load(ctx); err != nil {
		return reply, err
	}
	t := q.begin()
	if err := q.takeBack(t); err != nil {
		return reply, err
	}
	if err := q.sweep(t, t.now); err != nil {
		return reply, err
	}
	cancelled := slices.Clone(q.cancelled)
	set := maps.Clone(q.cancelledSet)
	if set == nil {
		set = map[uuid.UUID]struct{}{}
	}
	changed := false
	for _, id := range ids {
		if _, ok := set[id]; !ok {
			set[id] = struct{}{}
			cancelled = append(cancelled, id)
			changed = true
		}
	}
	for len(cancelled) > CancelledMax {
		delete(set, cancelled[0])
		cancelled = cancelled[1:]
	}
	for _, node := range slices.Sorted(maps.Keys(q.nodes)) {
		cur := q.nodes[node]
		if pending, ok := t.nodes[node]; ok {
			cur = pending
		}
		gone := func(l Lease) bool { _, ok := set[l.Assignment.TaskID]; return ok }
		if !slices.ContainsFunc(cur.Leases, gone) {
			continue
		}
		ns := t.node(q, node)
		for _, l := range ns.Leases {
			if gone(l) {
				reply.Leased = append(reply.Leased, l.Assignment.ID())
				q.endedNow(l.Assignment.ID())
			}
		}
		ns.Leases = slices.DeleteFunc(ns.Leases, gone)
	}
	if changed {
		data, err := json.Marshal(cancelled)
		if err != nil {
			return reply, fmt.Errorf("encode cancelled tasks: %w", err)
		}
		t.ops = append(t.ops, Op{Key: cancelledKey, Value: data})
	}
	if err := q.commit(ctx, t); err != nil {
		return reply, err
	}
	q.cancelled, q.cancelledSet = cancelled, set
	return reply, nil
}

// PushRequest is what the queue sends a worker node (actor Worker.<node>, method
// components.WorkerRun) to hand idle slots their attempts.
type PushRequest struct {
	Grants []Grant `json:"grants"`
}

// PushReply names the attempts the node refused.
type PushReply struct {
	Refused []task.AttemptID `json:"refused,omitempty"`
}

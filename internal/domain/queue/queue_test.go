package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgrid/taskgrid/internal/domain/task"
)

// memStore is an in-memory Store; failNext makes the next Apply fail without applying,
// failAfterNext applies the next one and then reports it failed (outcome unknown).
type memStore struct {
	mu            sync.Mutex
	data          map[string][]byte
	failNext      bool
	failAfterNext bool
	gets          int           // Get calls so far
	hold          chan struct{} // when set, an Apply waits for it to close
}

func newMemStore() *memStore { return &memStore{data: map[string][]byte{}} }

func (s *memStore) Get(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets++
	return s.data[key], nil
}

func (s *memStore) Apply(_ context.Context, ops []Op) error {
	s.mu.Lock()
	if hold := s.hold; hold != nil {
		s.mu.Unlock()
		<-hold
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if s.failNext {
		s.failNext = false
		return errors.New("store down")
	}
	for _, op := range ops {
		if op.Value == nil {
			delete(s.data, op.Key)
		} else {
			s.data[op.Key] = op.Value
		}
	}
	if s.failAfterNext {
		s.failAfterNext = false
		return errors.New("write timed out")
	}
	return nil
}

// world is a queue over a memStore with a fake clock, and worker nodes that record
// what they were pushed.
type world struct {
	t      *testing.T
	store  *memStore
	q      *Queue
	clock  time.Time
	names  map[uuid.UUID]string
	pushed []string           // "slot=name#attempt", in push order
	grants map[string][]Grant // node → grants pushed to it and not collected
	refuse map[string]bool    // node → refuses every push
	down   map[string]bool    // node → push fails
	busy   map[string]string  // slot → refuses its grants in a push
	pushMu sync.Mutex
}

func newWorld(t *testing.T) *world {
	w := &world{
		t: t, store: newMemStore(), clock: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		names: map[uuid.UUID]string{}, grants: map[string][]Grant{}, refuse: map[string]bool{}, down: map[string]bool{}, busy: map[string]string{},
	}
	w.q = w.newQueue()
	return w
}

// newQueue is a new host of the same queue (the actor moved, or restarted).
func (w *world) newQueue() *Queue {
	q := New(w.store, w.push)
	q.now = func() time.Time { return w.clock }
	q.goPush = func(f func()) { f() } // pushes done when the call returns
	return q
}

func (w *world) push(_ context.Context, node string, grants []Grant) ([]task.AttemptID, error) {
	w.pushMu.Lock() // one push per node runs at once
	defer w.pushMu.Unlock()
	if w.down[node] {
		return nil, errors.New("node gone")
	}
	var refused []task.AttemptID
	for _, g := range grants {
		if w.refuse[node] || w.busy[g.Slot] != "" {
			refused = append(refused, g.Assignment.ID())
			continue
		}
		label := w.label(g)
		if g.Slot == "" {
			label = node + "+" + label // to the node's buffer
		}
		w.pushed = append(w.pushed, label)
		w.grants[node] = append(w.grants[node], g)
	}
	return refused, nil
}

func (w *world) label(g Grant) string {
	return fmt.Sprintf("%s=%s#%d", g.Slot, w.names[g.Assignment.TaskID], g.Assignment.Attempt)
}

func (w *world) task(name string, p task.Priority) task.Assignment {
	id := uuid.New()
	w.names[id] = name
	return task.Assignment{TaskID: id, Attempt: 1, Priority: p}
}

func (w *world) enqueue(as ...task.Assignment) int {
	w.t.Helper()
	n, err := w.q.Enqueue(w.t.Context(), as)
	if err != nil {
		w.t.Fatalf("Enqueue: %v", err)
	}
	return n
}

func (w *world) sync(req SyncRequest) SyncReply {
	w.t.Helper()
	if req.Incarnation == "" {
		req.Incarnation = "inc-1"
	}
	reply, err := w.q.Sync(w.t.Context(), req)
	if err != nil {
		w.t.Fatalf("Sync(%+v): %v", req, err)
	}
	return reply
}

func (w *world) labels(gs []Grant) []string {
	var out []string
	for _, g := range gs {
		out = append(out, w.label(g))
	}
	return out
}

func (w *world) depth() Depth {
	w.t.Helper()
	d, err := w.q.Depth(w.t.Context())
	if err != nil {
		w.t.Fatal(err)
	}
	return d
}

func ids(gs ...Grant) []task.AttemptID {
	var out []task.AttemptID
	for _, g := range gs {
		out = append(out, g.Assignment.ID())
	}
	return out
}

func done(gs ...Grant) []Done {
	var out []Done
	for _, g := range gs {
		out = append(out, Done{AttemptID: g.Assignment.ID()})
	}
	return out
}

func maxSeq(gs []Grant) uint64 {
	var m uint64
	for _, g := range gs {
		m = max(m, g.Seq)
	}
	return m
}

// High before normal, FIFO within a priority, one task per free slot per sync.
func TestPriorityThenFIFO(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.enqueue(w.task("n1", task.PriorityNormal), w.task("n2", task.PriorityNormal), w.task("h1", task.PriorityHigh),
		w.task("n3", task.PriorityNormal), w.task("h2", task.PriorityHigh))
	if d := w.depth(); d != (Depth{High: 2, Normal: 3}) {
		t.Fatalf("depth = %+v", d)
	}
	var got []string
	var last []Grant
	var seen uint64
	for range 6 {
		reply := w.sync(SyncRequest{Node: "vm", Free: []string{"vm-0"}, Done: done(last...), Seen: seen})
		got = append(got, w.labels(reply.Given)...)
		last, seen = reply.Given, max(seen, maxSeq(reply.Given))
	}
	want := []string{"vm-0=h1#1", "vm-0=h2#1", "vm-0=n1#1", "vm-0=n2#1", "vm-0=n3#1"}
	if !slices.Equal(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
	if d := w.depth(); d != (Depth{Idle: 1}) {
		t.Fatalf("depth after all done = %+v, want only the idle slot", d)
	}
}

// Free slots of several syncs join the idle list once; an enqueue pushes to them, one
// call per node, under leases; with more tasks than slots the rest wait.
func TestIdleSlotsGetWorkPushed(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	for range 2 {
		w.sync(SyncRequest{Node: "a", Free: []string{"a-0", "a-1"}})
	}
	w.sync(SyncRequest{Node: "b", Free: []string{"b-0"}})
	if d := w.depth(); d.Idle != 3 {
		t.Fatalf("idle = %d, want 3 (each slot once)", d.Idle)
	}
	n := w.enqueue(w.task("t1", task.PriorityNormal), w.task("t2", task.PriorityNormal), w.task("t3", task.PriorityNormal), w.task("t4", task.PriorityNormal))
	if n != 3 {
		t.Fatalf("dispatched %d, want 3", n)
	}
	slices.Sort(w.pushed)
	if want := []string{"a-0=t1#1", "a-1=t2#1", "b-0=t3#1"}; !slices.Equal(w.pushed, want) {
		t.Fatalf("pushed %v, want %v", w.pushed, want)
	}
	if d := w.depth(); d != (Depth{Normal: 1, Leased: 3}) {
		t.Fatalf("depth = %+v, want 1 waiting and 3 leased", d)
	}
}

// A push that fails or is refused puts its tasks back at the head with the next turn,
// ahead of what came after them, drops the slots from the idle list, and keeps the
// others' pushes.
func TestFailedPushPutsTasksBackAtTheHead(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}})
	w.sync(SyncRequest{Node: "b", Free: []string{"b-0", "b-1"}})
	w.down["a"] = true
	w.busy["b-1"] = "something else"
	n := w.enqueue(w.task("t1", task.PriorityNormal), w.task("t2", task.PriorityNormal), w.task("t3", task.PriorityNormal), w.task("t4", task.PriorityNormal))
	if n != 3 {
		t.Fatalf("handed out %d, want 3 (one per idle slot)", n)
	}
	if want := []string{"b-0=t2#1"}; !slices.Equal(w.pushed, want) {
		t.Fatalf("pushed %v, want %v", w.pushed, want)
	}
	if d := w.depth(); d != (Depth{Normal: 1, Leased: 3}) {
		t.Fatalf("depth = %+v, want 1 waiting, 3 leased (the pushes' outcomes count at the next turn), no idle slot", d)
	}
	reply := w.sync(SyncRequest{Node: "b", Free: []string{"b-1"}}) // b-0's push not seen yet: in flight
	if got, want := w.labels(reply.Given), []string{"b-1=t1#1"}; !slices.Equal(got, want) {
		t.Fatalf("next sync got %v, want %v (the failed push's task first)", got, want)
	}
	// a's push failed without an answer (a may have taken t1): marked, so the next
	// taker checks the record first. b-1 refused t3 outright: not marked.
	if !reply.Given[0].Assignment.Redispatched {
		t.Error("a task whose push failed is not marked Redispatched")
	}
	reply = w.sync(SyncRequest{Node: "c", Free: []string{"c-0"}})
	if got := w.labels(reply.Given); !slices.Equal(got, []string{"c-0=t3#1"}) || reply.Given[0].Assignment.Redispatched {
		t.Errorf("next grant %v (redispatched %v), want t3 unmarked", got, reply.Given[0].Assignment.Redispatched)
	}
	if d := w.depth(); d != (Depth{Normal: 1, Leased: 3}) {
		t.Fatalf("depth = %+v, want t4 waiting and t1, t2, t3 leased", d)
	}
}

// A refused push that its node reports in a sync before the queue's next turn took it
// back is put back once, not twice.
func TestRefusedPushReportedByItsNodeComesBackOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.sync(SyncRequest{Node: "b", Free: []string{"b-0"}})
	w.busy["b-0"] = "something else"
	t1 := w.task("t1", task.PriorityNormal)
	w.enqueue(t1)
	if len(w.pushed) != 0 {
		t.Fatalf("pushed %v, want nothing (refused)", w.pushed)
	}
	// The node's report of the refusal and the push's reply both reach the queue.
	reply := w.sync(SyncRequest{Node: "b", Done: []Done{{AttemptID: t1.ID(), Refused: true}}, Seen: 1})
	if len(reply.Given) != 0 {
		t.Fatalf("sync without free slots got %v", w.labels(reply.Given))
	}
	if d := w.depth(); d != (Depth{Normal: 1}) {
		t.Fatalf("depth = %+v, want t1 waiting once, nothing leased", d)
	}
}

// After a push to a node fails (its outcome unknown), the queue pushes nothing to that
// node for PushSuspend: its idle slots get work from its own syncs, and an enqueue does
// not wait on a route that hangs. Once PushSuspend has passed, pushes go again.
func TestFailedPushSuspendsPushesToTheNode(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}})
	w.down["a"] = true
	if n := w.enqueue(w.task("t1", task.PriorityNormal)); n != 1 || len(w.pushed) != 0 {
		t.Fatalf("handed out %d, pushed %v: want 1 handed out, nothing delivered (a is down)", n, w.pushed)
	}
	w.down["a"] = false
	w.clock = w.clock.Add(PushSuspend / 2)
	gb := w.sync(SyncRequest{Node: "b", Free: []string{"b-0"}}).Given // b takes t1
	w.sync(SyncRequest{Node: "a", Free: []string{"a-1"}})             // a-1 idle
	w.pushed = nil
	if n := w.enqueue(w.task("t2", task.PriorityNormal)); n != 0 || len(w.pushed) != 0 {
		t.Fatalf("dispatched %d, pushed %v: want nothing pushed to a within PushSuspend", n, w.pushed)
	}
	reply := w.sync(SyncRequest{Node: "a", Free: []string{"a-1"}})
	if got := w.labels(reply.Given); len(got) != 1 || got[0] != "a-1=t2#1" {
		t.Fatalf("a's sync got %v, want t2 for a-1", got)
	}
	for range int(PushSuspend / time.Second) { // both nodes keep their leases meanwhile
		w.clock = w.clock.Add(time.Second)
		w.sync(SyncRequest{Node: "a", Held: ids(reply.Given...), Seen: maxSeq(reply.Given)})
		w.sync(SyncRequest{Node: "b", Held: ids(gb...), Seen: maxSeq(gb)})
	}
	w.sync(SyncRequest{Node: "a", Free: []string{"a-2"}, Held: ids(reply.Given...), Seen: maxSeq(reply.Given)})
	w.pushed = nil
	if n := w.enqueue(w.task("t3", task.PriorityNormal)); n != 1 || !slices.Equal(w.pushed, []string{"a-2=t3#1"}) {
		t.Fatalf("dispatched %d, pushed %v: want t3 pushed to a-2 once PushSuspend has passed", n, w.pushed)
	}
}

// A sync's reply names the node's slots the queue holds idle, to push to: none while
// pushes to the node are suspended, and no room then either, so that the node asks for
// its work.
func TestSyncTellsTheIdleSlots(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	if reply := w.sync(SyncRequest{Node: "a", Free: []string{"a-0", "a-1"}}); !slices.Equal(reply.Idle, []string{"a-0", "a-1"}) {
		t.Fatalf("a's idle slots %v, want a-0 and a-1", reply.Idle)
	}
	if reply := w.sync(SyncRequest{Node: "b", Free: []string{"b-0"}}); !slices.Equal(reply.Idle, []string{"b-0"}) {
		t.Fatalf("b's idle slots %v, want b-0 alone", reply.Idle)
	}
	if n := w.enqueue(w.task("t1", task.PriorityNormal)); n != 1 || !slices.Equal(w.pushed, []string{"a-0=t1#1"}) {
		t.Fatalf("dispatched %d, pushed %v: want t1 pushed to a-0", n, w.pushed)
	}
	if reply := w.sync(SyncRequest{Node: "a", Free: []string{"a-1"}}); !slices.Equal(reply.Idle, []string{"a-1"}) {
		t.Fatalf("a's idle slots %v after t1's push, want a-1", reply.Idle)
	}
	w.down["a"] = true
	w.enqueue(w.task("t2", task.PriorityNormal)) // its push to a-1 fails
	w.down["a"] = false
	if reply := w.sync(SyncRequest{Node: "a", Free: []string{"a-1", "a-2"}, Room: 2}); len(reply.Idle) != 0 || reply.Room != 0 {
		t.Fatalf("a node whose push failed was told of idle slots %v and room %d, want none", reply.Idle, reply.Room)
	}
}

// A sync reply given after a push, with a higher lease number, may reach the node
// before the push does. The node's Seen then covers the pushed lease's number though the
// node has not got it: the lease is not taken for lost, and its slot stays busy, until
// the node reports it. A pushed lease that its node never reports is lost after LeaseTTL.
func TestPushOvertakenBySyncReply(t *testing.T) {
	t.Parallel()
	for _, reported := range []bool{true, false} {
		t.Run(fmt.Sprintf("reported=%v", reported), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			var later []func()
			w.q.goPush = func(f func()) { later = append(later, f) } // pushes on their way
			w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}})
			if n := w.enqueue(w.task("t1", task.PriorityNormal)); n != 1 {
				t.Fatalf("dispatched %d, want t1 pushed to a-0", n)
			}
			w.enqueue(w.task("t2", task.PriorityNormal))
			g2 := w.sync(SyncRequest{Node: "a", Free: []string{"a-1"}}).Given
			if got := w.labels(g2); !slices.Equal(got, []string{"a-1=t2#1"}) {
				t.Fatalf("given %v, want t2 for a-1", got)
			}
			w.enqueue(w.task("t3", task.PriorityNormal))
			// The node got t2 (lease 2) but not yet t1's push (lease 1).
			reply := w.sync(SyncRequest{Node: "a", Held: ids(g2...), Seen: maxSeq(g2), Free: []string{"a-0"}})
			if len(reply.Given) != 0 {
				t.Fatalf("given %v: a-0's pushed lease is on its way, the slot is busy", w.labels(reply.Given))
			}
			if d := w.depth(); d != (Depth{Normal: 1, Leased: 2}) {
				t.Fatalf("depth %+v, want t1 and t2 leased, t3 waiting (nothing lost)", d)
			}
			for _, f := range later {
				f()
			}
			if !slices.Contains(w.pushed, "a-0=t1#1") {
				t.Fatalf("pushed %v, want t1 to a-0", w.pushed)
			}
			held := ids(g2...)
			if reported {
				held = append(held, w.grants["a"][0].Assignment.ID())
			}
			for range 3 {
				w.clock = w.clock.Add(LeaseTTL / 2)
				w.sync(SyncRequest{Node: "a", Held: held, Seen: maxSeq(g2)})
			}
			want := Depth{Normal: 1, Leased: 2}
			if !reported {
				want = Depth{High: 1, Normal: 1, Leased: 1} // t1's next attempt, ahead of t3
			}
			if d := w.depth(); d != want {
				t.Fatalf("after %v: depth %+v, want %+v", 3*LeaseTTL/2, d, want)
			}
		})
	}
}

// A push that hangs past LeaseTTL (a node whose sidecar does not answer until the push's
// timeout) does not make its lease lost meanwhile: its outcome decides, and a failed push
// puts the same attempt back at the head, not the next one.
func TestHangingPushOutlivesTheLeaseTTL(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var later []func()
	w.q.goPush = func(f func()) { later = append(later, f) } // the push hangs
	w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}})
	if n := w.enqueue(w.task("t1", task.PriorityNormal)); n != 1 {
		t.Fatalf("dispatched %d, want t1 pushed to a-0", n)
	}
	for range 3 { // node b keeps the queue busy past the TTL; a stays silent
		w.clock = w.clock.Add(LeaseTTL)
		w.sync(SyncRequest{Node: "b"})
	}
	if d := w.depth(); d != (Depth{Leased: 1}) {
		t.Fatalf("depth %+v while the push hangs, want t1 still leased", d)
	}
	w.down["a"] = true
	for _, f := range later {
		f() // the push fails at last
	}
	reply := w.sync(SyncRequest{Node: "b", Free: []string{"b-0"}})
	if got, want := w.labels(reply.Given), []string{"b-0=t1#1"}; !slices.Equal(got, want) {
		t.Fatalf("given %v, want %v: the same attempt back, not a new one", got, want)
	}
}

// A node that stops syncing for LeaseTTL loses its leases: their tasks come back at
// high priority as the next attempt, ahead of normal ones, and its idle slots leave the
// idle list. A node that keeps syncing keeps its leases however long they run.
func TestSilentNodeLosesItsLeases(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.enqueue(w.task("long", task.PriorityNormal), w.task("lost", task.PriorityNormal), w.task("normal", task.PriorityNormal))
	ga := w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}}).Given
	gb := w.sync(SyncRequest{Node: "b", Free: []string{"b-0", "b-1"}}).Given // b-1 gets "normal"
	if len(ga) != 1 || len(gb) != 2 {
		t.Fatalf("grants %v %v", w.labels(ga), w.labels(gb))
	}
	w.sync(SyncRequest{Node: "b", Held: ids(gb[1]), Done: done(gb[0]), Seen: maxSeq(gb)}) // b-0 frees later
	w.sync(SyncRequest{Node: "b", Free: []string{"b-0"}, Held: ids(gb[1]), Seen: maxSeq(gb)})
	for range 5 { // a stays alive for 5 TTLs with its long task
		w.clock = w.clock.Add(LeaseTTL)
		w.sync(SyncRequest{Node: "a", Held: ids(ga...), Seen: maxSeq(ga)})
		w.sync(SyncRequest{Node: "b", Free: []string{"b-0"}, Held: ids(gb[1]), Seen: maxSeq(gb)})
	}
	if d := w.depth(); d.Leased != 2 || d.High != 0 {
		t.Fatalf("depth = %+v, want both leases kept while their nodes sync", d)
	}
	// b goes silent; a syncs on past the TTL.
	w.clock = w.clock.Add(LeaseTTL + time.Millisecond)
	w.sync(SyncRequest{Node: "a", Held: ids(ga...), Seen: maxSeq(ga)})
	if d := w.depth(); d != (Depth{High: 1, Leased: 1}) {
		t.Fatalf("depth = %+v, want b's lease lost (1 high waiting) and b-0 gone from the idle list", d)
	}
	reply := w.sync(SyncRequest{Node: "a", Done: done(ga...), Free: []string{"a-0"}, Seen: maxSeq(ga)})
	if got, want := w.labels(reply.Given), []string{"a-0=normal#2"}; !slices.Equal(got, want) {
		t.Fatalf("after the loss a-0 got %v, want %v", got, want)
	}
	if reply.Given[0].Assignment.Priority != task.PriorityHigh {
		t.Errorf("re-queued attempt has priority %s, want high", reply.Given[0].Assignment.Priority)
	}
}

// Held, done, refused, lost: the node's report against its leases, case by case.
func TestSyncReconcilesLeases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// report builds the second sync from the two grants of the first.
		report func(g []Grant) SyncRequest
		// want: the next grants to a-0 and a-1 (in this order), and what is dropped.
		wantGiven []string
		wantDrop  int
		wantDepth Depth
	}{
		{"held: kept", func(g []Grant) SyncRequest {
			return SyncRequest{Held: ids(g...), Seen: maxSeq(g)}
		}, nil, 0, Depth{Normal: 1, Leased: 2}},
		{"done: released", func(g []Grant) SyncRequest {
			return SyncRequest{Done: done(g...), Seen: maxSeq(g), Free: []string{"a-0", "a-1"}}
		}, []string{"a-0=t3#1"}, 0, Depth{Idle: 1, Leased: 1}},
		{"done with requeue: next attempt at high priority first", func(g []Grant) SyncRequest {
			return SyncRequest{Done: []Done{{AttemptID: g[0].Assignment.ID(), Requeue: true}}, Held: ids(g[1]), Seen: maxSeq(g), Free: []string{"a-0"}}
		}, []string{"a-0=t1#2"}, 0, Depth{Normal: 1, Leased: 2}},
		{"refused: the same attempt back at the head", func(g []Grant) SyncRequest {
			return SyncRequest{Done: []Done{{AttemptID: g[0].Assignment.ID(), Refused: true}}, Held: ids(g[1]), Seen: maxSeq(g)}
		}, nil, 0, Depth{Normal: 2, Leased: 1}},
		{"seen and not held: lost", func(g []Grant) SyncRequest {
			return SyncRequest{Held: ids(g[1]), Seen: maxSeq(g)}
		}, nil, 0, Depth{High: 1, Normal: 1, Leased: 1}},
		{"not seen yet: in flight, kept, slot busy", func(g []Grant) SyncRequest {
			return SyncRequest{Held: ids(g[0]), Seen: g[0].Seq, Free: []string{"a-1"}}
		}, nil, 0, Depth{Normal: 1, Leased: 2}},
		{"new process: what it does not hold is lost", func(g []Grant) SyncRequest {
			return SyncRequest{Incarnation: "inc-2", Held: ids(g[1]), Free: []string{"a-0"}}
		}, []string{"a-0=t1#2"}, 0, Depth{Normal: 1, Leased: 2}},
		{"held but not leased: dropped", func(g []Grant) SyncRequest {
			stranger := task.AttemptID{TaskID: uuid.New(), Attempt: 3}
			return SyncRequest{Held: append(ids(g...), stranger), Seen: maxSeq(g)}
		}, nil, 1, Depth{Normal: 1, Leased: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.enqueue(w.task("t1", task.PriorityNormal), w.task("t2", task.PriorityNormal), w.task("t3", task.PriorityNormal))
			first := w.sync(SyncRequest{Node: "a", Free: []string{"a-0", "a-1"}}).Given
			if got := w.labels(first); !slices.Equal(got, []string{"a-0=t1#1", "a-1=t2#1"}) {
				t.Fatalf("first grants %v", got)
			}
			req := tt.report(first)
			req.Node = "a"
			reply := w.sync(req)
			if got := w.labels(reply.Given); !slices.Equal(got, tt.wantGiven) {
				t.Errorf("given %v, want %v", got, tt.wantGiven)
			}
			if len(reply.Drop) != tt.wantDrop {
				t.Errorf("dropped %v, want %d", reply.Drop, tt.wantDrop)
			}
			if d := w.depth(); d != tt.wantDepth {
				t.Errorf("depth %+v, want %+v", d, tt.wantDepth)
			}
		})
	}
}

// A lease the node never reports seeing (the reply carrying it was lost) is lost after
// LeaseTTL, though the node keeps syncing.
func TestUnseenLeaseExpires(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.enqueue(w.task("t1", task.PriorityNormal))
	w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}}) // reply lost
	w.clock = w.clock.Add(LeaseTTL / 2)
	w.sync(SyncRequest{Node: "a"})
	if d := w.depth(); d.Leased != 1 {
		t.Fatalf("depth %+v: lease lost before its TTL", d)
	}
	w.clock = w.clock.Add(LeaseTTL)
	reply := w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}})
	if got, want := w.labels(reply.Given), []string{"a-0=t1#2"}; !slices.Equal(got, want) {
		t.Fatalf("given %v, want %v", got, want)
	}
}

// Leases, the idle list and waiting tasks survive a new host of the queue (the actor
// moved); the nodes get a full TTL from the move before their leases are judged.
func TestStateSurvivesANewHost(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.enqueue(w.task("t1", task.PriorityNormal), w.task("t2", task.PriorityNormal))
	g := w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}}).Given
	w.sync(SyncRequest{Node: "b", Free: []string{"b-0"}})
	w.clock = w.clock.Add(10 * LeaseTTL) // the queue was away a long time
	w.q = w.newQueue()
	if d := w.depth(); d != (Depth{Normal: 0, Idle: 0, Leased: 2}) {
		t.Fatalf("depth on the new host %+v", d)
	}
	w.clock = w.clock.Add(LeaseTTL / 2)
	w.sync(SyncRequest{Node: "a", Held: ids(g...), Seen: maxSeq(g)})
	if d := w.depth(); d.Leased != 2 {
		t.Fatalf("depth %+v: leases lost within the grace after the move", d)
	}
	w.clock = w.clock.Add(LeaseTTL)
	w.sync(SyncRequest{Node: "a", Held: ids(g...), Seen: maxSeq(g)})
	if d := w.depth(); d != (Depth{High: 1, Leased: 1}) {
		t.Fatalf("depth %+v: want b's lease lost (b never synced again), a's kept", d)
	}
}

// A write that fails leaves the queue as it was; one whose outcome is unknown makes the
// queue read its state again, so no key of a stored entry is reused and nothing is lost.
func TestFailedWritesLoseNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.store.failNext = true
	if _, err := w.q.Enqueue(t.Context(), []task.Assignment{w.task("x", task.PriorityNormal)}); err == nil {
		t.Fatal("Enqueue with the store down = nil error")
	}
	w.store.failAfterNext = true
	if _, err := w.q.Enqueue(t.Context(), []task.Assignment{w.task("a", task.PriorityNormal)}); err == nil {
		t.Fatal("Enqueue with an unknown outcome = nil error")
	}
	w.enqueue(w.task("b", task.PriorityNormal))
	var got []string
	var last []Grant
	for range 3 {
		reply := w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}, Done: done(last...), Seen: maxSeq(last)})
		got, last = append(got, w.labels(reply.Given)...), reply.Given
	}
	if want := []string{"a-0=a#1", "a-0=b#1"}; !slices.Equal(got, want) {
		t.Fatalf("dispatched %v, want %v", got, want)
	}
}

// The push to an idle slot goes out while the turn writes the lease, not after the
// write: the work reaches its node a write's round trip sooner.
func TestPushDoesNotWaitForTheWrite(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}})
	hold := make(chan struct{})
	w.store.hold = hold
	pushed := make(chan struct{})
	w.q.push = func(ctx context.Context, node string, grants []Grant) ([]task.AttemptID, error) {
		defer close(pushed)
		return w.push(ctx, node, grants)
	}
	w.q.goPush = func(f func()) { go f() }
	enqueued := make(chan error, 1)
	go func() {
		_, err := w.q.Enqueue(t.Context(), []task.Assignment{w.task("t1", task.PriorityNormal)})
		enqueued <- err
	}()
	select {
	case <-pushed:
	case err := <-enqueued:
		t.Fatalf("Enqueue returned (%v) with its write held and nothing pushed", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no push within 10 s while the write is held: the push waits for the write")
	}
	close(hold)
	if err := <-enqueued; err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if want := []string{"a-0=t1#1"}; !slices.Equal(w.pushed, want) {
		t.Fatalf("pushed %v, want %v", w.pushed, want)
	}
	if d := w.depth(); d != (Depth{Leased: 1}) {
		t.Fatalf("depth %+v, want t1 leased once the write is done", d)
	}
}

// A write that fails after its push went out loses nothing: the enqueue fails and is
// tried again, which queues the attempt and pushes it again; the node, which got the
// first push without a durable lease, keeps the attempt once the second push leases
// it, and is told to drop an attempt that no lease covers.
func TestPushBeforeAFailedWrite(t *testing.T) {
	t.Parallel()
	for _, outcome := range []string{"failed", "unknown"} {
		t.Run(outcome, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.sync(SyncRequest{Node: "a", Free: []string{"a-0", "a-1"}})
			t1 := w.task("t1", task.PriorityNormal)
			if outcome == "failed" {
				w.store.failNext = true
			} else {
				w.store.failAfterNext = true
			}
			if _, err := w.q.Enqueue(t.Context(), []task.Assignment{t1}); err == nil {
				t.Fatal("Enqueue with its write failed = nil error")
			}
			if want := []string{"a-0=t1#1"}; !slices.Equal(w.pushed, want) {
				t.Fatalf("pushed %v, want %v: the push went out with the write", w.pushed, want)
			}
			first := w.grants["a"][0]
			// The node reports what it got before the enqueue is tried again: no lease
			// covers it if the write failed.
			reply := w.sync(SyncRequest{Node: "a", Held: ids(first), Seen: first.Seq})
			wantDrop := outcome == "failed"
			if got := slices.Contains(reply.Drop, first.Assignment.ID()); got != wantDrop {
				t.Fatalf("drop %v: t1 dropped = %v, want %v", reply.Drop, got, wantDrop)
			}
			w.enqueue(t1) // the gateway's retry
			leased := 1
			if d := w.depth(); d.Leased != leased || d.Normal+d.High != 0 {
				t.Fatalf("depth %+v after the retry, want t1 leased once and nothing waiting", d)
			}
			if wantDrop && len(w.pushed) != 2 {
				t.Fatalf("pushed %v, want t1 pushed again after the failed write", w.pushed)
			}
			last := w.grants["a"][len(w.grants["a"])-1]
			if reply := w.sync(SyncRequest{Node: "a", Held: ids(last), Seen: max(first.Seq, last.Seq)}); len(reply.Drop) != 0 {
				t.Fatalf("drop %v, want t1 kept: its lease is durable now", reply.Drop)
			}
			w.sync(SyncRequest{Node: "a", Done: done(last), Seen: max(first.Seq, last.Seq)})
			if d := w.depth(); d.Leased != 0 || d.Normal+d.High != 0 {
				t.Fatalf("depth %+v once t1 is done, want nothing left", d)
			}
		})
	}
}

// A draining node's slots leave the idle list and get nothing; what it holds stays
// leased until it reports it done.
func TestDrainingNode(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.sync(SyncRequest{Node: "a", Free: []string{"a-0", "a-1"}})
	w.sync(SyncRequest{Node: "b", Free: []string{"b-0"}})
	w.enqueue(w.task("t1", task.PriorityNormal))
	w.sync(SyncRequest{Node: "a", Draining: true, Free: []string{"a-1"}})
	if d := w.depth(); d != (Depth{Idle: 1, Leased: 1}) {
		t.Fatalf("depth %+v, want b-0 idle only", d)
	}
	w.enqueue(w.task("t2", task.PriorityNormal))
	if want := []string{"a-0=t1#1", "b-0=t2#1"}; !slices.Equal(w.pushed, want) {
		t.Fatalf("pushed %v, want %v", w.pushed, want)
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	if _, err := w.q.Enqueue(t.Context(), []task.Assignment{{TaskID: uuid.New(), Attempt: 1, Priority: "urgent"}}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("bad priority: %v", err)
	}
	for _, req := range []SyncRequest{
		{Incarnation: "i", Free: []string{"a-0"}},
		{Node: "a", Free: []string{"a-0"}},
		{Node: "a", Incarnation: "i", Free: []string{""}},
		{Node: "a", Incarnation: "i", Free: []string{"b-0"}},
		{Node: "a", Incarnation: "i", Free: []string{"a"}},
	} {
		if _, err := w.q.Sync(t.Context(), req); !errors.Is(err, ErrBadRequest) {
			t.Errorf("Sync(%+v) = %v, want ErrBadRequest", req, err)
		}
	}
}

// The queue stamps enqueue and dispatch times on its own clock, whatever the caller
// sent: times of different tasks then order exactly.
func TestQueueStampsTimes(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	start := w.clock
	late := w.task("late", task.PriorityNormal)
	late.Enqueued = time.Unix(0, 0)
	w.enqueue(late)
	w.clock = w.clock.Add(time.Second)
	g := w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}}).Given
	if len(g) != 1 || !g[0].Assignment.Enqueued.Equal(start) || !g[0].Assignment.Dispatched.Equal(start.Add(time.Second)) {
		t.Fatalf("grant %+v, want enqueued at +0s and dispatched at +1s", g)
	}
	if !late.Enqueued.Equal(time.Unix(0, 0)) {
		t.Error("Enqueue changed the caller's assignment")
	}
}

// Producers and nodes at once (the actor's turn is a mutex here): every task is handed
// out exactly once, and none is left.
func TestConcurrentProducersAndNodes(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var turn sync.Mutex
	const producers, perProducer, nodes = 4, 100, 3
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				turn.Lock()
				w.enqueue(w.task(fmt.Sprintf("p%d-%d", p, i), task.PriorityNormal))
				turn.Unlock()
			}
		})
	}
	handed := map[task.AttemptID]int{}
	var hmu sync.Mutex
	for n := range nodes {
		wg.Go(func() {
			node := fmt.Sprintf("n%d", n)
			var last []Grant
			var seen uint64
			for range 100 * producers * perProducer { // bounded; ends once all were handed out
				hmu.Lock()
				all := len(handed) == producers*perProducer
				hmu.Unlock()
				if all {
					break
				}
				turn.Lock()
				reply := w.sync(SyncRequest{Node: node, Free: []string{node + "-0", node + "-1"}, Done: done(last...), Seen: seen})
				pushed := w.grants[node]
				delete(w.grants, node)
				turn.Unlock()
				got := append(reply.Given, pushed...)
				hmu.Lock()
				for _, g := range got {
					handed[g.Assignment.ID()]++
				}
				hmu.Unlock()
				// Every attempt ends at once: reported done with the next sync.
				last, seen = got, max(seen, maxSeq(got))
			}
		})
	}
	wg.Wait()
	if len(handed) != producers*perProducer {
		t.Errorf("handed out %d distinct tasks (%d of them pushed), want %d", len(handed), len(w.pushed), producers*perProducer)
	}
	for id, n := range handed {
		if n != 1 {
			t.Errorf("%s handed out %d times", id, n)
		}
	}
	if d := w.depth(); d.High+d.Normal != 0 {
		t.Errorf("left waiting: %+v", d)
	}
}

func BenchmarkEnqueueDequeue(b *testing.B) {
	for _, depth := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			ctx := context.Background()
			q := New(newMemStore(), func(context.Context, string, []Grant) ([]task.AttemptID, error) { return nil, nil })
			// Every entry a task of its own: the queue hands an attempt out once, so
			// entries of one attempt repeated would be skipped, and it would run dry.
			assignment := func() task.Assignment {
				return task.Assignment{TaskID: uuid.New(), Attempt: 1, Priority: task.PriorityNormal}
			}
			batch := make([]task.Assignment, 1000)
			for range depth / len(batch) {
				for i := range batch {
					batch[i] = assignment()
				}
				if _, err := q.Enqueue(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			var last []Grant
			b.ResetTimer()
			for b.Loop() {
				if _, err := q.Enqueue(ctx, []task.Assignment{assignment()}); err != nil {
					b.Fatal(err)
				}
				reply, err := q.Sync(ctx, SyncRequest{Node: "w", Incarnation: "i", Free: []string{"w-0"}, Done: done(last...), Seen: maxSeq(last)})
				if err != nil || len(reply.Given) != 1 {
					b.Fatalf("sync: %v, %d given", err, len(reply.Given))
				}
				last = reply.Given
			}
		})
	}
}

// A sync may ask for attempts beyond its free slots (the node's buffer): they come
// from what waits once the free slots have theirs, never ahead of a free slot, and a
// buffered grant names no slot (so no slot is taken for busy by it).
func TestPrefetch(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	for i := range 5 {
		w.enqueue(w.task(fmt.Sprint("t", i), task.PriorityNormal))
	}
	reply := w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}, Prefetch: 3})
	if got, want := w.labels(reply.Given), []string{"a-0=t0#1", "=t1#1", "=t2#1", "=t3#1"}; !slices.Equal(got, want) {
		t.Fatalf("given %v, want %v", got, want)
	}
	// Only one left: it goes to the free slot; nothing is buffered from an empty queue,
	// and the slot of a buffered grant is not in flight.
	reply = w.sync(SyncRequest{Node: "b", Free: []string{"b-0", "b-1"}, Prefetch: 2})
	if got, want := w.labels(reply.Given), []string{"b-0=t4#1"}; !slices.Equal(got, want) {
		t.Fatalf("given %v, want %v", got, want)
	}
	if d := w.depth(); d != (Depth{Idle: 1, Leased: 5}) {
		t.Fatalf("depth %+v, want b-1 idle and 5 leased", d)
	}
	if _, err := w.q.Sync(t.Context(), SyncRequest{Node: "a", Incarnation: "i", Prefetch: -1}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("negative prefetch: %v", err)
	}
}

// The actor moves away and back: the host it comes back to must not act on what it kept
// in memory from before (here: a lease the other host released would be taken for lost,
// and its task run again).
func TestHostThatCameBackRereadsTheState(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	hostA := w.q
	w.enqueue(w.task("t1", task.PriorityNormal))
	g := w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}}).Given
	// A move takes placement dissemination rounds, and no call reaches a host the
	// actor left: more than TrustWindow passes on host A between its calls.
	w.clock = w.clock.Add(TrustWindow)
	w.q = w.newQueue() // host B
	w.sync(SyncRequest{Node: "a", Done: done(g...), Seen: maxSeq(g)})
	w.clock = w.clock.Add(TrustWindow)
	w.q = hostA // back on host A
	w.sync(SyncRequest{Node: "a", Seen: maxSeq(g)})
	if d := w.depth(); d != (Depth{}) {
		t.Fatalf("depth %+v after coming back: a released lease was taken for lost", d)
	}
}

// A second entry of one attempt (a retried enqueue whose first try got through) runs
// once: not while the first is leased, not after it ended, and not pushed either.
func TestDuplicateEntriesRunOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.task("t1", task.PriorityNormal)
	b := w.task("t2", task.PriorityNormal)
	w.enqueue(a, a, b, a)
	reply := w.sync(SyncRequest{Node: "n", Free: []string{"n-0", "n-1"}})
	if got := w.labels(reply.Given); !slices.Equal(got, []string{"n-0=t1#1", "n-1=t2#1"}) {
		t.Fatalf("given %v, want t1 and t2 once each", got)
	}
	w.enqueue(a) // again, while leased
	reply = w.sync(SyncRequest{Node: "n", Done: done(reply.Given...), Seen: maxSeq(reply.Given), Free: []string{"n-0", "n-1"}})
	if len(reply.Given) != 0 {
		t.Fatalf("after both ended: given %v, want nothing", w.labels(reply.Given))
	}
	w.enqueue(a) // and after it ended: an idle slot waits, nothing is pushed
	if len(w.pushed) != 0 {
		t.Fatalf("pushed %v", w.pushed)
	}
	if d := w.depth(); d != (Depth{Idle: 2}) {
		t.Fatalf("depth %+v, want only the idle slots", d)
	}
}

// A host called again within TrustWindow of its last call acts on what it keeps, without
// reading the store; after a longer pause it reads the revision once (and nothing
// more while nobody else wrote).
func TestHostTrustsItsStateWhileCallsKeepComing(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.enqueue(w.task("t1", task.PriorityNormal)) // loads the (empty) state: one read
	tests := []struct {
		name      string
		pause     time.Duration
		wantReads int
	}{
		{"right after", 0, 0},
		{"just inside the window", TrustWindow - time.Millisecond, 0},
		{"after a pause", TrustWindow, 1},
		{"after a long pause", time.Minute, 1},
	}
	for _, tc := range tests {
		w.clock = w.clock.Add(tc.pause)
		before := w.store.gets
		w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}})
		if got := w.store.gets - before; got != tc.wantReads {
			t.Errorf("%s: %d store reads, want %d", tc.name, got, tc.wantReads)
		}
	}
}

// A grant carries its task's spec; the lease kept for it does not (a node's lease key is
// rewritten at its syncs), so an attempt queued again from a lease comes without it and
// its worker reads the record.
func TestLeasesKeepNoSpec(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.task("t1", task.PriorityNormal)
	a.Spec = &task.Spec{Type: "noop", Directory: "d"}
	w.enqueue(a)
	g := w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}}).Given
	if len(g) != 1 || g[0].Assignment.Spec == nil {
		t.Fatalf("grant %+v, want t1 with its spec", g)
	}
	if data := w.store.data[leaseKey("a")]; bytes.Contains(data, []byte(`"spec"`)) {
		t.Fatalf("lease key holds the spec: %s", data)
	}
	w.clock = w.clock.Add(LeaseTTL + time.Second) // node a goes silent: its lease is lost
	g = w.sync(SyncRequest{Node: "b", Free: []string{"b-0"}}).Given
	if len(g) != 1 || g[0].Assignment.TaskID != a.TaskID || g[0].Assignment.Attempt != 2 || g[0].Assignment.Spec != nil {
		t.Fatalf("after the lease was lost: %+v, want t1's attempt 2 without a spec", g)
	}
}

func (w *world) cancel(as ...task.Assignment) CancelReply {
	w.t.Helper()
	var idsOf []uuid.UUID
	for _, a := range as {
		idsOf = append(idsOf, a.TaskID)
	}
	reply, err := w.q.Cancel(w.t.Context(), idsOf)
	if err != nil {
		w.t.Fatalf("Cancel: %v", err)
	}
	return reply
}

// Cancelling: a waiting task leaves the queue (its entry is skipped, on this host and
// on a new one); a leased one loses its lease, is named in its node's next sync reply
// as cancelled (not dropped), and is never queued again, whatever the node reports.
func TestCancel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// run cancels in a world where t1 runs on a-0 (grant g) and t2, t3 wait; it
		// returns the node's next sync.
		run        func(w *world, g Grant, t2 task.Assignment) SyncRequest
		wantCancel int
		wantDrop   int
		wantGiven  []string // to a-0 on the next sync (when the request frees it)
		wantDepth  Depth
	}{
		{"waiting task: skipped, never handed out", func(w *world, g Grant, t2 task.Assignment) SyncRequest {
			if r := w.cancel(t2); len(r.Leased) != 0 {
				t.Errorf("leased %v, want none", r.Leased)
			}
			return SyncRequest{Done: done(g), Seen: g.Seq, Free: []string{"a-0"}}
		}, 0, 0, []string{"a-0=t3#1"}, Depth{Leased: 1}},
		{"waiting task, on a new host of the queue", func(w *world, g Grant, t2 task.Assignment) SyncRequest {
			w.cancel(t2)
			w.q = w.newQueue()
			return SyncRequest{Done: done(g), Seen: g.Seq, Free: []string{"a-0"}}
		}, 0, 0, []string{"a-0=t3#1"}, Depth{Leased: 1}},
		{"running task: cancelled in the next reply, slot gets the next task", func(w *world, g Grant, _ task.Assignment) SyncRequest {
			if r := w.cancel(task.Assignment{TaskID: g.Assignment.TaskID}); !slices.Equal(r.Leased, ids(g)) {
				t.Errorf("leased %v, want %v", r.Leased, ids(g))
			}
			return SyncRequest{Held: ids(g), Seen: g.Seq}
		}, 1, 0, nil, Depth{Normal: 2}},
		{"running task, on a new host of the queue", func(w *world, g Grant, _ task.Assignment) SyncRequest {
			w.cancel(task.Assignment{TaskID: g.Assignment.TaskID})
			w.q = w.newQueue()
			return SyncRequest{Held: ids(g), Seen: g.Seq}
		}, 1, 0, nil, Depth{Normal: 2}},
		{"running task reported failed with requeue after the cancel: not queued again", func(w *world, g Grant, _ task.Assignment) SyncRequest {
			w.cancel(task.Assignment{TaskID: g.Assignment.TaskID})
			return SyncRequest{Done: []Done{{AttemptID: g.Assignment.ID(), Requeue: true}}, Seen: g.Seq, Free: []string{"a-0"}}
		}, 0, 0, []string{"a-0=t2#1"}, Depth{Normal: 1, Leased: 1}},
		{"running task whose node went silent: not queued again", func(w *world, g Grant, _ task.Assignment) SyncRequest {
			w.cancel(task.Assignment{TaskID: g.Assignment.TaskID})
			w.clock = w.clock.Add(3 * LeaseTTL)
			return SyncRequest{Incarnation: "inc-2", Free: []string{"a-0"}}
		}, 0, 0, []string{"a-0=t2#1"}, Depth{Normal: 1, Leased: 1}},
		{"re-enqueued after the cancel (a retried submission): not queued", func(w *world, g Grant, t2 task.Assignment) SyncRequest {
			w.cancel(t2)
			g3 := w.sync(SyncRequest{Node: "b", Free: []string{"b-0"}}).Given // t3 (t2 is skipped)
			if got := w.labels(g3); !slices.Equal(got, []string{"b-0=t3#1"}) {
				t.Errorf("given %v", got)
			}
			w.sync(SyncRequest{Node: "b", Done: done(g3...), Seen: maxSeq(g3), Free: []string{"b-0"}}) // b-0 idle
			if n := w.enqueue(t2); n != 0 {
				t.Errorf("a cancelled task was pushed to an idle slot")
			}
			return SyncRequest{Held: ids(g), Seen: g.Seq}
		}, 0, 0, nil, Depth{Idle: 1, Leased: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			t2 := w.task("t2", task.PriorityNormal)
			w.enqueue(w.task("t1", task.PriorityNormal), t2, w.task("t3", task.PriorityNormal))
			g := w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}}).Given
			if len(g) != 1 {
				t.Fatalf("given %v", w.labels(g))
			}
			req := tt.run(w, g[0], t2)
			req.Node = "a"
			reply := w.sync(req)
			if len(reply.Cancel) != tt.wantCancel || len(reply.Drop) != tt.wantDrop {
				t.Errorf("cancel %v, drop %v; want %d and %d", reply.Cancel, reply.Drop, tt.wantCancel, tt.wantDrop)
			}
			if got := w.labels(reply.Given); !slices.Equal(got, tt.wantGiven) {
				t.Errorf("given %v, want %v", got, tt.wantGiven)
			}
			if d := w.depth(); d != tt.wantDepth {
				t.Errorf("depth %+v, want %+v", d, tt.wantDepth)
			}
			// Nothing of a cancelled task is ever handed out again.
			for range 3 {
				w.clock = w.clock.Add(LeaseTTL)
				r := w.sync(SyncRequest{Node: "c", Free: []string{"c-0", "c-1", "c-2"}, Seen: 100})
				for _, g := range r.Given {
					if w.q.isCancelled(g.Assignment.TaskID) {
						t.Errorf("cancelled task handed out: %s", w.label(g))
					}
				}
			}
		})
	}
}

// The queue remembers at most CancelledMax cancelled tasks, the latest.
func TestCancelRemembersTheLatest(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var as []task.Assignment
	for i := range CancelledMax + 10 {
		as = append(as, w.task(fmt.Sprint("t", i), task.PriorityNormal))
	}
	w.cancel(as...)
	w.q = w.newQueue()
	w.depth() // load
	if len(w.q.cancelled) != CancelledMax || w.q.isCancelled(as[9].TaskID) || !w.q.isCancelled(as[10].TaskID) || !w.q.isCancelled(as[len(as)-1].TaskID) {
		t.Fatalf("remembered %d, first kept %v", len(w.q.cancelled), w.q.isCancelled(as[10].TaskID))
	}
}

func TestAttemptIDs(t *testing.T) {
	t.Parallel()
	a, b := uuid.New(), uuid.New()
	grants := []Grant{{Slot: "n-0", Assignment: task.Assignment{TaskID: a, Attempt: 1}}, {Assignment: task.Assignment{TaskID: b, Attempt: 3}}}
	want := []task.AttemptID{{TaskID: a, Attempt: 1}, {TaskID: b, Attempt: 3}}
	if got := AttemptIDs(grants); !slices.Equal(got, want) {
		t.Fatalf("AttemptIDs = %v, want %v", got, want)
	}
	if got := AttemptIDs(nil); len(got) != 0 {
		t.Fatalf("AttemptIDs(nil) = %v", got)
	}
}

// A node's room takes pushes between its syncs, into its buffer, after the idle slots
// and up to the room; what does not fit waits, and goes first (in order) into room that
// a later sync gives, at the next enqueue.
func TestRoomTakesPushesBetweenSyncs(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}})
	if reply := w.sync(SyncRequest{Node: "b", Room: 2}); reply.Room != 2 {
		t.Fatalf("room %d, want 2", reply.Room)
	}
	n := w.enqueue(w.task("t1", task.PriorityNormal), w.task("t2", task.PriorityNormal), w.task("t3", task.PriorityNormal), w.task("t4", task.PriorityNormal))
	slices.Sort(w.pushed) // one push per node, at once
	if want := []string{"a-0=t1#1", "b+=t2#1", "b+=t3#1"}; n != 3 || !slices.Equal(w.pushed, want) {
		t.Fatalf("dispatched %d, pushed %v; want %v", n, w.pushed, want)
	}
	if d := w.depth(); d != (Depth{Normal: 1, Leased: 3}) {
		t.Fatalf("depth = %+v, want t4 waiting and 3 leased", d)
	}
	gb := w.grants["b"]
	w.pushed = nil
	w.enqueue(w.task("t5", task.PriorityNormal))
	if len(w.pushed) != 0 {
		t.Fatalf("pushed %v with b's room used up", w.pushed)
	}
	// b reports t2 and t3 done and asks for 3 beyond its free slots, with nothing from
	// the queue now: t4 and t5 wait, so the room is what is left after them.
	reply := w.sync(SyncRequest{Node: "b", Done: done(gb...), Seen: maxSeq(gb), Room: 3})
	if got := w.labels(reply.Given); !slices.Equal(got, []string{"=t4#1", "=t5#1"}) || reply.Room != 1 {
		t.Fatalf("given %v, room %d; want t4 and t5 for the buffer, room 1", got, reply.Room)
	}
	w.enqueue(w.task("t6", task.PriorityNormal), w.task("t7", task.PriorityNormal))
	if want := []string{"b+=t6#1"}; !slices.Equal(w.pushed, want) {
		t.Fatalf("pushed %v, want %v", w.pushed, want)
	}
	if d := w.depth(); d != (Depth{Normal: 1, Leased: 4}) {
		t.Fatalf("depth = %+v, want t7 waiting, t1, t4, t5, t6 leased", d)
	}
}

// What waits when a node has room (a task re-queued by another node's sync that took
// nothing) goes into the room first, at the next enqueue, ahead of the new tasks.
func TestRoomTakesWhatWaitsFirst(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.enqueue(w.task("t1", task.PriorityNormal))
	g := w.sync(SyncRequest{Node: "b", Free: []string{"b-0"}}).Given
	w.sync(SyncRequest{Node: "a", Room: 3})
	w.sync(SyncRequest{Node: "b", Done: []Done{{AttemptID: g[0].Assignment.ID(), Requeue: true}}, Seen: maxSeq(g)})
	if d := w.depth(); d != (Depth{High: 1, Room: 3}) {
		t.Fatalf("depth = %+v, want t1's next attempt waiting, and a's room", d)
	}
	w.enqueue(w.task("t2", task.PriorityNormal), w.task("t3", task.PriorityNormal), w.task("t4", task.PriorityNormal))
	if want := []string{"a+=t1#2", "a+=t2#1", "a+=t3#1"}; !slices.Equal(w.pushed, want) {
		t.Fatalf("pushed %v, want %v", w.pushed, want)
	}
	if d := w.depth(); d != (Depth{Normal: 1, Leased: 3}) {
		t.Fatalf("depth = %+v, want t4 waiting", d)
	}
}

// The room a sync leaves is what the node asked for, less what the reply gave its
// buffer and the pushes to its buffer still on their way; a draining node has none.
func TestRoomLessWhatIsOnItsWay(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var later []func()
	w.q.goPush = func(f func()) { later = append(later, f) } // pushes on their way
	w.sync(SyncRequest{Node: "a", Room: 2})
	w.enqueue(w.task("t1", task.PriorityNormal)) // pushed into the room, not arrived
	w.enqueue(w.task("t2", task.PriorityNormal)) // the same
	w.enqueue(w.task("t3", task.PriorityNormal), w.task("t4", task.PriorityNormal))
	reply := w.sync(SyncRequest{Node: "a", Free: []string{"a-0"}, Room: 5})
	// t3 for a-0, t4 for the buffer (1 of the 5), t1 and t2 on their way (2 more).
	if got := w.labels(reply.Given); !slices.Equal(got, []string{"a-0=t3#1", "=t4#1"}) || reply.Room != 2 {
		t.Fatalf("given %v, room %d; want t3, t4 and room 2", got, reply.Room)
	}
	if reply := w.sync(SyncRequest{Node: "a", Room: 5, Draining: true}); reply.Room != 0 {
		t.Fatalf("a draining node got room %d", reply.Room)
	}
	w.enqueue(w.task("t4", task.PriorityNormal))
	if len(later) != 2 {
		t.Fatalf("%d pushes, want only t1's and t2's: nothing into a draining node's room", len(later))
	}
}

// Turns of the nodes' room: one enqueue's tasks go to one node while it has room
// (one push), and the next enqueue starts with the next node.
func TestRoomTakesTurns(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.sync(SyncRequest{Node: "a", Room: 10})
	w.sync(SyncRequest{Node: "b", Room: 3})
	var got [][]string
	for i := range 3 {
		w.pushed = nil
		w.enqueue(w.task(fmt.Sprintf("x%d", i), task.PriorityNormal), w.task(fmt.Sprintf("y%d", i), task.PriorityNormal))
		got = append(got, w.pushed)
	}
	want := [][]string{{"a+=x0#1", "a+=y0#1"}, {"b+=x1#1", "b+=y1#1"}, {"a+=x2#1", "a+=y2#1"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("pushed %v, want %v", got, want)
	}
	w.pushed = nil
	w.enqueue(w.task("x3", task.PriorityNormal), w.task("y3", task.PriorityNormal)) // b has 1 left
	slices.Sort(w.pushed)
	if want := []string{"a+=y3#1", "b+=x3#1"}; !slices.Equal(w.pushed, want) {
		t.Fatalf("pushed %v, want %v", w.pushed, want)
	}
}

// A node that stops syncing loses its room with its idle slots; a push into the room
// that fails comes back at the head and suspends pushes to the node.
func TestRoomOfASilentOrUnreachableNode(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.sync(SyncRequest{Node: "a", Room: 4})
	w.clock = w.clock.Add(LeaseTTL + time.Second)
	if n := w.enqueue(w.task("t1", task.PriorityNormal)); n != 0 {
		t.Fatalf("dispatched %d into a silent node's room", n)
	}
	// t1 waited: b's sync gives it to b's buffer, and leaves the rest as room.
	if reply := w.sync(SyncRequest{Node: "b", Room: 4}); !slices.Equal(w.labels(reply.Given), []string{"=t1#1"}) || reply.Room != 3 {
		t.Fatalf("given %v, room %d; want t1 and room 3", w.labels(reply.Given), reply.Room)
	}
	w.down["b"] = true
	if n := w.enqueue(w.task("t2", task.PriorityNormal)); n != 1 || len(w.pushed) != 0 {
		t.Fatalf("dispatched %d, pushed %v; want t2 handed out, not delivered", n, w.pushed)
	}
	w.down["b"] = false
	if n := w.enqueue(w.task("t3", task.PriorityNormal)); n != 0 {
		t.Fatalf("dispatched %d to a node whose push failed within PushSuspend", n)
	}
	reply := w.sync(SyncRequest{Node: "c", Free: []string{"c-0", "c-1"}})
	if got := w.labels(reply.Given); !slices.Equal(got, []string{"c-0=t2#1", "c-1=t3#1"}) || !reply.Given[0].Assignment.Redispatched {
		t.Fatalf("given %v, want t2 back at the head (marked), then t3", got)
	}
}
